"""Tables and figures of the Rethinking study (Liu et al. 2019) at CPU size.

The prune-fine-tune pipeline (regime finetune: prune, then train on at the final learning rate)
against its scratch baselines, branches trained on the pipeline's own masks from a fresh init:
scratch_e (the same iterations) and scratch_b (iterations × FLOPs ratio). Per level: test
accuracy as mean [95 % bootstrap CI] (seeds), and the pipeline against each baseline by a
paired sign-flip permutation test over seeds.

    python analysis/rethinking/figures.py SWEEP_DIR [--out DIR] [--format pdf,png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import maskstudy
from maskstudy.analysis.stats import method_tables
from maskstudy.plots import draw_figures
from maskstudy.runs.table import with_parent_dense

PIPELINE = "finetune"
BASELINES = ("scratch_e", "scratch_b")
VALUES = (("test_acc", 100, 2), ("train_iterations", 1, 0))
FIGURES = ["p1_accuracy"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="sweep directory of lenet300_scratch.toml")
    parser.add_argument("--out", type=Path, help="default: SWEEP/study")
    parser.add_argument("--format", default="pdf,png")
    args = parser.parse_args(argv)
    out = args.out or args.sweep / "study"
    sweep = maskstudy.open_sweep(args.sweep)
    frame = with_parent_dense(sweep.frame())
    out.mkdir(parents=True, exist_ok=True)
    for name, table in method_tables(frame, PIPELINE, BASELINES, VALUES).items():
        table.to_csv(out / f"rethinking_{name}.csv", index=False)
        with pd.option_context("display.width", 250, "display.max_columns", 20):
            print(f"\n{name}\n{table.round(4).to_string(index=False)}")
    formats = args.format.split(",")
    print(draw_figures(sweep.runs, out, formats=formats, names=FIGURES, tables={"runs": frame}))
    print(f"figures and tables: {out}")


if __name__ == "__main__":
    main()
