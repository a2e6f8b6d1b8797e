"""A branch study's outputs: each method against a reference, as tables with intervals and as
the paper figures, every control starting at the dense level it shares with its parent."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from maskstudy.analysis.stats import method_tables
from maskstudy.plots.figures import draw_figures
from maskstudy.runs.sweep import open_sweep
from maskstudy.runs.table import with_parent_dense


@dataclass(frozen=True)
class StudyArgs:
    """What every study script of ``analysis/`` is given: the sweep, where to write, formats."""

    sweep: Path
    out: Path
    formats: list[str]


def study_args(doc: str, sweep: str, argv: list[str] | None = None) -> StudyArgs:
    """The one command line of the study scripts: ``SWEEP [--out DIR] [--format pdf,png]``
    (``--out`` defaults to ``SWEEP/study``); ``doc`` is the script's docstring, ``sweep`` what
    its sweep directory holds."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("sweep", type=Path, help=f"sweep directory of {sweep}")
    parser.add_argument("--out", type=Path, help="default: SWEEP/study")
    parser.add_argument("--format", default="pdf,png", help="figure formats, comma-separated")
    args = parser.parse_args(argv)
    return StudyArgs(args.sweep, args.out or args.sweep / "study", args.format.split(","))


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
    frame = with_parent_dense(sweep.frame(all_columns=True))
    out.mkdir(parents=True, exist_ok=True)
    for name, table in method_tables(frame, reference, others, values).items():
        table.to_csv(out / f"{prefix}_{name}.csv", index=False)
        with pd.option_context("display.width", 250, "display.max_columns", 20):
            print(f"\n{name}\n{table.round(4).to_string(index=False)}")
    print(draw_figures(sweep.runs, out, formats=formats, names=figures, tables={"runs": frame}))
    print(f"figures and tables: {out}")
