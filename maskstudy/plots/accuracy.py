"""P1: test accuracy vs % weights remaining (log axis), mean and min–max band over seeds."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from maskstudy.plots.style import (
    SINGLE_COLUMN,
    apply_style,
    criterion_color,
    method_label,
    regime_linestyle,
)


def accuracy_vs_remaining(frame: pd.DataFrame, metric: str = "test_acc") -> Figure:
    """One line per criterion × regime over a tidy (run, level) frame; dense level as a grey line."""
    apply_style()
    fig, ax = plt.subplots(figsize=SINGLE_COLUMN)
    dense = frame[frame["level"] == 0][metric]
    groups = frame.groupby(["criterion", "regime", "level"])
    stats = groups.agg(
        x=("percent_remaining", "mean"),
        mean=(metric, "mean"),
        lo=(metric, "min"),
        hi=(metric, "max"),
    ).reset_index()
    for (criterion, regime), g in stats.groupby(["criterion", "regime"]):
        color, style = criterion_color(criterion), regime_linestyle(regime)
        ax.plot(
            g["x"],
            100 * g["mean"],
            style,
            color=color,
            marker="o",
            ms=2.5,
            label=method_label(criterion, regime),
        )
        ax.fill_between(g["x"], 100 * g["lo"], 100 * g["hi"], color=color, alpha=0.15, lw=0)
    if len(dense):
        ax.axhline(100 * dense.mean(), color="0.4", lw=0.8, label="dense")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ticks = sorted(set(stats["x"].round(1)), reverse=True)
    ax.xaxis.set_major_locator(FixedLocator(ticks[:: max(1, len(ticks) // 6)]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.3g}")
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel("test accuracy (%)" if metric == "test_acc" else metric)
    ax.legend(fontsize=6, ncol=1, loc="lower left")
    return fig
