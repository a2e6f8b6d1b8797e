"""A branch study's outputs: each method against a reference, as tables with intervals and as
the paper figures, every control starting at the dense level it shares with its parent."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from maskstudy.analysis.stats import method_tables
from maskstudy.plots.figures import draw_figures
from maskstudy.runs.sweep import open_sweep
from maskstudy.runs.table import with_parent_dense


def write_study(
    sweep_dir: Path,
    out: Path,
    prefix: str,
    reference: str,
    others: Sequence[str],
    values: Sequence[tuple[str, float, int]],
    figures: Sequence[str],
    formats: Sequence[str],
) -> None:
    """Print and write ``out/<prefix>_<table>.csv`` (:func:`method_tables`) and draw
    ``figures`` of the sweep in ``sweep_dir`` into ``out``."""
    sweep = open_sweep(sweep_dir)
    frame = with_parent_dense(sweep.frame())
    out.mkdir(parents=True, exist_ok=True)
    for name, table in method_tables(frame, reference, others, values).items():
        table.to_csv(out / f"{prefix}_{name}.csv", index=False)
        with pd.option_context("display.width", 250, "display.max_columns", 20):
            print(f"\n{name}\n{table.round(4).to_string(index=False)}")
    print(draw_figures(sweep.runs, out, formats=formats, names=figures, tables={"runs": frame}))
    print(f"figures and tables: {out}")
