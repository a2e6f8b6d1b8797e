"""P1: test accuracy (or the early-stop iteration) vs % weights remaining on a log axis, one
line per criterion × regime, mean over seeds with a band, and the dense network as a line."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from maskstudy.plots.bands import mean_band
from maskstudy.plots.style import (
    DENSE,
    apply_style,
    colour_by_regime,
    method_legend,
    method_line,
    methods,
    need_columns,
    need_rows,
    panel_grid,
)

METRIC_LABELS = {
    "test_acc": "test accuracy (%)",
    "early_stop_test_acc": "test accuracy at early stop (%)",
    "early_stop_step": "early-stop iteration",
}
PERCENT_METRICS = ("test_acc", "early_stop_test_acc")  # fractions shown as %
MAX_TICKS = 7


def accuracy_vs_remaining(
    frame: pd.DataFrame, metric: str = "test_acc", band: str = "ci"
) -> Figure:
    """P1 over a tidy (run, level) frame (``runs_frame``): ``metric`` vs ``percent_remaining``.

    ``band``: 'ci' (95 % bootstrap CI of the mean over seeds), 'minmax' or 'none'. The dense
    line is the mean of ``metric`` at level 0 (every method shares the dense network) over the
    runs whose level 0 is dense (a gradual run prunes during level 0).
    """
    need_columns(
        frame,
        ["criterion", "regime", "level", "percent_remaining", metric],
        "pass runs_frame(runs) (one row per run and level)",
    )
    need_rows(frame, "the frame holds no completed level")
    apply_style()
    scale = 100 if metric in PERCENT_METRICS else 1
    fig, (ax,) = panel_grid(1, 1)
    keys = ["criterion", "regime", "level"]
    stats = mean_band(frame, metric, keys, band)
    x = frame.groupby(keys)["percent_remaining"].mean().rename("x").reset_index()
    stats = stats.merge(x, on=keys)
    by_regime = colour_by_regime(stats)
    for criterion, regime in methods(stats):
        g = stats[(stats["criterion"] == criterion) & (stats["regime"] == regime)]
        g = g.sort_values("level")
        spread = None if band == "none" else (scale * g["lo"], scale * g["hi"])
        method_line(ax, g["x"], scale * g["mean"], criterion, regime, spread, by_regime=by_regime)
    dense = frame.loc[(frame["level"] == 0) & (frame["percent_remaining"] == 100), metric].dropna()
    if len(dense):
        ax.axhline(scale * dense.mean(), **DENSE, label="dense", zorder=1)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ticks = sorted(set(stats["x"].round(1)), reverse=True)
    ax.xaxis.set_major_locator(FixedLocator(ticks[:: -(-len(ticks) // MAX_TICKS)]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.3g}")
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    method_legend(fig, stats, dense=len(dense) > 0)
    return fig
