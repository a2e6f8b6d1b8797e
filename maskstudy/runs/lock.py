"""Per-run locks and failure records, so sweep processes share one directory safely.

A run is trained only by the process holding ``<run>/.lock`` (an OS advisory lock: released
when the process dies, however it dies). A failed run keeps its traceback in ``<run>/error.txt``
until a later attempt succeeds.
"""

from __future__ import annotations

import fcntl
import os
import traceback
from pathlib import Path

from maskstudy.runs.store import SIDE_FILES, Run

LOCK_FILE, ERROR_FILE = SIDE_FILES


class RunLock:
    """Non-blocking exclusive lock on one run directory (``acquire`` says whether we got it)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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


def is_locked(run_dir: Path) -> bool:
    """Whether another process is training this run right now."""
    if not (Path(run_dir) / LOCK_FILE).is_file():
        return False
    lock = RunLock(run_dir)
    if lock.acquire():
        lock.release()
        return False
    return True


def record_error(run_dir: Path, error: BaseException) -> None:
    """Write ``error.txt``: the error on its first line, then the full traceback."""
    trace = "".join(traceback.format_exception(error))
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / ERROR_FILE).write_text(f"{type(error).__name__}: {error}\n\n{trace}")


def clear_error(run_dir: Path) -> None:
    (Path(run_dir) / ERROR_FILE).unlink(missing_ok=True)


def first_error_line(run_dir: Path) -> str:
    """The first line of a stored error: the exception type and message."""
    lines = (Path(run_dir) / ERROR_FILE).read_text().splitlines()
    return lines[0] if lines else "(empty error.txt)"


def run_state(run_dir: Path, levels: int) -> tuple[str, int, str]:
    """(state, levels done, detail) of a run directory that may not exist yet."""
    run_dir = Path(run_dir)
    done = len(Run(run_dir).levels) if (run_dir / "config.json").is_file() else 0
    if done >= levels + 1:
        return "done", done, ""
    if is_locked(run_dir):
        return "running", done, ""
    if (run_dir / ERROR_FILE).is_file():
        return "failed", done, first_error_line(run_dir)
    return ("partial" if done else "pending"), done, ""
