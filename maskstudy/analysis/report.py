"""`maskstudy analyze`: the overlap, structure and stability tables of a set of runs, on disk.

The comparison axes are found from the runs themselves: every config field that takes more
than one value (seed, criterion, regime, ...) gives an overlap table along it, at matched
levels; ``along='level'`` rows compare the levels of one run (nested for IMP: flagged).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from maskstudy.analysis.run_overlap import LEVEL, overlap_table
from maskstudy.analysis.stability import stability_table
from maskstudy.analysis.structure import structure_table
from maskstudy.errors import StoreError
from maskstudy.runs.runlike import RunLike
from maskstudy.runs.table import varying_fields


def overlap_tables(runs: Sequence[RunLike], axes: Sequence[str]) -> pd.DataFrame:
    """Overlap along each axis and along levels, stacked with an ``along`` column."""
    frames = []
    for along in [*axes, LEVEL]:
        frame = overlap_table(runs, along=along)
        if not frame.empty:
            frame.insert(0, "along", along)
            # values of different axes (seeds, criteria, levels) share two columns
            frame[["value_a", "value_b"]] = frame[["value_a", "value_b"]].astype(str)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# The one list of analysis tables: what `maskstudy analyze` writes, the demo and the study
# scripts save, and the figures compute when not given them.
TABLES: dict[str, Callable[[Sequence[RunLike]], pd.DataFrame]] = {
    "overlap": lambda runs: overlap_tables(runs, varying_fields(runs)),
    "structure": structure_table,
    "stability": stability_table,
}


def analysis_tables(runs: Sequence[RunLike]) -> dict[str, pd.DataFrame]:
    """Every table of :data:`TABLES` over the runs' completed levels."""
    runs = [run for run in runs if run.levels]
    if not runs:
        raise StoreError("no completed level in these runs: nothing to analyse yet")
    return {name: build(runs) for name, build in TABLES.items()}


def write_tables(tables: dict[str, pd.DataFrame], out: Path) -> list[Path]:
    """Each table as ``out/<name>.csv``, and ``.parquet`` too when pyarrow is installed."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        import pyarrow  # noqa: F401  (optional: parquet keeps dtypes and reads faster)

        formats = ("csv", "parquet")
    except ImportError:
        formats = ("csv",)
    written = []
    for name, frame in tables.items():
        for fmt in formats:
            path = out / f"{name}.{fmt}"
            if fmt == "csv":
                frame.to_csv(path, index=False)
            else:
                frame.to_parquet(path, index=False)
            written.append(path)
    return written
