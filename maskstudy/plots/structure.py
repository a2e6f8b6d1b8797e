"""P5–P6: structure in masks. P5 draws conv masks as C_out × C_in images of alive weights per
kernel; P6 the fraction of entirely pruned kernels / filters / channels vs level, beside the
fraction a random mask of the same density would give, and the structure index (their ratio).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy.special import logsumexp

from maskstudy.errors import ConfigError
from maskstudy.plots.style import (
    CRITERIA,
    DOUBLE_COLUMN,
    REGIMES,
    apply_style,
    chance_line,
    colour_by_regime,
    layer_label,
    legend_below,
    legend_rows,
    level_axis,
    method_color,
    method_line,
    methods,
    need_columns,
    need_rows,
    ordered,
    panel_grid,
    run_title,
)
from maskstudy.runs.runlike import RunLike
from maskstudy.runs.table import config_columns

CONV_UNITS = ("kernel", "filter", "channel")
LINEAR_UNITS = ("unit", "input")
UNIT_LABELS = {
    "kernel": "dead kernels",
    "filter": "dead filters",
    "channel": "dead input channels",
    "unit": "dead units",
    "input": "dead inputs",
}
LN10 = np.log(10)
NONE_SPREAD = 0.08  # sideways step between the ▼ markers of methods with nothing dead


# --- P5 ---------------------------------------------------------------------------------------
def kernel_counts(mask: np.ndarray) -> np.ndarray:
    """C_out × C_in array of alive weights per kernel of a conv mask (out, in, *kernel)."""
    m = np.asarray(mask)
    if m.ndim < 3 or m.dtype != np.bool_:
        raise ConfigError(
            f"a conv mask is a bool array (out, in, *kernel); got {m.dtype} {m.shape}: "
            "pick a conv layer's weight (e.g. 'conv2.weight')"
        )
    return m.reshape(m.shape[0], m.shape[1], -1).sum(axis=2)


def count_scale(full: int) -> tuple[ListedColormap, BoundaryNorm]:
    """Colours of alive-weight counts per kernel, 0 (dead: white) to ``full`` (kh·kw alive)."""
    cmap = ListedColormap(["white", *sns.color_palette("mako_r", full)])
    return cmap, BoundaryNorm(np.arange(-0.5, full + 1), cmap.N)


def conv_mask_images(runs: Sequence[RunLike], level: int, layer: str) -> Figure:
    """P5: one panel per run, C_out (rows) × C_in (columns), each cell coloured by the number
    of weights alive in that kernel at ``level``, on a scale from 0 to a full kernel (k·k), so
    that panels, levels and figures compare; white cells are dead kernels."""
    if not runs:
        raise ConfigError("no runs given; pass the runs whose masks to draw side by side")
    counts, titles, full = [], [], 1
    for run in runs:
        if level not in run.levels:
            raise ConfigError(
                f"run {config_columns(run)['run_id']} has no level {level}; "
                f"its levels: {run.levels}"
            )
        mask = run.mask(level)
        if layer not in mask:
            raise ConfigError(f"layer {layer!r} is not in the mask; its layers: {', '.join(mask)}")
        grid = kernel_counts(mask[layer].numpy())
        full = max(full, int(np.prod(mask[layer].shape[2:])))
        counts.append(grid)
        ids = config_columns(run)
        dead = float((grid == 0).mean())
        titles.append(f"{run_title(ids)}\n{100 * dead:.0f} % kernels dead")
    apply_style()
    columns = min(len(runs), 3)
    rows, cols = counts[0].shape
    width = DOUBLE_COLUMN[0] / 3
    fig, axes = panel_grid(
        len(runs), columns, sharey=True, size=(width, width * min(2.0, rows / cols) + 0.45)
    )
    cmap, norm = count_scale(full)
    for ax, grid, title in zip(axes, counts, titles, strict=True):
        image = ax.imshow(grid, cmap=cmap, norm=norm, interpolation="nearest", aspect="auto")
        ax.set_title(title)
        ax.set_xlabel("input channel")
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(True)
    axes[0].set_ylabel("output channel (filter)")
    step = -(-full // 4)
    ticks = sorted({*range(0, full + 1, step), full})
    bar = fig.colorbar(image, ax=axes, ticks=ticks, shrink=0.9)
    bar.minorticks_off()
    bar.set_label("alive weights per kernel")
    fig.suptitle(f"{layer_label(layer)}, level {level}", fontsize=8)
    return fig


# --- P6 ---------------------------------------------------------------------------------------
def _pooled(structure: pd.DataFrame, layer: str | None) -> pd.DataFrame:
    """Per (run, level, unit): dead fraction and log10 chance fraction over ``layer`` (None:
    every layer holding the unit kind, pooled: chance counts add up across layers)."""
    rows = structure if layer is None else structure[structure["layer"] == layer]
    keys = ["run_id", "criterion", "regime", "level", "unit"]
    log_expected = np.log10(rows["groups"]) + rows["log10_expected"]  # expected dead groups
    rows = rows.assign(log_expected=log_expected * LN10)
    pooled = rows.groupby(keys).agg(dead=("dead", "sum"), groups=("groups", "sum"))
    pooled["log10_expected"] = rows.groupby(keys)["log_expected"].agg(
        lambda v: logsumexp(v.to_numpy())
    ) / LN10 - np.log10(pooled["groups"])
    pooled["fraction"] = pooled["dead"] / pooled["groups"]
    return pooled.reset_index()


def dead_units_vs_level(
    structure: pd.DataFrame, units: Sequence[str] = CONV_UNITS, layer: str | None = None
) -> Figure:
    """P6: fraction of entirely pruned ``units`` vs level (top row) beside chance (the broad
    grey line) and the structure index observed ÷ chance on a log axis (bottom row; 1 = chance).

    Input: ``structure_table(runs)``. ``layer=None`` pools every layer holding the unit kind
    (dead and expected dead groups add up). Over seeds: the mean fraction, and chance as the
    geometric mean (it spans many decades); the index is their ratio. A method with no dead
    group at a level has index 0, drawn as ▼ on the bottom edge.
    """
    need_columns(
        structure,
        ["run_id", "criterion", "regime", "level", "layer", "unit", "dead", "groups", "density"],
        "pass structure_table(runs)",
    )
    present = [u for u in units if u in set(structure["unit"])]
    if not present:
        raise ConfigError(
            f"the table has no {', '.join(units)} rows; conv layers give {CONV_UNITS}, "
            f"linear layers {LINEAR_UNITS}"
        )
    if layer is not None and layer not in set(structure["layer"]):
        raise ConfigError(
            f"layer {layer!r} is not in the table; its layers: "
            f"{', '.join(dict.fromkeys(structure['layer']))}"
        )
    pruned = structure[structure["unit"].isin(present) & (structure["density"] < 1)]
    pooled = _pooled(pruned, layer)
    need_rows(pooled, "no pruned level (density < 1) in the table")
    apply_style()
    means = (
        pooled.groupby(["criterion", "regime", "unit", "level"])
        .agg(fraction=("fraction", "mean"), log10_expected=("log10_expected", "mean"))
        .reset_index()
    )
    with np.errstate(divide="ignore"):
        means["log10_index"] = np.log10(means["fraction"]) - means["log10_expected"]
    finite = means["log10_index"][np.isfinite(means["log10_index"])]
    low = min(-1.0, float(finite.min()) - 0.5) if len(finite) else -1.0
    high = max(1.0, float(finite.max()) + 0.5) if len(finite) else 1.0
    fig, axes = panel_grid(2 * len(present), len(present), sharey=False)
    tops, bottoms = axes[: len(present)], axes[len(present) :]
    for top, bottom in zip(tops[1:], bottoms[1:], strict=True):  # share before any data
        top.sharey(tops[0])
        bottom.sharey(bottoms[0])
    by_regime = colour_by_regime(means)
    for unit, top, bottom in zip(present, tops, bottoms, strict=True):
        data = means[means["unit"] == unit]
        _fraction_panel(top, data, by_regime)
        _index_panel(bottom, data, 10**low, by_regime)
        top.set_title(UNIT_LABELS.get(unit, unit))
    bottoms[0].set_ylim(10**low, 10**high)
    tops[0].set_ylabel("fraction dead")
    bottoms[0].set_ylabel("structure index\n(observed / chance)")
    for ax in axes:
        level_axis(ax)
    where = "all layers" if layer is None else layer_label(layer)
    fig.suptitle(f"entirely pruned groups, {where}", fontsize=8)
    rows = legend_rows(
        ordered(means["criterion"], CRITERIA), ordered(means["regime"], REGIMES), chance=True
    )
    if np.isneginf(means["log10_index"]).any():
        rows[-1].append(Line2D([], [], ls="", marker="v", color="0.3", label="none dead"))
    legend_below(fig, rows)
    return fig


def _fraction_panel(ax, data: pd.DataFrame, by_regime: bool) -> None:
    for criterion, regime in methods(data):
        g = data[(data["criterion"] == criterion) & (data["regime"] == regime)]
        method_line(ax, g["level"], g["fraction"], criterion, regime, by_regime=by_regime)
    chances = data.groupby(["criterion", "regime"])
    drawn: list[np.ndarray] = []
    for _, g in chances:  # one chance line per distinct curve (densities may differ)
        curve = 10 ** g["log10_expected"].to_numpy()
        if not any(len(c) == len(curve) and np.allclose(c, curve, atol=5e-3) for c in drawn):
            chance_line(ax, g["level"], curve)
            drawn.append(curve)
    ax.set_ylim(-0.03, 1.03)


def _index_panel(ax, data: pd.DataFrame, floor: float, by_regime: bool) -> None:
    """Structure index per method on a log axis; index 0 (nothing dead) as ▼ at ``floor``,
    spread a little sideways so that coinciding methods stay visible."""
    drawn = methods(data)
    for i, (criterion, regime) in enumerate(drawn):
        g = data[(data["criterion"] == criterion) & (data["regime"] == regime)]
        shown = g[np.isfinite(g["log10_index"])]
        method_line(
            ax, shown["level"], 10 ** shown["log10_index"], criterion, regime, by_regime=by_regime
        )
        none = g[np.isneginf(g["log10_index"])]
        if none.empty:  # an empty unclipped line would still stretch the layout to (0, 0)
            continue
        ax.plot(
            none["level"] + NONE_SPREAD * (i - (len(drawn) - 1) / 2),
            np.full(len(none), floor),
            ls="",
            marker="v",
            ms=3.5,
            color=method_color(criterion, regime, by_regime),
            clip_on=False,
        )
    chance_line(ax, [], 1.0)
    ax.set_yscale("log")
