"""Figures and tables of the lottery-ticket study (Frankle & Carbin 2019, Fig. 3/4 on MNIST).

Accuracy and early-stopping iteration vs % of weights remaining for the winning ticket (rewind to
θ0) and its controls, branches trained on the ticket's own masks: reinit (a fresh init),
random_mask (a random mask with the ticket's per-layer counts) and shuffle (the ticket's mask
permuted within each layer). Tables give the mean over seeds with a 95 % bootstrap interval and
the number of seeds; the ticket is compared with each control by a paired sign-flip permutation
test over seeds. Reads a finished or partial sweep.

    python analysis/lottery_ticket/figures.py SWEEP_DIR [--out DIR] [--format pdf,png]
"""

from __future__ import annotations

from maskstudy.plots.study import study_args, write_study

FIGURES = [
    "p1_accuracy",
    "p1_early_stop",
    "p7_stability",
    "p7_weight_scatter",
    "mds_masks",
]


TICKET = "rewind"
CONTROLS = ("reinit", "random_mask", "shuffle")
VALUES = (("test_acc", 100, 2), ("early_stop_test_acc", 100, 2), ("early_stop_step", 1, 0))


def main(argv: list[str] | None = None) -> None:
    args = study_args(__doc__, "lenet300_lth*.toml", argv)
    write_study(args.sweep, args.out, "lth", TICKET, CONTROLS, VALUES, FIGURES, args.formats)


if __name__ == "__main__":
    main()
