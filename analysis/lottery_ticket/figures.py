"""Figures and table of the lottery-ticket study (Frankle & Carbin 2019, Fig. 3/4 on MNIST).

Accuracy and early-stopping iteration vs % of weights remaining for the winning ticket (rewind to
θ0), a random reinitialisation and a random mask; how the masks of rewind and reinit overlap;
how stable the ticket's weights are across levels. Reads a finished or partial sweep.

    python analysis/lottery_ticket/figures.py SWEEP_DIR [--out DIR] [--format pdf,png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import maskstudy
from maskstudy.plots import draw_figures

FIGURES = [
    "p1_accuracy",
    "p1_early_stop",
    "p4_regime_overlap",
    "p7_stability",
    "p7_weight_scatter",
    "mds_masks",
]


def level_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per level and regime, over seeds: % remaining, final and early-stop test accuracy and the
    early-stopping iteration (the quantities of the paper's Fig. 3/4)."""
    values = ["test_acc", "early_stop_test_acc", "early_stop_step"]
    table = frame.groupby(["level", "regime"])[["percent_remaining", *values]].mean()
    table["seeds"] = frame.groupby(["level", "regime"])["seed"].nunique()
    wide = table.unstack("regime")
    wide.columns = [f"{value}[{regime}]" for value, regime in wide.columns]
    remaining = wide.filter(like="percent_remaining").mean(axis=1).round(2)
    wide = wide.drop(columns=wide.filter(like="percent_remaining").columns)
    return wide.assign(percent_remaining=remaining).reset_index()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="sweep directory of lenet300_lth*.toml")
    parser.add_argument("--out", type=Path, help="default: SWEEP/study")
    parser.add_argument("--format", default="pdf,png")
    args = parser.parse_args(argv)
    out = args.out or args.sweep / "study"
    sweep = maskstudy.open_sweep(args.sweep)
    frame = sweep.frame()
    table = level_table(frame)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "lth_table.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(4).to_string(index=False))
    formats = args.format.split(",")
    print(draw_figures(sweep.runs, out, formats=formats, names=FIGURES, tables={"runs": frame}))
    print(f"figures and table: {out}")


if __name__ == "__main__":
    main()
