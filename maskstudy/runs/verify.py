"""Check a run, a sweep or a folder of runs against the sha256s recorded when they were written.

``verify(path)`` returns one row per checked file: ``ok``; ``incomplete`` (a level or file an
interrupted run has not finished: rerun to complete it); ``stray`` (a leftover temp or unrecorded
file, harmless); or damage: ``missing``, ``truncated`` (shorter than recorded and unreadable),
``altered`` (any other change). ``summary`` says it in one line; ``is_damaged`` decides the exit
status of ``maskstudy verify`` (1 when anything is damaged, else 0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from maskstudy.errors import MaskstudyError, StoreError
from maskstudy.runs.files import (
    digest,
    is_temp_file,
    read_json,
    temp_files,
    tensors_from_bytes,
)
from maskstudy.runs.store import (
    HISTORY_FILE,
    LEVEL_FILES,
    SCHEMA,
    START_FILE,
    WEIGHT_FILES,
    Run,
    history_lines,
    level_dir,
)
from maskstudy.runs.sweep import SWEEP_FILE, read_sweep

STATUSES = ("ok", "incomplete", "stray", "missing", "truncated", "altered")
DAMAGE = ("missing", "truncated", "altered")
COLUMNS = ("run", "level", "file", "status", "detail")
RERUN = "rerun the config to complete it"


def verify(path: str | Path) -> pd.DataFrame:
    """Rows (run, level, file, status, detail) for a run, a sweep or a folder of runs."""
    root = Path(path)
    if not root.is_dir():
        raise StoreError(f"{root} is not a directory; pass a run or sweep directory")
    if _looks_like_run(root) and not (root / SWEEP_FILE).is_file():
        rows = check_run(root, root.name)
    else:
        rows = _check_sweep(root) if (root / SWEEP_FILE).is_file() else []
        runs = [d for d in sorted(root.iterdir()) if _looks_like_run(d)]
        if not runs and not rows:
            raise StoreError(
                f"{root} holds no runs: pass a run directory (with config.json), a sweep "
                f"directory (with {SWEEP_FILE}) or a folder of run directories"
            )
        for run_dir in runs:
            rows += check_run(run_dir, run_dir.name)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["level"] = frame["level"].astype("Int64")
    return frame


def is_damaged(frame: pd.DataFrame) -> bool:
    """Whether any file is missing, truncated or altered (incomplete and stray are not damage)."""
    return bool(frame["status"].isin(DAMAGE).any())


def summary(frame: pd.DataFrame) -> str:
    """``3 runs, 12 levels, 52 files: 50 ok, 1 incomplete, 1 altered: DAMAGED``."""
    counts = frame["status"].value_counts()
    levels = frame.dropna(subset=["level"]).drop_duplicates(["run", "level"])
    parts = ", ".join(f"{counts[s]} {s}" for s in STATUSES if s in counts)
    verdict = "DAMAGED" if is_damaged(frame) else "intact"
    return (
        f"{frame['run'].nunique()} runs, {len(levels)} levels, {len(frame)} files: {parts}: "
        f"{verdict}"
    )


def _looks_like_run(path: Path) -> bool:
    return path.is_dir() and any(
        (path / name).exists() for name in ("config.json", "levels", *WEIGHT_FILES.values())
    )


def _check_sweep(root: Path) -> list[dict[str, Any]]:
    """sweep.toml must parse; its runs that have no directory yet are ``incomplete``."""
    try:
        spec = read_sweep(root / SWEEP_FILE)
    except MaskstudyError as e:
        return [_row("", None, SWEEP_FILE, "altered", str(e))]
    return [
        _row(c.run_id(), None, "", "incomplete", f"not started; {RERUN}")
        for c in spec.configs
        if not (root / c.run_id()).exists()
    ]


def _row(run: str, level: int | None, file: str, status: str, detail: str = "") -> dict:
    return {"run": run, "level": level, "file": file, "status": status, "detail": detail}


def check_run(run_dir: Path, name: str) -> list[dict[str, Any]]:
    """Every row of one run directory: config, θ0/θk, levels, history, leftovers."""
    rows: list[dict[str, Any]] = []

    def add(level: int | None, file: str, status: str, detail: str = "") -> None:
        rows.append(_row(name, level, file, status, detail))

    info = _check_config(run_dir, add)
    config = info["config"] if info is not None else {}
    branch = config.get("branch") or {}
    reinit = config.get("regime") in ("reinit_prune", "reinit") and not branch.get("kind")
    first = branch.get("first", 1) if branch.get("kind") else 0
    complete = _check_levels(run_dir, reinit, first, add)
    if info is not None:
        _check_weights(run_dir, info, bool(complete), add)
    _check_history(run_dir, complete, add)
    for leftover in temp_files(run_dir):  # anywhere in the run, levels included
        add(
            None,
            leftover.relative_to(run_dir).as_posix(),
            "stray",
            "temp file of a write that was killed; safe to delete when no process writes here",
        )
    return rows


def _check_config(run_dir: Path, add) -> dict | None:
    """config.json is the root record: it must parse, hold a valid config and match its run id."""
    path = run_dir / "config.json"
    if not path.is_file():
        add(None, path.name, "missing", "the run's record (config, θ0/θk sha256s) is gone")
        return None
    try:
        run = Run(run_dir)
    except StoreError as e:
        add(None, path.name, _unreadable_status(path.read_bytes()), str(e))
        return None
    if run.info.get("schema", 1) >= SCHEMA and run.info.get("run_id") != run.config.run_id():
        add(
            None,
            path.name,
            "altered",
            f"its config hashes to {run.config.run_id()}, not the recorded run id "
            f"{run.info.get('run_id')}: it was edited",
        )
    else:
        add(None, path.name, "ok")
    return run.info


def _unreadable_status(data: bytes) -> str:
    """``truncated`` when the JSON text ends before its document does, else ``altered``."""
    try:
        json.loads(data)
    except json.JSONDecodeError as e:
        at_end = e.pos >= len(e.doc.rstrip()) or e.msg.startswith("Unterminated string")
        return "truncated" if at_end else "altered"
    except UnicodeDecodeError:
        return "altered"
    return "altered"


def _check_weights(run_dir: Path, info: dict, has_levels: bool, add) -> None:
    """θ0 and θk against the sha256s in config.json."""
    recorded, sizes = info.get("files", {}), info.get("sizes", {})
    for name in WEIGHT_FILES.values():
        path = run_dir / name
        if name in recorded:
            add(None, name, *check_file(path, recorded[name], sizes.get(name)))
        elif path.is_file():
            add(None, name, "incomplete", f"written but not recorded in config.json; {RERUN}")
        elif name == WEIGHT_FILES["init"] and has_levels:
            add(None, name, "missing", "levels are complete but θ0 was never recorded")


def _check_levels(run_dir: Path, reinit: bool, first: int, add) -> dict[int, dict]:
    """Each level directory from ``first`` on (a branch may start after 0): its DONE and every
    file DONE records (a reinitialising run's levels ≥ 1 also record their start weights).
    Returns the complete levels."""
    root = run_dir / "levels"
    numbers = (
        sorted(int(d.name) for d in root.iterdir() if d.name.isdigit()) if root.is_dir() else []
    )
    last = max((n for n in numbers if (level_dir(run_dir, n) / "DONE").is_file()), default=-1)
    complete: dict[int, dict] = {}
    for level in range(first, last + 1):
        if level not in numbers:
            add(
                level,
                f"levels/{level:02d}",
                "missing",
                f"level {last} is complete but not this one",
            )
    for level in numbers:
        directory = level_dir(run_dir, level)
        where = directory.relative_to(run_dir).as_posix()
        done = directory / "DONE"
        if not done.is_file():
            if level < last:
                add(level, f"{where}/DONE", "missing", f"level {last} is complete but not this one")
            else:
                add(level, f"{where}/DONE", "incomplete", f"the level was interrupted; {RERUN}")
            continue
        record = _read_done(done)
        if isinstance(record, str):
            add(level, f"{where}/DONE", _unreadable_status(done.read_bytes()), record)
            continue
        add(level, f"{where}/DONE", "ok")
        complete[level] = record
        files, sizes = record["files"], record.get("sizes", {})
        for name in LEVEL_FILES + ((START_FILE,) if reinit and level > 0 else ()):
            if name not in files:
                add(level, f"{where}/{name}", "missing", "not recorded in DONE")
        for name, sha in files.items():
            add(level, f"{where}/{name}", *check_file(directory / name, sha, sizes.get(name)))
        for path in sorted(directory.iterdir()):
            if path.name not in files and path.name != "DONE" and not is_temp_file(path):
                add(level, f"{where}/{path.name}", "stray", "not recorded in DONE")
    return complete


def _read_done(path: Path) -> dict | str:
    """The DONE record, or why it cannot be used."""
    try:
        record = read_json(path)
    except StoreError as e:
        return str(e)
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        return f"{path} does not list the level's files"
    return record


def check_file(path: Path, sha: str, size: int | None) -> tuple[str, str]:
    """(status, detail) of one recorded file."""
    if not path.is_file():
        return "missing", "recorded but not on disk"
    data = path.read_bytes()
    if digest(data) == sha:
        if size is not None and len(data) != size:
            return (
                "altered",
                f"its sha256 matches but the record says {size} bytes: DONE is damaged",
            )
        return "ok", ""
    shape = f"{len(data)} bytes" + (f", {size} recorded" if size is not None else "")
    if size is not None and len(data) < size and not _readable(path, data):
        return "truncated", shape
    return "altered", f"sha256 differs from the one recorded ({shape})"


def _readable(path: Path, data: bytes) -> bool:
    """Whether the file parses on its own (a truncated copy does not)."""
    try:
        if path.suffix == ".safetensors":
            tensors_from_bytes(data, path)
        else:
            json.loads(data)
    except (StoreError, ValueError):
        return False
    return True


def _check_history(run_dir: Path, complete: dict[int, dict], add) -> None:
    """The rows of each complete level in history.jsonl against the sha256 and row count in its
    DONE: rows cut short with nothing after them are ``truncated``."""
    path = run_dir / HISTORY_FILE
    if not complete:
        return
    if not path.is_file():
        add(None, HISTORY_FILE, "missing", "levels are complete but their curves are gone")
        return
    try:
        lines = history_lines(path)
    except StoreError as e:
        cut = not path.read_bytes().endswith(b"\n")
        add(None, HISTORY_FILE, "truncated" if cut else "altered", str(e))
        return
    last = max((lv for lv, _ in lines), default=-1)  # the last level with rows left
    for level, record in complete.items():
        if "history" not in record:
            continue  # written before DONE recorded the curve
        mine = [line for lv, line in lines if lv == level]
        want = record.get("history_rows", len(mine))
        if digest("".join(mine).encode()) == record["history"]:
            add(level, HISTORY_FILE, "ok")
        elif len(mine) < want and level >= last:
            add(level, HISTORY_FILE, "truncated", f"{len(mine)} of level {level}'s {want} rows")
        elif not mine:
            add(level, HISTORY_FILE, "missing", f"no rows of level {level}")
        else:
            add(level, HISTORY_FILE, "altered", f"the rows of level {level} differ from DONE's")
