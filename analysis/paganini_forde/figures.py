"""Figures and tables of the Paganini & Forde study (P1–P8 and the mask map).

Every figure the sweep supports (accuracy vs % remaining per criterion × regime, mask overlap
across seeds / criteria / regimes against the chance baseline, conv structure for LeNet-5,
weight stability), the analysis tables, and two summaries: accuracy per method and level, and
the whole-network overlap lift over chance per comparison and level.

    python analysis/paganini_forde/figures.py SWEEP_DIR [--out DIR] [--format pdf,png]
"""

from __future__ import annotations

import pandas as pd

import maskstudy
from maskstudy.analysis.report import analysis_tables, write_tables
from maskstudy.plots import draw_figures, with_run_columns
from maskstudy.plots.study import study_args

METHOD = ["model", "criterion", "regime", "level"]


def accuracy_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over seeds of test accuracy, with % remaining, per model, method and level."""
    grouped = frame.groupby(METHOD)
    return pd.DataFrame({
        "percent_remaining": grouped["percent_remaining"].mean(),
        "test_acc": grouped["test_acc"].mean(),
        "test_acc_sd": grouped["test_acc"].std(),
        "seeds": grouped["seed"].nunique(),
    }).reset_index()  # fmt: skip


def lift_summary(overlap: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """Whole-network Jaccard against its chance expectation, averaged over seeds per comparison
    and level: ``along`` is what differs between the two masks (seed, criterion or regime), the
    other method columns say what they share (the first run's value; '' for the compared one)."""
    whole = overlap[(overlap["layer"] == "all") & (overlap["level"] == overlap["level_b"])]
    whole = whole[whole["level"] > 0]  # level 0 masks are all-ones: trivially identical
    whole = with_run_columns(whole, frame, ["model", "criterion", "regime"])
    for column, field in {"criterion": "prune.criterion", "regime": "regime"}.items():
        whole.loc[whole["along"] == field, column] = ""
    keys = ["model", "criterion", "regime", "along", "value_a", "value_b", "level"]
    return whole.groupby(keys)[["jaccard", "expected_jaccard", "lift", "z"]].mean().reset_index()


def main(argv: list[str] | None = None) -> None:
    args = study_args(__doc__, "one of this study's files", argv)
    out = args.out
    sweep = maskstudy.open_sweep(args.sweep)
    frame = sweep.frame(all_columns=True)  # the figures read any config field
    tables = analysis_tables(sweep.runs)
    write_tables(tables, out / "tables")
    summaries = {
        "accuracy": accuracy_summary(frame),
        "lift": lift_summary(tables["overlap"], frame),
    }
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        for name, table in summaries.items():
            table.to_csv(out / f"{name}_summary.csv", index=False)
            print(f"\n{name}:\n{table.round(4).to_string(index=False)}")
    report = draw_figures(sweep.runs, out, formats=args.formats, tables={**tables, "runs": frame})
    print(report)
    print(f"figures and tables: {out}")


if __name__ == "__main__":
    main()
