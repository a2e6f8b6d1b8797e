"""P7: weight stability across levels. Curves of S1 (distance to the dense solution), Pearson
correlation and sign agreement of consecutive levels' weights vs level per method; and scatters
of the surviving weights' trained values θ_T at level t against level t + 1."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from maskstudy.analysis.stability import alive_at_both
from maskstudy.errors import ConfigError
from maskstudy.plots.bands import mean_band
from maskstudy.plots.style import (
    DOUBLE_COLUMN,
    WHOLE,
    apply_style,
    colour_by_regime,
    layer_label,
    legend_below,
    level_axis,
    method_legend,
    method_line,
    methods,
    need_columns,
    need_rows,
    panel_grid,
    run_title,
)
from maskstudy.runs.runlike import RunLike
from maskstudy.runs.table import config_columns

METRIC_LABELS = {
    "s1": "S1: distance to dense\n(per dense travel)",
    "pearson": "Pearson r, level t−1 vs t",
    "spearman": "Spearman ρ, level t−1 vs t",
    "sign_agreement": "sign agreement, t−1 vs t",
    "cosine": "cosine, level t−1 vs t",
    "persistence": "mask persistence",
}
HEX_GRID = 40  # hexagons across a weight-scatter panel


def stability_vs_level(
    stability: pd.DataFrame,
    metrics: Sequence[str] = ("s1", "pearson", "sign_agreement"),
    layer: str = WHOLE,
    band: str = "ci",
) -> Figure:
    """P7 curves: one panel per stability ``metric`` (columns of ``stability_table(runs)``),
    one line per criterion × regime, mean over seeds with a band, levels ≥ 1 of ``layer``."""
    need_columns(
        stability,
        ["criterion", "regime", "level", "layer", *metrics],
        "pass stability_table(runs)",
    )
    rows = stability[(stability["layer"] == layer) & (stability["level"] > 0)]
    need_rows(rows, f"no pruned level (level > 0) for layer {layer!r}")
    apply_style()
    fig, axes = panel_grid(len(metrics), 3, sharey=False)
    by_regime = colour_by_regime(rows)
    for ax, metric in zip(axes, metrics, strict=True):
        stats = mean_band(rows, metric, ["criterion", "regime", "level"], band)
        for criterion, regime in methods(stats):
            g = stats[(stats["criterion"] == criterion) & (stats["regime"] == regime)]
            spread = None if band == "none" else (g["lo"], g["hi"])
            method_line(ax, g["level"], g["mean"], criterion, regime, spread, by_regime=by_regime)
        ax.set_title(METRIC_LABELS.get(metric, metric))
        level_axis(ax)
    if layer != WHOLE:
        fig.suptitle(layer_label(layer), fontsize=8)
    method_legend(fig, rows)
    return fig


def _kept_pairs(run: RunLike, level: int, layer: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(θ_T at level − 1, θ_T at level) of the weights both levels' masks keep (level
    ``level``'s mask when masks are nested; random_mask and Drop Pruning masks are not)."""
    if level < 1 or level not in run.levels or level - 1 not in run.levels:
        raise ConfigError(
            f"run {config_columns(run)['run_id']} needs levels {level - 1} and {level} for a "
            f"level-{level} scatter; its levels: {run.levels}"
        )
    mask = alive_at_both(run.mask(level - 1), run.mask(level))
    if layer is not None and layer not in mask:
        raise ConfigError(f"layer {layer!r} is not in the mask; its layers: {', '.join(mask)}")
    before, after = run.weights(level - 1), run.weights(level)
    names = list(mask) if layer is None else [layer]
    x = np.concatenate([before[n][mask[n]].double().numpy() for n in names])
    y = np.concatenate([after[n][mask[n]].double().numpy() for n in names])
    return x, y


def weight_scatter(runs: Sequence[RunLike], level: int, layer: str | None = None) -> Figure:
    """P7 scatter: per run, the trained weights θ_T^{t} (x, level ``level`` − 1) against
    θ_T^{t+1} (y, level ``level``) of every weight both levels keep, in ``layer`` or all masked
    layers, as a hexbin of counts on one log colour scale for all panels (tens of thousands of
    points would saturate a scatter); r is Pearson's over the same weights, as in
    ``stability_table``."""
    if not runs:
        raise ConfigError("no runs given; pass the runs to draw side by side")
    apply_style()
    pairs = [_kept_pairs(run, level, layer) for run in runs]
    reach = max(float(np.abs(np.concatenate(p)).max()) for p in pairs) * 1.05
    columns = min(len(runs), 3)
    side = DOUBLE_COLUMN[0] / 3
    fig, axes = panel_grid(len(runs), columns, size=(side, side + 0.3))
    cells = []
    for ax, run, (x, y) in zip(axes, runs, pairs, strict=True):
        ids = config_columns(run)
        cells.append(
            ax.hexbin(
                x, y, gridsize=HEX_GRID, extent=(-reach, reach, -reach, reach), mincnt=1,
                cmap="mako_r", linewidths=0, rasterized=True,
            )
        )  # fmt: skip
        ax.plot([-reach, reach], [-reach, reach], color="0.3", lw=0.8, ls=(0, (4, 2)))
        r = np.corrcoef(x, y)[0, 1] if len(x) > 1 else np.nan
        ax.set_title(f"{run_title(ids)}\nr = {r:.3f}, n = {len(x):,}")
        ax.set(xlim=(-reach, reach), ylim=(-reach, reach), aspect="equal")
        ax.set_xlabel(f"$\\theta_T$, level {level - 1}")
    axes[0].set_ylabel(f"$\\theta_T$, level {level}")
    top = max(float(c.get_array().max()) for c in cells if c.get_array().size)
    for c in cells:  # one scale for every panel, so that densities compare
        c.set_norm(LogNorm(vmin=1, vmax=max(top, 2)))
    fig.colorbar(cells[0], ax=axes, shrink=0.8, label="weights per hexagon")
    where = "all layers" if layer is None else layer_label(layer)
    fig.suptitle(f"surviving weights at level {level}, {where}", fontsize=8)
    legend_below(fig, [[Line2D([], [], color="0.3", lw=0.8, ls=(0, (4, 2)), label="y = x")]])
    return fig
