"""Progress that reads well where it is shown: bars on a terminal, one line per level in logs.

On a terminal (stderr is a TTY) a run shows a tqdm bar per level and a sweep one bar over all
its levels. Elsewhere (Slurm logs, pipes, files) bars would write a ``\\r`` update every second,
so each completed level is reported as one line instead: run, level, % remaining, test accuracy
and the level's wall time.
"""

from __future__ import annotations

import sys
from typing import Any


def interactive() -> bool:
    """Whether progress goes to a terminal (bars) rather than a log (lines)."""
    return sys.stderr.isatty()


def level_line(run_id: str, level: int, metrics: dict[str, Any]) -> str:
    """``<run id> level 3: 51.2 % remaining, test acc 97.81 %, 12.3 s``."""
    parts = [f"{run_id} level {level}:"]
    if "percent_remaining" in metrics:
        parts.append(f"{metrics['percent_remaining']:.1f} % remaining,")
    if "test_acc" in metrics:
        parts.append(f"test acc {100 * metrics['test_acc']:.2f} %,")
    if "seconds" in metrics:
        parts.append(f"{metrics['seconds']:.1f} s")
    return " ".join(parts).rstrip(",")


def report_level(run_id: str, level: int, metrics: dict[str, Any]) -> None:
    """Write ``level_line`` to the log (stderr, where bars go)."""
    print(level_line(run_id, level, metrics), file=sys.stderr, flush=True)
