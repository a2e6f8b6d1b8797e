"""Every run under a directory, whatever made it: a sweep, one run, a folder of runs, OpenLTH."""

from __future__ import annotations

from pathlib import Path

from maskstudy.errors import StoreError
from maskstudy.runs.openlth import open_openlth
from maskstudy.runs.store import Run, is_run_dir
from maskstudy.runs.sweep import SWEEP_FILE, Sweep


def _is_openlth(path: Path) -> bool:
    return path.name.startswith("lottery_") or any(path.glob("lottery_*"))


def open_runs(path: str | Path) -> list:
    """The runs of a sweep directory, a run directory, a directory of run directories, or an
    OpenLTH results directory (``lottery_<hash>`` or the folder holding them)."""
    path = Path(path)
    if not path.is_dir():
        raise StoreError(f"{path} is not a directory; pass a sweep, run or OpenLTH directory")
    if (path / SWEEP_FILE).is_file():
        return Sweep(path).runs
    if is_run_dir(path):
        return [Run(path)]
    if _is_openlth(path):
        return open_openlth(path)
    runs = [Run(d) for d in sorted(path.iterdir()) if is_run_dir(d)]
    if not runs:
        raise StoreError(
            f"{path} holds no runs: expected {SWEEP_FILE}, config.json, run directories or "
            "OpenLTH lottery_<hash> directories"
        )
    return runs
