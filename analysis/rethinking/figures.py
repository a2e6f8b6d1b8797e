"""Tables and figures of the Rethinking study (Liu et al. 2019) at CPU size.

The prune-fine-tune pipeline (regime finetune: prune, then train on at the final learning rate)
against its scratch baselines, branches trained on the pipeline's own masks from a fresh init:
scratch_e (the same iterations) and scratch_b (iterations × FLOPs ratio). Per level: test
accuracy as mean [95 % bootstrap CI] (seeds), and the pipeline against each baseline by a
paired sign-flip permutation test over seeds.

    python analysis/rethinking/figures.py SWEEP_DIR [--out DIR] [--format pdf,png]
"""

from __future__ import annotations

from maskstudy.plots.study import study_args, write_study

PIPELINE = "finetune"
BASELINES = ("scratch_e", "scratch_b")
VALUES = (("test_acc", 100, 2), ("train_iterations", 1, 0))
FIGURES = ["p1_accuracy"]


def main(argv: list[str] | None = None) -> None:
    args = study_args(__doc__, "lenet300_scratch.toml", argv)
    write_study(
        args.sweep, args.out, "rethinking", PIPELINE, BASELINES, VALUES, FIGURES, args.formats
    )


if __name__ == "__main__":
    main()
