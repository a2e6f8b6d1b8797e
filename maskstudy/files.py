"""Atomic file writes and safetensors (de)serialisation that never unpickles."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from maskstudy.errors import StoreError

TEMP_SUFFIX = ".tmp"  # write_atomic's temp files are ".<name>.<random>.tmp" beside the target


def write_atomic(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` via a temp file + rename; return its sha256. Errors name the file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise StoreError(f"could not write {path}: {e.strerror or e}") from e
    return digest(data)


def is_temp_file(path: Path) -> bool:
    """Whether ``path`` is named like one of write_atomic's temp files."""
    return path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)


def temp_files(directory: Path) -> list[Path]:
    """Temp files under ``directory`` left by writes that were killed before their rename."""
    return sorted(p for p in Path(directory).rglob(f".*{TEMP_SUFFIX}") if p.is_file())


def digest(data: bytes) -> str:
    """The sha256 recorded for every stored file."""
    return hashlib.sha256(data).hexdigest()


def write_json(path: Path, obj: Any) -> str:
    return write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_bytes(path: Path, sha256: str | None = None) -> bytes:
    """Read a stored file, checking its recorded sha256 when one is given."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise StoreError(f"missing file {path}") from None
    except OSError as e:
        raise StoreError(f"could not read {path}: {e.strerror or e}") from e
    if sha256 is not None and digest(data) != sha256:
        raise StoreError(
            f"{path} is damaged: its sha256 differs from the one recorded when it was written "
            "(truncated copy or altered file); run `maskstudy verify` on the run directory"
        )
    return data


def read_json(path: Path, sha256: str | None = None) -> Any:
    try:
        return json.loads(read_bytes(path, sha256))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(f"{path} is not valid JSON ({e}); the file is damaged") from e


def tensors_to_bytes(
    tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> bytes:
    return st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata)


def tensors_from_bytes(data: bytes, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Parse safetensors bytes; a damaged file raises StoreError naming ``path``."""
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
    except (SafetensorError, ValueError, json.JSONDecodeError) as e:
        raise StoreError(f"{path} is not a readable safetensors file ({e}); it is damaged") from e
    return tensors, header.get("__metadata__", {})


def pack_mask(mask: dict[str, torch.Tensor]) -> bytes:
    """Serialise a mask at 1 bit per weight (np.packbits), shapes (in the mask's tensor order) in
    the metadata. One metadata key: safetensors writes several in a per-process order, which
    would make the bytes, and the sha256 in DONE, differ between identical runs."""
    packed = {n: torch.from_numpy(np.packbits(m.cpu().numpy().ravel())) for n, m in mask.items()}
    shapes = {n: list(m.shape) for n, m in mask.items()}
    return tensors_to_bytes(packed, {"shapes": json.dumps(shapes)})


def unpack_mask(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    packed, meta = tensors_from_bytes(data, path)
    try:
        shapes = json.loads(meta["shapes"])
        out = {}
        for name, shape in shapes.items():
            count = int(np.prod(shape))
            bits = np.unpackbits(packed[name].numpy(), count=count)
            out[name] = torch.from_numpy(bits.astype(bool).reshape(shape))
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise StoreError(f"{path} is not a maskstudy mask file ({e!r}); it is damaged") from e
    return out


KEPT_ONLY = "kept_only"  # metadata key of a weights file: the tensors stored as kept values


def pack_weights(weights: dict[str, torch.Tensor], mask: dict[str, torch.Tensor]) -> bytes:
    """A level's trained weights at the size of what its mask keeps: a masked tensor whose pruned
    entries are all +0.0 (as training leaves them) is stored as its kept values in row-major
    order, so a level at density d costs 32·d bits per weight (plus the mask's 1); every other
    tensor, and one with a pruned entry that is not +0.0, is stored whole. ``unpack_weights``
    with the same mask gives back bit-identical tensors."""
    out, kept_only = {}, []
    for name, w in weights.items():
        m = mask.get(name)
        if m is not None and m.shape == w.shape:
            pruned = w.detach().cpu()[~m.cpu()]
            if not bool((pruned != 0).any() | torch.signbit(pruned).any()):
                out[name] = w.detach().cpu()[m.cpu()]
                kept_only.append(name)
                continue
        out[name] = w
    return tensors_to_bytes(out, {KEPT_ONLY: json.dumps(kept_only)})


def unpack_weights(
    data: bytes, path: Path, mask: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The tensors ``pack_weights`` wrote, dense again (pruned entries +0.0); a file written
    whole (no kept-only tensors: older stores) reads as it is."""
    tensors, meta = tensors_from_bytes(data, path)
    try:
        kept_only = json.loads(meta.get(KEPT_ONLY, "[]"))
        for name in kept_only:
            values, m = tensors[name], mask[name]
            if values.numel() != int(m.sum()):
                raise ValueError(f"{name}: {values.numel()} values for {int(m.sum())} kept weights")
            tensors[name] = torch.zeros(m.shape, dtype=values.dtype).masked_scatter_(m, values)
    except (KeyError, ValueError, TypeError) as e:
        raise StoreError(
            f"{path} does not fit the level's mask ({e!r}); the file or the mask is damaged"
        ) from e
    return tensors
