"""Per-run locks and failure records, so sweep processes share one directory safely.

A run is trained only by the process holding ``<run>/.lock`` (an OS advisory lock: released
when the process dies, however it dies). A failed run keeps its traceback in ``<run>/error.txt``
until a later attempt succeeds. A run whose loss became NaN or infinite gets ``<run>/diverged.json``
(level, step, message) and is final: nothing retrains it (the same config diverges the same way)
until that file is deleted.
"""

from __future__ import annotations

import fcntl
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from maskstudy.errors import StoreError
from maskstudy.files import read_json, write_atomic, write_json
from maskstudy.runs.store import SIDE_FILES, levels_done
from maskstudy.train import Diverged

LOCK_FILE, ERROR_FILE = SIDE_FILES
DIVERGED_FILE = "diverged.json"


class RunLock:
    """Non-blocking exclusive lock on one run directory (``acquire`` says whether we got it)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(
                f"could not create the lock file {self.path}: {e.strerror or e}; "
                "the output directory must be writable"
            ) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextmanager
def exclusive(run_dir: Path) -> Iterator[None]:
    """Hold the run's lock for a block, or raise StoreError naming it when another process
    trains the run. A directory this made and left holding only its lock is removed again."""
    run_dir = Path(run_dir)
    new = not run_dir.exists()
    lock = RunLock(run_dir)
    if not lock.acquire():
        raise StoreError(
            f"{run_dir} is being trained by another process (it holds {lock.path}); wait for it "
            "to finish or use another --out. Nothing was written"
        )
    try:
        yield
    finally:
        if new and [p.name for p in run_dir.iterdir()] == [LOCK_FILE]:
            with suppress(OSError):  # another process may be starting the same run right now
                lock.path.unlink()
                run_dir.rmdir()
        lock.release()


def is_locked(run_dir: Path) -> bool:
    """Whether another process is training this run right now. Only reads, so results on a
    read-only disk report their states: no lock file means never locked, and an existing one is
    opened read-only and probed with a shared lock, which any trainer's exclusive lock blocks."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise StoreError(f"could not read the lock file {path}: {e.strerror or e}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the probe's shared lock
    return False


def record_error(run_dir: Path, error: BaseException) -> None:
    """Write ``error.txt``: the error on its first line, then the full traceback. When even that
    cannot be written (a full disk), say so on stderr instead: the sweep goes on."""
    first = f"{type(error).__name__}: {error}"
    trace = "".join(traceback.format_exception(error))
    try:
        write_atomic(Path(run_dir) / ERROR_FILE, f"{first}\n\n{trace}".encode())
    except StoreError as e:
        print(f"maskstudy: {e}; the run failed with {first}", file=sys.stderr)


def record_divergence(run_dir: Path, level: int, error: Diverged) -> None:
    """Write ``diverged.json``: the level and absolute step where the loss stopped being finite."""
    write_json(
        Path(run_dir) / DIVERGED_FILE, {"level": level, "step": error.step, "message": str(error)}
    )


def divergence(run_dir: Path) -> dict[str, Any] | None:
    """The divergence record of a run, or None if it never diverged."""
    path = Path(run_dir) / DIVERGED_FILE
    if not path.is_file():
        return None
    record = read_json(path)
    if not isinstance(record, dict) or not {"level", "step", "message"} <= set(record):
        raise StoreError(f"{path} is damaged (no level, step and message); delete it to retrain")
    return record


def divergence_line(record: dict[str, Any]) -> str:
    """``level L step S: training diverged ... the loss is nan; ...`` for status tables."""
    return f"level {record['level']} step {record['step']}: {record['message']}"


def clear_error(run_dir: Path) -> None:
    (Path(run_dir) / ERROR_FILE).unlink(missing_ok=True)


def first_error_line(run_dir: Path) -> str:
    """The first line of a stored error: the exception type and message."""
    lines = (Path(run_dir) / ERROR_FILE).read_text(errors="replace").splitlines()
    return lines[0] if lines else "(empty error.txt)"


def run_state(run_dir: Path, expected: int) -> tuple[str, int, str]:
    """(state, levels done, detail) of a run directory that may not exist yet and should hold
    ``expected`` levels."""
    run_dir = Path(run_dir)
    done = len(levels_done(run_dir))
    if done >= expected:
        return "done", done, ""
    if is_locked(run_dir):
        return "running", done, ""
    record = divergence(run_dir)
    if record is not None:
        return "diverged", done, divergence_line(record)
    if (run_dir / ERROR_FILE).is_file():
        return "failed", done, first_error_line(run_dir)
    return ("partial" if done else "pending"), done, ""
