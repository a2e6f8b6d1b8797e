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

from maskstudy.plots.study import write_study

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
    write_study(
        args.sweep, out, "rethinking", PIPELINE, BASELINES, VALUES, FIGURES, args.format.split(",")
    )


if __name__ == "__main__":
    main()
