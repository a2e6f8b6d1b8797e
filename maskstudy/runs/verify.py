"""Check a run, a sweep or a folder of runs against the sha256s recorded when they were written.

``verify(path)`` returns one row per checked file: ``ok``; ``incomplete`` (a level or file an
interrupted run has not finished: rerun to complete it); ``stray`` (a leftover temp or unrecorded
file, harmless); or damage: ``missing``, ``truncated`` (shorter than recorded and unreadable),
``altered`` (any other change). ``summary`` says it in one line; ``is_damaged`` decides the exit
status of ``maskstudy verify`` (1 when anything is damaged, else 0).

Lost data is found by what still records it: rows of history.jsonl (written after a level's files,
just before its DONE), a later complete level (levels are trained in order), and a sweep's
``manifest/`` (``record_sweep``: the sha256 of sweep.toml; ``record_run``: the levels each run
completed), which is the only proof that a whole run directory, or the DONE of a run's last level,
existed: without it their loss reads as a run not started or a level interrupted.
"""

from __future__ import annotations

import json
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from maskstudy.errors import MaskstudyError, StoreError
from maskstudy.files import (
    digest,
    is_temp_file,
    read_bytes,
    read_json,
    temp_files,
    tensors_from_bytes,
    write_json,
)
from maskstudy.runs.store import (
    CONFIG_FILE,
    DONE_FILE,
    HISTORY_FILE,
    LEVEL_FILES,
    SCHEMA,
    START_FILE,
    WEIGHT_FILES,
    Run,
    history_lines,
    level_dir,
    levels_done,
)
from maskstudy.runs.sweep import SWEEP_FILE, read_sweep

STATUSES = ("ok", "incomplete", "stray", "missing", "truncated", "altered")
DAMAGE = ("missing", "truncated", "altered")
COLUMNS = ("run", "level", "file", "status", "detail")
RERUN = "rerun the config to complete it"
MANIFEST_DIR = "manifest"  # in a sweep directory: sweep.json and runs/<run id>.json
SWEEP_RECORD = "sweep.json"
RUN_RECORDS = "runs"


def verify(path: str | Path) -> pd.DataFrame:
    """Rows (run, level, file, status, detail) for a run, a sweep or a folder of runs."""
    root = Path(path)
    if not root.is_dir():
        raise StoreError(f"{root} is not a directory; pass a run or sweep directory")
    if _looks_like_run(root) and not _is_sweep(root):
        rows = check_run(root, root.name)
    else:
        rows = _check_sweep(root) if _is_sweep(root) else []
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
    runs = frame.loc[frame["run"] != "", "run"].nunique()  # "" is the sweep's own files
    return f"{runs} runs, {len(levels)} levels, {len(frame)} files: {parts}: {verdict}"


def _looks_like_run(path: Path) -> bool:
    return path.is_dir() and any(
        (path / name).exists() for name in (CONFIG_FILE, "levels", *WEIGHT_FILES.values())
    )


def _is_sweep(path: Path) -> bool:
    """A sweep directory holds sweep.toml, or a manifest saying it did."""
    return (path / SWEEP_FILE).is_file() or (path / MANIFEST_DIR).is_dir()


def _check_sweep(root: Path) -> list[dict[str, Any]]:
    """sweep.toml against its recorded sha256, and it must parse; a run without a directory is
    ``missing`` when the manifest records levels of it, else ``incomplete`` (not started)."""
    rows = _check_sweep_file(root)
    planned: list[str] = []
    if (root / SWEEP_FILE).is_file():
        try:
            planned = [c.run_id() for c in read_sweep(root / SWEEP_FILE).configs]
        except MaskstudyError as e:
            if not rows:  # else its recorded sha256 already says whether it was changed
                rows = [_row("", None, SWEEP_FILE, "altered", str(e))]
    recorded = sorted(p.stem for p in (root / MANIFEST_DIR / RUN_RECORDS).glob("*.json"))
    for name in dict.fromkeys(planned + recorded):
        if not (root / name).exists():
            rows.append(_absent_run(root, name))
    return rows


def _check_sweep_file(root: Path) -> list[dict[str, Any]]:
    """The row of sweep.toml against the sha256 ``record_sweep`` kept ([] for a sweep without
    one, made before records were kept)."""
    record_path = root / MANIFEST_DIR / SWEEP_RECORD
    if not record_path.is_file():
        return []
    record = _read_record(record_path, SWEEP_FILE, str)
    if isinstance(record, tuple):
        return [_row("", None, f"{MANIFEST_DIR}/{SWEEP_RECORD}", *record)]
    path = root / SWEEP_FILE
    if not path.is_file():
        return [_row("", None, SWEEP_FILE, "missing", "the sweep's file is gone")]
    status, detail = check_file(path, record[SWEEP_FILE], record.get("size"))
    if status == "altered":
        detail += "; it was edited after the sweep was created"
    return [_row("", None, SWEEP_FILE, status, detail)]


def _absent_run(root: Path, name: str) -> dict[str, Any]:
    """The row of a sweep's run that has no directory: lost when the manifest records levels
    of it, else not started yet."""
    levels = _recorded_levels(root, name)
    if isinstance(levels, tuple):
        return _row(name, None, f"{MANIFEST_DIR}/{RUN_RECORDS}/{name}.json", *levels)
    if levels:
        detail = f"the sweep recorded its levels {sorted(levels)} complete; its directory is gone"
        return _row(name, None, "", "missing", detail)
    return _row(name, None, "", "incomplete", f"not started; {RERUN}")


# --- the sweep's manifest: written by the sweep's writers, read by verify ----------------------
def record_sweep(sweep_dir: str | Path) -> None:
    """Record the sha256 of the sweep directory's sweep.toml as it is now (call right after
    writing it), so ``verify`` can tell a later edit."""
    sweep_dir = Path(sweep_dir)
    data = read_bytes(sweep_dir / SWEEP_FILE)
    record = {SWEEP_FILE: digest(data), "size": len(data)}
    _write_record(sweep_dir / MANIFEST_DIR / SWEEP_RECORD, record)


def _write_record(path: Path, record: dict[str, Any]) -> None:
    """Write a manifest record unless it already says the same: a sweep called again on
    finished runs touches nothing."""
    try:
        if path.is_file() and json.loads(path.read_bytes()) == record:
            return
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        pass  # damaged or unreadable: written anew
    write_json(path, record)


def record_run(run_dir: str | Path) -> None:
    """Record in the manifest of the sweep directory holding ``run_dir`` the run's complete
    levels (call while holding its lock, after each attempt), so ``verify`` reports them missing
    if they are lost. A run without levels is not recorded. Never raises: a failed record is
    said on stderr and the sweep goes on."""
    run_dir = Path(run_dir)
    path = run_dir.parent / MANIFEST_DIR / RUN_RECORDS / f"{run_dir.name}.json"
    try:
        levels = levels_done(run_dir)
        if levels:
            _write_record(path, {"run_id": run_dir.name, "levels": levels})
    except StoreError as e:
        print(f"maskstudy: {e}; verify will not know the levels of {run_dir}", file=sys.stderr)


def _recorded_levels(sweep_dir: Path, name: str) -> set[int] | tuple[str, str]:
    """The levels of run ``name`` the sweep's manifest records complete (none without a record),
    or (status, why) when its record cannot be used."""
    path = sweep_dir / MANIFEST_DIR / RUN_RECORDS / f"{name}.json"
    if not path.is_file():
        return set()
    record = _read_record(path, "levels", list)
    if isinstance(record, tuple):
        return record
    if not all(isinstance(level, int) for level in record["levels"]):
        return "altered", f"{path} lists levels that are not level numbers; the file is damaged"
    return set(record["levels"])


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
    history = _read_history(run_dir)
    evidence = Evidence(
        done={n for n in _level_numbers(run_dir) if (level_dir(run_dir, n) / DONE_FILE).is_file()},
        rows={lv for lv, _ in history} if isinstance(history, list) else set(),
        recorded=_run_record(run_dir, add),
    )
    complete = _check_levels(run_dir, reinit, first, evidence, add)
    if info is not None:
        _check_weights(run_dir, info, bool(complete), add)
    _check_history(run_dir, complete, history, add)
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
    path = run_dir / CONFIG_FILE
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


@dataclass(frozen=True)
class Evidence:
    """What says which levels of a run were complete, whatever is left of their directories."""

    done: set[int]  # levels with a DONE file
    rows: set[int]  # levels with rows in history.jsonl
    recorded: set[int]  # levels the sweep's manifest records complete

    @property
    def last(self) -> int:
        """The last level known to have been reached (-1: none)."""
        return max(self.done | self.rows | self.recorded, default=-1)

    def why_complete(self, level: int) -> str | None:
        """Why ``level`` must have been complete, or None when nothing proves it: a later level's
        DONE or rows (levels are trained in order), or the sweep's record. Rows of the level
        itself prove only that its files were written: a kill before its DONE leaves them too."""
        later = max((n for n in self.done | self.rows if n > level), default=None)
        if later is not None:
            return f"level {later} was reached, so this one was complete"
        if any(n >= level for n in self.recorded):
            return f"the sweep recorded levels {sorted(self.recorded)} complete"
        return None


def _level_numbers(run_dir: Path) -> list[int]:
    """The levels that have a directory, complete or not."""
    root = run_dir / "levels"
    return sorted(int(d.name) for d in root.iterdir() if d.name.isdigit()) if root.is_dir() else []


def _run_record(run_dir: Path, add) -> set[int]:
    """The levels the manifest of the sweep holding ``run_dir`` records complete."""
    levels = _recorded_levels(run_dir.parent, run_dir.name)
    if isinstance(levels, tuple):
        add(None, f"../{MANIFEST_DIR}/{RUN_RECORDS}/{run_dir.name}.json", *levels)
        return set()
    return levels


def _check_levels(
    run_dir: Path, reinit: bool, first: int, evidence: Evidence, add
) -> dict[int, dict]:
    """Each level directory from ``first`` on (a branch may start after 0), and those the
    evidence says existed: its DONE and every file DONE records (a reinitialising run's
    levels ≥ 1 also record their start weights). Returns the complete levels."""
    numbers = _level_numbers(run_dir)
    complete: dict[int, dict] = {}
    for level in range(first, evidence.last + 1):
        if level not in numbers:
            why = evidence.why_complete(level) or "its rows are in history.jsonl"
            add(level, f"levels/{level:02d}", "missing", why)
    for level in numbers:
        directory = level_dir(run_dir, level)
        where = directory.relative_to(run_dir).as_posix()
        done = directory / DONE_FILE
        if not done.is_file():
            _check_unfinished(directory, where, level, _level_files(reinit, level), evidence, add)
            continue
        record = _read_record(done, "files", dict)
        if isinstance(record, tuple):
            add(level, f"{where}/DONE", *record)
            continue
        add(level, f"{where}/DONE", "ok")
        complete[level] = record
        files, sizes = record["files"], record.get("sizes", {})
        for name in _level_files(reinit, level):
            if name not in files:
                add(level, f"{where}/{name}", "missing", "not recorded in DONE")
        for name, sha in files.items():
            add(level, f"{where}/{name}", *check_file(directory / name, sha, sizes.get(name)))
        for path in sorted(directory.iterdir()):
            if path.name not in files and path.name != DONE_FILE and not is_temp_file(path):
                add(level, f"{where}/{path.name}", "stray", "not recorded in DONE")
    return complete


def _level_files(reinit: bool, level: int) -> tuple[str, ...]:
    """The files every level has; a reinitialising run's levels ≥ 1 also store their start."""
    return LEVEL_FILES + ((START_FILE,) if reinit and level > 0 else ())


def _check_unfinished(
    directory: Path, where: str, level: int, expected: tuple[str, ...], evidence: Evidence, add
) -> None:
    """A level directory without DONE: lost when the evidence proves the level complete; else
    interrupted. Its rows in history.jsonl (written after its files, before DONE) prove its files
    were written, so those gone are lost, but not its DONE: a kill between the two leaves the
    same as a deleted DONE."""
    why = evidence.why_complete(level)
    if why is not None:
        add(level, f"{where}/DONE", "missing", why)
        return
    if level not in evidence.rows:
        add(level, f"{where}/DONE", "incomplete", f"the level was interrupted; {RERUN}")
        return
    for name in expected:
        if not (directory / name).is_file():
            add(
                level,
                f"{where}/{name}",
                "missing",
                "its rows are in history.jsonl, written after it",
            )
    add(
        level,
        f"{where}/DONE",
        "incomplete",
        f"its files and history rows were written: the run was killed just before DONE, or DONE "
        f"was deleted; {RERUN}",
    )


def _read_record(path: Path, key: str, kind: type) -> dict | tuple[str, str]:
    """A JSON record (DONE, a manifest file) whose ``key`` holds a ``kind``, or (status, why)
    when it cannot be used."""
    try:
        record = read_json(path)
    except StoreError as e:
        return _unreadable_status(path.read_bytes()), str(e)
    if not isinstance(record, dict) or not isinstance(record.get(key), kind):
        return "altered", f"{path} has no {key!r} {kind.__name__}; the file is damaged"
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
        elif path.suffix == ".toml":
            tomllib.loads(data.decode())
        else:
            json.loads(data)
    except (StoreError, ValueError):
        return False
    return True


def _read_history(run_dir: Path) -> list[tuple[int, str]] | str | None:
    """history.jsonl's (level, line) rows; None when there is none, why when it is damaged."""
    path = run_dir / HISTORY_FILE
    if not path.is_file():
        return None
    try:
        return history_lines(path)
    except StoreError as e:
        return str(e)


def _check_history(
    run_dir: Path, complete: dict[int, dict], history: list[tuple[int, str]] | str | None, add
) -> None:
    """The rows of each complete level in history.jsonl against the sha256 and row count in its
    DONE: rows cut short with nothing after them are ``truncated``."""
    path = run_dir / HISTORY_FILE
    if not complete:
        return
    if history is None:
        add(None, HISTORY_FILE, "missing", "levels are complete but their curves are gone")
        return
    if isinstance(history, str):
        cut = not path.read_bytes().endswith(b"\n")
        add(None, HISTORY_FILE, "truncated" if cut else "altered", history)
        return
    lines = history
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
