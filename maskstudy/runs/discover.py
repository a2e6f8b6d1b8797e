"""Every run under a directory, whatever made it: a sweep, one run, a folder of runs, OpenLTH."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from maskstudy.errors import MaskstudyError, StoreError
from maskstudy.runs.lock import run_state
from maskstudy.runs.openlth import open_openlth
from maskstudy.runs.store import Run, is_run_dir, levels_done
from maskstudy.runs.sweep import SWEEP_FILE, Sweep
from maskstudy.runs.table import flatten, varying_fields


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


def status_of(path: str | Path) -> pd.DataFrame:
    """One row per run of a sweep, a run directory or a folder of runs: its id, the config
    fields that vary, its state (as ``Sweep.status``), levels done, and the % remaining and
    test accuracy of its last completed level (empty before its first)."""
    path = Path(path)
    if (path / SWEEP_FILE).is_file():
        table = Sweep(path).status()
        dirs = [path / run_id for run_id in table["run_id"]]
    else:
        runs = open_runs(path)
        foreign = [run for run in runs if not isinstance(run, Run)]
        if foreign:
            raise StoreError(
                f"{path} holds runs made elsewhere ({foreign[0].run_id}), which have no state "
                "to show; `maskstudy analyze` and `figures` read them"
            )
        fields = varying_fields(runs)
        rows = []
        for run in runs:
            expected = len(run.config.level_range())
            state, done, detail = run_state(run.path, expected)
            flat = flatten(run.config.to_dict())
            rows.append(
                {"run_id": run.run_id, **{f: flat[f] for f in fields}, "state": state}
                | {"levels": f"{done}/{expected}", "detail": detail}
            )
        table, dirs = pd.DataFrame(rows), [run.path for run in runs]
    last = [_last_level(d) for d in dirs]
    detail = table.pop("detail")
    table["percent_remaining"] = [m.get("percent_remaining") for m in last]
    table["test_acc"] = [m.get("test_acc") for m in last]
    table["detail"] = detail
    return table


def _last_level(run_dir: Path) -> dict:
    """The metrics of the run's last completed level ({} before any, or when unreadable)."""
    try:
        done = levels_done(run_dir)
        return Run(run_dir).level_metrics(done[-1]) if done else {}
    except (OSError, ValueError, MaskstudyError):
        return {}
