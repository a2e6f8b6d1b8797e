"""P8: per-layer density vs level under layerwise and global pruning scope. Global pruning can
empty a small layer long before the network as a whole is sparse (layer collapse)."""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogLocator

from maskstudy.errors import ConfigError
from maskstudy.plots.style import (
    apply_style,
    layer_label,
    legend_below,
    level_axis,
    method_label,
    methods,
    need_columns,
    need_rows,
    ordered,
    panel_grid,
)

DENSITY_PREFIX = "density["
SCOPE_TITLES = {"layer": "layerwise scope", "global": "global scope"}


def density_columns(frame: pd.DataFrame) -> list[str]:
    """The ``density[<layer>]`` columns of a ``runs_frame``, in the model's layer order."""
    return [c for c in frame.columns if c.startswith(DENSITY_PREFIX)]


def density_vs_level(frame: pd.DataFrame) -> Figure:
    """P8: one panel per scope (and criterion × regime when there are several), one line per
    layer (shallow → deep in a sequential palette) and the whole network in black; means over
    seeds of the ``density[<layer>]`` columns of ``runs_frame(runs)``, log y axis."""
    need_columns(
        frame, ["scope", "criterion", "regime", "level", "percent_remaining"], "pass runs_frame"
    )
    columns = density_columns(frame)
    if not columns:
        raise ConfigError(
            "the frame has no density[<layer>] columns; pass runs_frame(runs) of stored runs"
        )
    need_rows(frame, "the frame holds no completed level")
    apply_style()
    layers = [c[len(DENSITY_PREFIX) : -1] for c in columns]
    data = frame.rename(columns=dict(zip(columns, layers, strict=True)))
    data = data.assign(network=data["percent_remaining"] / 100)
    panels = [
        (scope, criterion, regime)
        for scope in ordered(data["scope"], tuple(SCOPE_TITLES))
        for criterion, regime in methods(data[data["scope"] == scope])
    ]
    several = len({k[1:] for k in panels}) > 1
    fig, axes = panel_grid(len(panels), 2)
    palette = sns.color_palette("viridis", len(layers))
    for ax, (scope, criterion, regime) in zip(axes, panels, strict=True):
        rows = data[(data["scope"] == scope) & (data["criterion"] == criterion)]
        means = rows[rows["regime"] == regime].groupby("level")[[*layers, "network"]].mean()
        for column, color in zip(layers, palette, strict=True):
            ax.plot(means.index, means[column], color=color, marker="o", ms=2.5, lw=1.2)
        ax.plot(means.index, means["network"], color="black", lw=1.6, ls="-")
        title = SCOPE_TITLES.get(scope, f"scope {scope}")
        ax.set_title(f"{title}\n{method_label(criterion, regime)}" if several else title)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(lambda v, _: f"{100 * v:.3g}")
        ax.yaxis.set_minor_formatter(lambda v, _: "")
        level_axis(ax)
    axes[0].set_ylabel("weights kept (%)")
    handles = [
        Line2D([], [], color=color, marker="o", ms=2.5, label=layer_label(name))
        for name, color in zip(layers, palette, strict=True)
    ]
    network = Line2D([], [], color="black", lw=1.6, label="whole network")
    legend_below(fig, [[network, *handles]], columns=3)
    return fig
