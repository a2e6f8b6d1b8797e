"""A per-user cache that keeps a command's fixed cost small: md5s of data files already verified,
and decoded, standardised datasets as ``.npy`` files that load in a fraction of the decode time.

Where: ``$MASKSTUDY_CACHE`` if set (``off`` turns the cache off), else
``$XDG_CACHE_HOME/maskstudy``, else ``~/.cache/maskstudy``. Deleting the folder is always safe.

Entries are keyed by their source files' identity (resolved path, size, mtime_ns, ctime_ns,
inode), so a changed file is checked and decoded again; a file changed in the last
``SETTLE_NS`` is not remembered yet (a second change within one timestamp tick could keep its
identity). Every write is atomic (``files.write_atomic``: a temporary
file, then a rename), so a process never reads a half-written file; every array is checked
against the dtype, shape and crc32 its manifest records before it is used, so a damaged entry
is rebuilt, never trusted; arrays load with ``allow_pickle=False``. A cache folder that cannot
be written is silently not used: the data directory itself is never written.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from maskstudy.errors import StoreError
from maskstudy.files import write_atomic

CACHE_ENV = "MASKSTUDY_CACHE"
FORMAT = 1  # bump when what an entry holds or how it is computed changes
MD5_FILE = "md5.json"
ARRAYS_DIR = "arrays"
MANIFEST = "manifest.json"
# A file changed this recently (ns) could change again within one timestamp tick and keep its
# identity, so what was read from it is not remembered until it is older (git's "racy clean").
SETTLE_NS = 2_000_000_000


def cache_dir() -> Path | None:
    """The cache folder (see the module docstring), or None when the cache is off."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value:
        return None if value.lower() == "off" else Path(value).expanduser()
    xdg = Path(os.environ.get("XDG_CACHE_HOME", "").strip()).expanduser()
    if xdg.is_absolute():  # the XDG spec ignores a relative (or empty) value
        return xdg / "maskstudy"
    try:
        return Path.home() / ".cache" / "maskstudy"
    except RuntimeError:  # no home directory to be found
        return None


def identity(path: str | Path) -> dict[str, Any]:
    """What tells one version of a file from another without reading it (OSError if absent)."""
    resolved = Path(path).resolve()
    st = resolved.stat()
    return {
        "path": str(resolved),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino,
    }


def settled(file: Mapping[str, Any]) -> bool:
    """Whether the file is still the version ``file`` (its :func:`identity` taken before it was
    read) and old enough that any later change will show in its identity."""
    try:
        if identity(file["path"]) != dict(file):
            return False  # changed while it was being read: what was read may be neither version
    except OSError:
        return False
    return time.time_ns() - max(file["mtime_ns"], file["ctime_ns"]) >= SETTLE_NS


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    write_atomic(path, buffer.getvalue())


def _write_json(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, indent=1).encode())


def _read_json(path: Path) -> Any:
    """The JSON in ``path``, or None if it is absent, unreadable or not JSON."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


# --- md5s already verified -------------------------------------------------------------------


def _md5_table(folder: Path) -> dict[str, dict[str, Any]]:
    table = _read_json(folder / MD5_FILE)
    if not isinstance(table, dict) or table.get("format") != FORMAT:
        return {}
    files = table.get("files")
    return files if isinstance(files, dict) else {}


def remembered_md5(file: Mapping[str, Any]) -> str | None:
    """The md5 remembered for this exact file version (an :func:`identity`), else None."""
    folder = cache_dir()
    if folder is None:
        return None
    entry = _md5_table(folder).get(file["path"])
    if not isinstance(entry, dict) or any(entry.get(k) != v for k, v in file.items()):
        return None
    md5 = entry.get("md5")
    return md5 if isinstance(md5, str) else None


def remember_md5(file: Mapping[str, Any], md5: str) -> None:
    """Remember ``md5`` for the file version ``file`` (its :func:`identity` taken before it was
    read) if :func:`settled`; entries for files that are gone are dropped."""
    folder = cache_dir()
    if folder is None or not settled(file):
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        table = {p: e for p, e in _md5_table(folder).items() if os.path.exists(p)}
        table[file["path"]] = {**file, "md5": md5}
        _write_json(folder / MD5_FILE, {"format": FORMAT, "files": table})
    except (OSError, StoreError):
        pass  # a cache that cannot be written is not used


# --- decoded arrays --------------------------------------------------------------------------


def _entry(folder: Path, kind: str, key: Mapping[str, Any]) -> Path:
    text = json.dumps({"format": FORMAT, "kind": kind, **key}, sort_keys=True)
    return folder / ARRAYS_DIR / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:24]}"


def _checksum(array: np.ndarray) -> int:
    return zlib.crc32(memoryview(np.ascontiguousarray(array)).cast("B"))


def load_arrays(kind: str, key: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """The arrays saved for ``kind`` under ``key`` (JSON values), or None if there are none or
    any of them does not match the dtype, shape and crc32 its manifest records."""
    folder = cache_dir()
    if folder is None:
        return None
    entry = _entry(folder, kind, key)
    manifest = _read_json(entry / MANIFEST)
    try:
        if manifest["format"] != FORMAT or manifest["kind"] != kind:
            return None
        if manifest["key"] != json.loads(json.dumps(key)):  # as JSON gives it back
            return None
        arrays = {}
        for name, meta in manifest["arrays"].items():
            array = np.load(entry / f"{name}.npy", allow_pickle=False)
            if (
                array.dtype.str != meta["dtype"]
                or list(array.shape) != meta["shape"]
                or _checksum(array) != meta["crc32"]
            ):
                return None
            arrays[name] = array
        return arrays
    except Exception:  # absent, truncated or damaged in any way: rebuilt, never trusted
        return None


def save_arrays(kind: str, key: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Save ``arrays`` for ``kind`` under ``key``, and drop older entries of ``kind`` whose
    key differs only in its ``"files"`` identities' versions (the same paths, since changed)."""
    folder = cache_dir()
    if folder is None:
        return
    entry = _entry(folder, kind, key)
    try:
        entry.mkdir(parents=True, exist_ok=True)
        meta = {}
        for name, array in arrays.items():
            array = np.ascontiguousarray(array)
            _save_npy(entry / f"{name}.npy", array)
            meta[name] = {
                "dtype": array.dtype.str,
                "shape": list(array.shape),
                "crc32": _checksum(array),
            }
        # the manifest last: whoever reads it finds every array it names already in place
        _write_json(
            entry / MANIFEST, {"format": FORMAT, "kind": kind, "key": dict(key), "arrays": meta}
        )
    except (OSError, StoreError):
        return  # a cache that cannot be written is not used
    _drop_superseded(entry, kind, key)


def _paths(key: Mapping[str, Any]) -> list[Any] | None:
    files = key.get("files")
    if not isinstance(files, list):
        return None
    return [f.get("path") if isinstance(f, dict) else None for f in files]


def _drop_superseded(entry: Path, kind: str, key: Mapping[str, Any]) -> None:
    """Remove the other entries of this kind built from the same paths (older file versions,
    another torch): only the newest is kept, so the cache does not grow with each change."""
    paths = _paths(key)
    for other in entry.parent.glob(f"{kind}-*"):
        if other == entry or not other.is_dir():
            continue
        manifest = _read_json(other / MANIFEST)
        if isinstance(manifest, dict) and isinstance(manifest.get("key"), dict):
            if manifest.get("kind") == kind and _paths(manifest["key"]) == paths:
                shutil.rmtree(other, ignore_errors=True)
