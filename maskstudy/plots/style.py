"""One figure style: seaborn, a colour-blind-safe palette, the same colour for a criterion and
the same line style for a regime in every figure, chance lines drawn and labelled alike."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from maskstudy.errors import ConfigError
from maskstudy.pruning import CRITERIA as CRITERION_REGISTRY
from maskstudy.runs.regimes import METHODS

SINGLE_COLUMN = (3.4, 2.6)  # inches: legible at single-column width
DOUBLE_COLUMN = (7.0, 2.8)
PANEL_HEIGHT = 1.9
_PALETTE = sns.color_palette("colorblind", 10) + sns.color_palette("dark", 10)[:6]  # 16 colours
# Legend order, from the registry: the papers' criteria first, then every other registered one;
# a criterion keeps its colour (its place in this order) in every figure.
_FIRST_CRITERIA = (
    "magnitude",
    "random",
    "ln_structured",
    "random_structured",
    "drop",
    "kernel",
    "window",
    "pca",
    "snip",
    "synflow",
    "grasp",
)
CRITERIA = (*_FIRST_CRITERIA, *(c for c in CRITERION_REGISTRY.names() if c not in _FIRST_CRITERIA))
# What the figures call a method's training (runs.regimes.method_name): the regimes, then the
# branch kinds; each has its own line style.
REGIMES = METHODS
_LINESTYLES = {
    "rewind": "-",
    "finetune": ":",
    "lr_rewind": (0, (3, 1, 1, 1)),
    "reinit_prune": (0, (6, 2)),
    "reinit": "--",
    "random_mask": "-.",
    "shuffle": (0, (1, 1)),
    "scratch_e": (0, (5, 1, 1, 1, 1, 1)),
    "scratch_b": (0, (8, 2, 2, 2)),
    "rewind (branch)": (0, (10, 3)),
    "finetune (branch)": (0, (1, 2)),
    "lr_rewind (branch)": (0, (4, 1, 4, 1, 1, 1)),
}
# A method's variants (the same criterion and regime done another way: a late rewind point, a
# global scope, …), each with a line style no regime has, in its criterion's colour.
VARIANT_LINESTYLES = (
    (0, (2, 1)),
    (0, (6, 1, 1, 1, 1, 1, 1, 1)),
    (0, (3, 1, 3, 1, 8, 1)),
)
# chance in every figure: a broad pale grey line, unlike any method's thin coloured one
CHANCE = {"color": "0.55", "ls": "-", "lw": 2.6, "alpha": 0.45, "solid_capstyle": "butt"}
DENSE = {"color": "0.45", "ls": "-", "lw": 0.9}
WHOLE = "all"  # layer name of whole-network rows in the analysis tables


def apply_style() -> None:
    """Set the seaborn theme and rcParams every figure of the package uses."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=0.9)
    plt.rcParams.update({
        "figure.dpi": 150,
        "savefig.dpi": 300,
        "savefig.bbox": "tight",
        "legend.frameon": False,
        "axes.titlesize": 8,
        "axes.labelsize": 8,
        "xtick.labelsize": 7,
        "ytick.labelsize": 7,
        "legend.fontsize": 7,
        "pdf.fonttype": 42,  # editable text in the PDF
    })  # fmt: skip


def method_label(criterion: str, regime: str) -> str:
    return f"{criterion} · {regime}"


def run_title(ids: dict[str, Any]) -> str:
    """A run named by its method and seed (and scope, when not layerwise), from the config
    columns of ``runs.table.config_columns``."""
    scope = "" if ids.get("scope", "layer") == "layer" else f", {ids['scope']} scope"
    return f"{method_label(ids['criterion'], ids['regime'])}, s{ids['seed']}{scope}"


# How titles name models and datasets (anything else: its registry name)
MODEL_NAMES = {
    "lenet300_100": "LeNet-300-100", "lenet5": "LeNet-5", "lenet5_caffe": "LeNet-5 (Caffe)",
    "conv2": "Conv-2", "conv4": "Conv-4", "conv6": "Conv-6", "vgg11": "VGG-11",
    "vgg16": "VGG-16", "vgg19": "VGG-19", "resnet20": "ResNet-20", "resnet32": "ResNet-32",
    "resnet56": "ResNet-56",
}  # fmt: skip
DATASET_NAMES = {
    "mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100", "digits": "scikit-learn digits", "synthetic": "synthetic data",
}  # fmt: skip


def study_title(model: str, width: float, dataset: str, seeds: int, extra: str = "") -> str:
    """``Conv-2 (width 0.25) on scikit-learn digits, 2 seeds``: what a figure shows, in words."""
    name = MODEL_NAMES.get(model, model) + (f" (width {width:g})" if width != 1 else "")
    seed_words = "1 seed" if seeds == 1 else f"{seeds} seeds"
    return f"{name} on {DATASET_NAMES.get(dataset, dataset)}, {seed_words}" + (
        f", {extra}" if extra else ""
    )


def criterion_color(criterion: str) -> tuple[float, float, float]:
    """A criterion's colour: fixed for the known ones, stable (by name) for any other."""
    if criterion in CRITERIA:
        return _PALETTE[CRITERIA.index(criterion)]
    return _PALETTE[len(CRITERIA) + sum(map(ord, criterion)) % (len(_PALETTE) - len(CRITERIA))]


def regime_linestyle(regime: str) -> str | tuple[int, tuple[int, ...]]:
    return _LINESTYLES.get(regime, "-")


# Regime colours (figures of one criterion) as palette indices, chosen so that the methods
# shown together stay apart: the ticket blue, its controls vermillion / green / purple, the
# fine-tuning family orange / brown / sky blue, Rethinking's scratch baselines pink / yellow
# (grey is left to the dense and chance lines).
_REGIME_COLOURS = {
    "rewind": 0, "reinit": 3, "random_mask": 2, "shuffle": 4, "finetune": 1, "lr_rewind": 5,
    "reinit_prune": 9, "scratch_e": 6, "scratch_b": 8,
}  # fmt: skip


def regime_color(regime: str) -> tuple[float, float, float]:
    """A regime's colour, for figures of one criterion: fixed for the known ones."""
    index = _REGIME_COLOURS.get(regime, 10 + sum(map(ord, regime)) % (len(_PALETTE) - 10))
    return _PALETTE[index]


def colour_by_regime(frame: pd.DataFrame) -> bool:
    """Whether a figure's methods differ only in their regime: then each regime gets its own
    colour as well as its line style (one colour for all would leave only the dashes)."""
    return _regimes_apart(frame["criterion"].nunique(), frame["regime"].nunique())


def _regimes_apart(criteria: int, regimes: int) -> bool:
    """The rule of :func:`colour_by_regime`, on counts (the legend has lists, not a frame)."""
    return criteria == 1 and regimes > 1


def method_color(criterion: str, regime: str, by_regime: bool) -> tuple[float, float, float]:
    return regime_color(regime) if by_regime else criterion_color(criterion)


def ordered(values: Iterable[Any], known: Sequence[str] = ()) -> list[Any]:
    """Distinct ``values``: the ``known`` names first in their order, then the rest sorted."""
    distinct = set(values)
    return [v for v in known if v in distinct] + sorted(distinct - set(known), key=str)


def methods(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """(criterion, regime) pairs present in ``frame``, criteria then regimes in the fixed order."""
    present = set(zip(frame["criterion"], frame["regime"], strict=True))
    return [
        (c, r)
        for c in ordered(frame["criterion"], CRITERIA)
        for r in ordered(frame["regime"], REGIMES)
        if (c, r) in present
    ]


def layer_label(layer: str) -> str:
    """'fc1.weight' → 'fc1'; the whole-network row → 'whole network'."""
    return "whole network" if layer == WHOLE else layer.removesuffix(".weight")


def need_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """ConfigError naming the missing columns and the table that has them."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        has = ", ".join(map(str, frame.columns[:20])) + ("…" if len(frame.columns) > 20 else "")
        raise ConfigError(
            f"the table has no column(s) {', '.join(missing)}; {what} (it has: {has})"
        )


def need_rows(frame: pd.DataFrame, what: str) -> None:
    """ConfigError saying why nothing is left to plot."""
    if frame.empty:
        raise ConfigError(f"no rows to plot: {what}")


def panel_grid(
    panels: int, columns: int, sharey: bool = True, size: tuple[float, float] | None = None
) -> tuple[Figure, list[Axes]]:
    """A figure of ``panels`` axes in rows of at most ``columns``; unused axes removed.

    Default panel ``size``: one or two panels per row fill a single column (3.4 in), three or
    more a double column (7 in)."""
    columns = max(1, min(columns, panels))
    rows = -(-panels // columns)
    if size is None:
        width = (SINGLE_COLUMN[0] if columns <= 2 else DOUBLE_COLUMN[0]) / columns
        size = (width, PANEL_HEIGHT if columns > 1 else SINGLE_COLUMN[1])
    fig, grid = plt.subplots(
        rows,
        columns,
        figsize=(size[0] * columns, size[1] * rows),
        sharex=True,
        sharey=sharey,
        squeeze=False,
        layout="constrained",
    )
    axes = list(grid.flat)
    for ax in axes[panels:]:
        ax.remove()
    for ax in axes[:panels]:
        ax.xaxis.set_tick_params(labelbottom=True)  # shared x: keep ticks on every panel
    return fig, axes[:panels]


def level_axis(ax: Axes, label: str = "pruning level") -> None:
    """Integer ticks on the x axis for pruning levels."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(label)


def chance_line(ax: Axes, x: Sequence[float], y: Sequence[float] | float) -> Line2D:
    """The chance line (broad, pale grey) (label ``chance``; a constant ``y`` spans the axes)."""
    if np.ndim(y) == 0:
        return ax.axhline(float(y), **CHANCE, label="chance", zorder=1)
    (line,) = ax.plot(x, y, **CHANCE, label="chance", zorder=1)
    return line


def method_style(
    criterion: str, regime: str, by_regime: bool = False, variant: int = 0
) -> dict[str, Any]:
    """A method's line (color, ls, lw): its criterion colour (its regime's with ``by_regime``)
    and regime line style; a ``variant`` i >= 1 takes the i-th of VARIANT_LINESTYLES instead."""
    ls = (
        regime_linestyle(regime)
        if variant == 0
        else VARIANT_LINESTYLES[(variant - 1) % len(VARIANT_LINESTYLES)]
    )
    return {"color": method_color(criterion, regime, by_regime), "ls": ls, "lw": 1.2}


def method_line(
    ax: Axes,
    x: Sequence[float],
    y: Sequence[float],
    criterion: str,
    regime: str,
    band: tuple[Sequence[float], Sequence[float]] | None = None,
    marker: str = "o",
    by_regime: bool = False,
) -> Line2D:
    """A method's line in its criterion colour (its regime's with ``by_regime``: see
    :func:`colour_by_regime`) and regime style, with an optional shaded band."""
    style = method_style(criterion, regime, by_regime)
    (line,) = ax.plot(x, y, marker=marker, ms=2.5, label=method_label(criterion, regime), **style)
    if band is not None:
        interval_band(ax, x, *band, color=style["color"])
    return line


def interval_band(
    ax: Axes, x: Sequence[float], lo: Sequence[float], hi: Sequence[float], color: Any
) -> None:
    """The shaded band between ``lo`` and ``hi``; an error bar instead where there is a single
    x, which a band would not show (none where that interval is unknown or has no width)."""
    x, lo, hi = (np.asarray(v, dtype=float) for v in (x, lo, hi))
    if len(x) > 1:
        ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)
    elif len(x) == 1 and np.isfinite([lo, hi]).all() and hi[0] > lo[0]:
        middle, half = (lo + hi) / 2, (hi - lo) / 2
        ax.errorbar(x, middle, yerr=half, fmt="none", ecolor=color, capsize=2)


MAX_LEGEND_COLUMNS = 4  # entries per legend row that fit a single column


def legend_rows(
    criteria: Sequence[str], regimes: Sequence[str], chance: bool = False, dense: bool = False
) -> list[list[Line2D]]:
    """Legend proxies in rows: one colour per criterion, one line style per regime (named on
    the criterion entries when there is a single regime; one entry per regime, in its colour
    and style, when there is a single criterion), then the chance / dense references."""
    references = [Line2D([], [], **CHANCE, label="chance")] if chance else []
    references += [Line2D([], [], **DENSE, label="dense")] if dense else []
    if _regimes_apart(len(criteria), len(regimes)):
        entries = [
            Line2D(
                [], [], color=regime_color(r), ls=regime_linestyle(r), lw=1.2,
                label=method_label(criteria[0], r),
            )
            for r in regimes
        ]  # fmt: skip
        return [entries, references]
    colours = [Line2D([], [], color=criterion_color(c), lw=1.5, label=c) for c in criteria]
    styles = [
        Line2D([], [], color="0.15", ls=regime_linestyle(r), lw=1.2, label=r) for r in regimes
    ]
    if len(regimes) == 1 and criteria:
        for h in colours:
            h.set_label(method_label(h.get_label(), regimes[0]))
            h.set_linestyle(regime_linestyle(regimes[0]))
        styles = []
    if len(styles) + len(references) <= MAX_LEGEND_COLUMNS:
        return [colours, styles + references]
    return [colours, styles, references]


def legend_below(
    fig: Figure, rows: Sequence[Sequence[Any]], columns: int = MAX_LEGEND_COLUMNS
) -> None:
    """The figure's legend under the axes (never over the data), one row per group of
    handles (long groups wrap at ``columns`` entries).

    The figure must use the constrained layout (as :func:`panel_grid` makes it)."""
    lines = [list(row[i : i + columns]) for row in rows for i in range(0, len(row), columns)]
    columns = max(map(len, lines))
    padded = [line + [Line2D([], [], alpha=0, label=" ")] * (columns - len(line)) for line in lines]
    fig.legend(
        handles=[line[c] for c in range(columns) for line in padded],  # legends fill by column
        loc="outside lower center",
        ncol=columns,
        handlelength=2.2,
        columnspacing=1.0,
    )


def method_legend(
    fig: Figure, frame: pd.DataFrame, chance: bool = False, dense: bool = False
) -> None:
    """:func:`legend_below` with the criteria and regimes of ``frame`` and the references."""
    criteria = ordered(frame["criterion"], CRITERIA)
    regimes = ordered(frame["regime"], REGIMES)
    legend_below(fig, legend_rows(criteria, regimes, chance, dense))
