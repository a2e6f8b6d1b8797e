"""Figures and tables of the conv-structure study (issue #19): does magnitude pruning with
rewinding leave whole kernels, filters and input channels pruned beyond chance, and does it
resemble structured (L1-filter) pruning?

For every model, conv layer, arm and pruned level: dead units per seed against the exact chance
expectation of a random mask with the layer's kept count (structure index = mean dead / expected,
95 % bootstrap interval over seeds, permutation p-values combined over seeds by Fisher's
method); the alive-weights-per-kernel histogram against Hypergeometric chance (total-variation
distance); the overlap of dead filters with those the L1-filter arm removed (lift over chance);
weight stability; test accuracy and the last epoch's gain of every level (convergence). Reads
finished or partial sweeps, says which runs and levels are missing, and skips what they cannot
support. The arms, the runs they read and the tables over seeds are in structure_arms.py beside
this script, what the tables are computed from (saved into --out, so that a folder this script
wrote can be given again in place of its sweeps, and several merged) in pieces.py; the figures
and the command are here. Sweep directories (or folders this script wrote) come first, options
after them:

    python analysis/structure/figures.py DIR [DIR ...] [--out DIR] [--format pdf,png] [--permutations N]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullLocator

from maskstudy.analysis.lmc import STABLE_BARRIER
from maskstudy.analysis.structure import kernel_histogram
from maskstudy.analysis.structure_study import (
    KEYS,
    convergence_summary,
    dead_source_seeds,
    dead_source_summary,
    dead_unit_seeds,
    kernel_count_seeds,
    kernel_count_summary,
    resemblance_seeds,
    resemblance_summary,
    structure_index_summary,
)
from maskstudy.errors import ConfigError
from maskstudy.plots.figures import FORMATS, FigureReport, Unsupported, save_figure
from maskstudy.plots.stability import METRIC_LABELS
from maskstudy.plots.structure import CONV_UNITS, UNIT_LABELS, count_scale, kernel_counts
from maskstudy.plots.study import StudyArgs, study_args
from maskstudy.plots.style import (
    CHANCE,
    DOUBLE_COLUMN,
    WHOLE,
    apply_style,
    chance_line,
    interval_band,
    layer_label,
    legend_below,
    method_style,
    panel_grid,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the study's runs and tables

from pieces import (  # noqa: E402
    FRAMES,
    MASKS,
    Inputs,
    inputs_from_runs,
    is_saved,
    load_inputs,
    merge_inputs,
    save_inputs,
)
from structure_arms import (  # noqa: E402
    FINETUNE,
    KEY_LEVELS,
    MIN_EXPECTED,
    RANDOM,
    REFERENCE,
    REINIT,
    TICKET,
    Arm,
    Study,
    accuracy_summary,
    interval,
    key_table,
    key_wide,
    lmc_summary,
    missing_report,
    read_study,
    sparsest,
    stability_summary,
)

PERMUTATIONS = 999  # random masks per permutation test (per seed, layer, level and unit)
STABILITY_SHOWN = ("s1", "pearson", "sign_agreement")  # persistence is 1 for nested masks
LOG_RANGE = 30.0  # a panel whose positive values span more than this ratio gets a log y-axis
LEGEND_COLUMNS = 3  # arm names are long
MASK_PANEL = 2.0  # inches per mask image
TICKS = (100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1)  # % remaining on the x axes
# A colour per arm (indices into the colour-blind palette): five arms share the magnitude
# criterion, so the criterion colour of plots.style would draw them alike.
ARM_COLOURS = {
    TICKET: 0,
    ("magnitude", "layer", "rewind", True): 2,
    FINETUNE: 1,
    REINIT: 3,
    ("magnitude", "global", "rewind", False): 4,
    RANDOM: 6,
    (REFERENCE, "layer", "rewind", False): 5,
}


# --- figures -----------------------------------------------------------------------------------
def select(frame: pd.DataFrame, **values: Any) -> pd.DataFrame:
    """The rows of ``frame`` whose columns hold ``values``."""
    return frame[np.logical_and.reduce([frame[c] == v for c, v in values.items()])]


def arm_style(arm: Arm) -> dict[str, Any]:
    """The arm's own colour (ARM_COLOURS; its criterion's otherwise) and regime line style
    (its own for a variant)."""
    style = method_style(arm.criterion, arm.regime, variant=arm.variant)
    if arm.key in ARM_COLOURS:
        style["color"] = sns.color_palette("colorblind")[ARM_COLOURS[arm.key]]
    return style


def arm_handles(arms: Sequence[Arm]) -> list[Line2D]:
    """Legend entries of the arms, drawn as their lines are."""
    return [Line2D([], [], marker="o", ms=2.5, label=a.name, **arm_style(a)) for a in arms]


def seeds_words(counts: pd.Series) -> str:
    """'5 seeds' from seed counts per point, or '2–5 seeds per point' when they differ."""
    low, high = int(counts.min()), int(counts.max())
    return f"{high} seed{'s' * (high > 1)}" if low == high else f"{low}–{high} seeds per point"


def remaining_axis(ax: Axes, values: pd.Series, label: str) -> None:
    """% remaining on a reversed log axis spanning ``values``, ticked at 1-2-5 values (the
    levels' own values crowd where arms differ a little, e.g. a global or structured arm), or
    at the levels' values where fewer than two of those fall in the range."""
    high, low = float(values.max()) * 1.2, float(values.min()) / 1.2
    ax.set_xscale("log")
    ax.set_xlim(high, low)
    ticks = [t for t in TICKS if low <= t <= high]
    ax.xaxis.set_major_locator(
        FixedLocator(ticks if len(ticks) > 1 else sorted(set(values.round(1))))
    )
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.3g}")
    ax.set_xlabel(label)


def banded_line(ax: Axes, rows: pd.DataFrame, arm: Arm, y: str, lo: str, hi: str) -> None:
    """The arm's mean over seeds vs % remaining with its 95 % band (where it has one; an error
    bar where the arm has a single point: style.interval_band)."""
    rows = rows.sort_values("percent_remaining")
    style = arm_style(arm)
    x = rows["percent_remaining"]
    ax.plot(x, rows[y], marker="o", ms=2.5, **style)
    interval_band(ax, x, rows[lo], rows[hi], color=style["color"])


def edge_marks(ax: Axes, x: pd.Series, y: float, marker: str, arm: Arm) -> None:
    """Markers pinned to the panel's edge at ``y`` (an index of 0 or ∞ on a log axis); none
    for an empty ``x`` (an empty unclipped line would stretch the layout to the origin)."""
    if x.empty:
        return
    color = arm_style(arm)["color"]
    ax.plot(x, np.full(len(x), y), ls="", marker=marker, ms=3.5, clip_on=False, color=color)


def spans_decades(values: np.ndarray) -> bool:
    """Whether positive ``values`` span more than LOG_RANGE: then a log axis shows them."""
    return len(values) > 0 and values.max() / values.min() > LOG_RANGE


def log_y(ax: Axes) -> None:
    """A log y-axis labelled in plain numbers at its decades, and between them too where it
    spans less than two decades (else a panel of 0.3–3 would read '1' alone)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:g}")

    def between_decades(value: float, _: int) -> str:
        low, high = ax.get_ylim()
        return f"{value:g}" if high < 100 * low and f"{value:.0e}"[0] in "25" else ""

    ax.yaxis.set_minor_formatter(between_decades)


def index_limits(data: pd.DataFrame) -> tuple[bool, float, float]:
    """(log axis, bottom, top) of an index panel: log when its positive values span more than
    LOG_RANGE; chance (1) always inside."""
    values = data[["index", "index_lo", "index_hi"]].to_numpy().ravel()
    finite = values[np.isfinite(values)]
    positive = finite[finite > 0]
    log = spans_decades(positive)
    bottom, top = (positive.min() / 2, positive.max() * 2) if log else (0.0, finite.max() * 1.1)
    return log, min(bottom, 0.5), max(top, 2.0)


def panel_note(ax: Axes, text: str) -> None:
    """Grey words in the middle of a panel that has no line to draw."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=7,
            color="0.4")  # fmt: skip


def single_input(index: pd.DataFrame, model: str, layer: str) -> bool:
    """Whether the layer has one input channel (then a filter is one kernel)."""
    rows = select(index, model=model, layer=layer, unit="channel")
    return not rows.empty and bool((rows["groups"] == 1).all())


SINGLE_INPUT_NOTES = {
    "filter": "1 input channel:\nfilter = kernel",
    "channel": "1 input channel:\ndead only with\nthe whole layer",
}


def index_panel(ax: Axes, data: pd.DataFrame, arms: Sequence[Arm]) -> set[str]:
    """One unit of one layer: each arm's index with its band and chance at 1, at the levels
    where chance expects at least MIN_EXPECTED dead units (elsewhere any dead unit gives a huge
    ratio: the dead-unit figure shows the counts); on a log axis an index of 0 is ▼ on the
    bottom edge, ∞ ▲ on the top one. Returns the marks it used."""
    data = data[data["expected"] >= MIN_EXPECTED]
    if data.empty:
        panel_note(ax, f"chance expects\n< {MIN_EXPECTED:g} dead at\nevery level:\nsee dead_units")
        return set()
    log, bottom, top = index_limits(data)
    marks = set()
    for arm in arms:
        rows = data[data["arm"] == arm.name]
        shown = rows[np.isfinite(rows["index"]) & ((rows["index"] > 0) | (not log))]
        banded_line(ax, shown.assign(index_lo=shown["index_lo"].clip(lower=bottom)), arm,
                    "index", "index_lo", "index_hi")  # fmt: skip
        edges = (("v", (rows["index"] == 0) & log, bottom), ("^", np.isposinf(rows["index"]), top))
        for marker, where, y in edges:
            edge_marks(ax, rows.loc[where, "percent_remaining"], y, marker, arm)
            marks |= {marker} if where.any() else set()
    chance_line(ax, [], 1.0)
    if log:
        log_y(ax)
    ax.set_ylim(bottom, top)
    return marks


def shown_arms(index: pd.DataFrame, study: Study) -> tuple[list[Arm], pd.DataFrame]:
    """The arms the structure figures draw (all but the structured reference, which removes
    whole filters by construction) and their rows of ``index``."""
    arms = [a for a in study.arms if a.criterion != REFERENCE and a.name in set(index["arm"])]
    shown = index[index["arm"].isin([a.name for a in arms])]
    if shown.empty:
        raise Unsupported("no pruned level of an arm other than the structured reference yet")
    return arms, shown


def unit_grid(
    shown: pd.DataFrame, units: Sequence[str], panels: Sequence[tuple[str, str]]
) -> tuple[Figure, list[tuple[Axes, str, str, str, pd.DataFrame]]]:
    """A row per unit, a column per (model, conv layer) on the % remaining axis: the figure and
    (axes, unit, model, layer, rows of ``shown``) per panel."""
    apply_style()
    size = (max(DOUBLE_COLUMN[0] / len(panels), 1.7), 1.6)
    fig, axes = panel_grid(len(units) * len(panels), len(panels), sharey=False, size=size)
    cells = []
    for ax, (unit, (model, layer)) in zip(axes, itertools.product(units, panels), strict=True):
        remaining_axis(ax, shown["percent_remaining"], "")
        cells.append((ax, unit, model, layer, select(shown, model=model, layer=layer, unit=unit)))
    for ax, (model, layer) in zip(axes, panels, strict=False):
        ax.set_title(f"{model} · {layer_label(layer)}")
    for ax in axes[-len(panels) :]:
        ax.set_xlabel("weights left in the layer (%)")
    return fig, cells


def index_figure(index: pd.DataFrame, study: Study) -> Figure:
    """Structure index vs % of the layer remaining: a column per (model, conv layer), a row per
    unit (kernel, filter, channel), a line per arm with its band; the structured reference is
    left out (it removes whole filters by construction; its index is in the table)."""
    arms, shown = shown_arms(index, study)
    panels = list(dict.fromkeys(zip(shown["model"], shown["layer"], strict=True)))
    fig, cells = unit_grid(shown, CONV_UNITS, panels)
    marks: set[str] = set()
    for ax, unit, model, layer, rows in cells:
        if unit in SINGLE_INPUT_NOTES and single_input(index, model, layer):
            panel_note(ax, SINGLE_INPUT_NOTES[unit])
        else:
            marks |= index_panel(ax, rows, arms)
        if layer == panels[0][1] and model == panels[0][0]:
            ax.set_ylabel(f"{UNIT_LABELS[unit]}:\nobserved / chance")
    fig.suptitle(
        f"Structure index of conv masks, {study.dataset}, {seeds_words(shown['seeds'])} "
        "(mean, 95 % bootstrap band)\n1 = a random mask of the same density, drawn where chance "
        f"expects ≥ {MIN_EXPECTED:g} dead units; the L1-filter reference is left out (it removes "
        "whole filters by construction)",
        fontsize=8,
    )
    extra = [Line2D([], [], **CHANCE, label="chance (index 1)")]
    words = {"v": "nothing dead (index 0)", "^": "dead where chance ≈ 0 (index ∞)"}
    extra += [Line2D([], [], ls="", marker=m, color="0.3", label=words[m]) for m in sorted(marks)]
    legend_below(fig, [arm_handles(arms), extra], columns=LEGEND_COLUMNS)
    return fig


def dead_units_figure(index: pd.DataFrame, study: Study) -> Figure:
    """Dead filters and input channels, counted: each arm's mean over seeds with its band
    against the chance expectation of a layerwise random mask, in the conv layers with more than
    one input channel, each panel naming how many units its layer has (models differ). Where
    chance expects almost none, the index is a huge ratio; the counts say how many units
    actually died."""
    arms, shown = shown_arms(index, study)
    units = [u for u in CONV_UNITS if u != "kernel"]
    panels = [
        (model, layer)
        for model, layer in dict.fromkeys(zip(shown["model"], shown["layer"], strict=True))
        if not single_input(index, model, layer)
    ]
    if not panels:
        raise Unsupported("no conv layer with more than one input channel")
    layerwise = [a.name for a in arms if a.scope == "layer"]
    fig, cells = unit_grid(shown[shown["unit"].isin(units)], units, panels)
    for ax, unit, model, layer, rows in cells:
        for arm in arms:
            banded_line(ax, rows[rows["arm"] == arm.name], arm, "dead", "dead_lo", "dead_hi")
        chance = rows[rows["arm"].isin(layerwise)].groupby("percent_remaining")["expected"].mean()
        chance_line(ax, chance.index, chance.to_numpy())
        ax.set_ylim(bottom=0)
        ax.text(0.02, 0.94, f"of {int(rows['groups'].max())}", ha="left", va="top",
                transform=ax.transAxes, fontsize=7, color="0.4")  # fmt: skip
        if (model, layer) == panels[0]:
            ax.set_ylabel(UNIT_LABELS[unit])
    fig.suptitle(
        f"Dead filters and input channels of conv masks, {study.dataset}, "
        f"{seeds_words(shown['seeds'])} (mean count, 95 % bootstrap band)\nchance: the expected "
        "count under a random mask of the same density",
        fontsize=8,
    )
    extra = [Line2D([], [], **CHANCE, label="chance (random mask)")]
    legend_below(fig, [arm_handles(arms), extra], columns=LEGEND_COLUMNS)
    return fig


def largest_layer(masks: pd.DataFrame, model: str) -> str:
    """The model's conv layer with the most weights."""
    rows = masks[masks["model"] == model]
    return rows.loc[rows["mask"].map(np.size).idxmax(), "layer"]


def histogram_panel(ax: Axes, rows: pd.DataFrame, arms: Sequence[Arm], tv: pd.DataFrame) -> None:
    """Alive weights per kernel: each arm's mean fraction over seeds as bars (its mean
    total-variation distance from chance in the legend), chance's pmf as the broad grey line."""
    width = 0.8 / len(arms)
    for i, arm in enumerate(arms):
        mine = rows[rows["arm"] == arm.name]
        hist = pd.concat([kernel_histogram(m) for m in mine["mask"]]).groupby("alive").mean()
        distance = tv.loc[tv["arm"] == arm.name, "tv"].mean()
        ax.bar(hist.index + (i - (len(arms) - 1) / 2) * width, hist["fraction"], width,
               color=arm_style(arm)["color"], label=f"{arm.name}\n(TV from chance {distance:.3f})")  # fmt: skip
    ax.plot(
        hist.index,
        hist["expected_fraction"],
        marker="o",
        ms=3,
        label="chance (hypergeometric)",
        **CHANCE,
    )
    ax.set_xlabel("alive weights per kernel")
    ax.legend(loc="upper right", fontsize=6)


def histogram_panels(
    masks: pd.DataFrame, names: Sequence[str]
) -> dict[str, tuple[str, int] | None]:
    """Per model: (largest conv layer, sparsest level both arms reached), None if there is none."""
    panels: dict[str, tuple[str, int] | None] = {}
    for model in dict.fromkeys(masks["model"]):
        layer = largest_layer(masks, model)
        rows = masks[(masks["model"] == model) & (masks["layer"] == layer)]
        shared = set.intersection(*(set(rows.loc[rows["arm"] == n, "level"]) for n in names))
        panels[model] = (layer, max(shared)) if shared else None
    return panels


def kernel_histogram_figure(
    masks: pd.DataFrame, kernels: pd.DataFrame, study: Study, notes: list[str]
) -> Figure:
    """Alive-weights-per-kernel histograms of magnitude · rewind θ0 and random at their sparsest
    shared level, against the hypergeometric pmf, in each model's largest conv layer."""
    arms = [study.arm(TICKET), study.arm(RANDOM)]
    if None in arms:
        raise Unsupported("needs the magnitude · rewind θ0 and random · rewind θ0 arms; the "
                          f"sweeps plan: {', '.join(a.name for a in study.arms)}")  # fmt: skip
    names = [a.name for a in arms]
    found = histogram_panels(masks, names)
    both = f"no pruned level done by both {' and '.join(names)}"
    panels = [(model, *found[model]) for model in found if found[model]]
    if not panels:
        raise Unsupported(both)
    notes += [f"kernel_histograms: {model} left out, {both}" for model in found if not found[model]]
    apply_style()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.5 * len(panels), 2.6), layout="constrained", squeeze=False)  # fmt: skip
    axes = axes[0]  # kernel sizes differ: no shared x
    for ax, (model, layer, level) in zip(axes, panels, strict=True):
        place = {"model": model, "layer": layer, "level": level}
        rows = select(masks, **place)
        rows = rows[rows["arm"].isin(names)]
        histogram_panel(ax, rows, arms, select(kernels, **place))
        ax.set_title(f"{model} · {layer_label(layer)}, level {level} "
                     f"({rows['percent_remaining'].mean():.1f} % left), "
                     f"{seeds_words(rows.groupby('arm')['seed'].nunique())}")  # fmt: skip
    axes[0].set_ylabel("fraction of kernels (mean over seeds)")
    fig.suptitle(f"Alive weights per kernel against chance, {study.dataset}", fontsize=8)
    return fig


def mask_row(sub: SubFigure, rows: pd.DataFrame, pick: pd.Series, what: str, columns: int) -> None:
    """One row of mask images: the picked layer's kernel counts for up to ``columns`` seeds."""
    full = int(np.prod(rows["mask"].iloc[0].shape[2:]))
    cmap, norm = count_scale(full)
    axes = list(sub.subplots(1, columns, squeeze=False)[0])
    for ax in axes[len(rows) :]:
        ax.remove()
    drawn = axes[: len(rows)]
    for ax, r in zip(drawn, rows.itertuples(), strict=True):
        grid = kernel_counts(r.mask)
        image = ax.imshow(grid, cmap=cmap, norm=norm, interpolation="nearest", aspect="auto")
        ax.set_title(f"seed {r.seed}: {100 * (grid == 0).mean():.0f} % of kernels dead")
        ax.set_xlabel("input channel")
        ax.set_xticks(range(0, grid.shape[1], -(-grid.shape[1] // 8)))  # at most 8, whole
        ax.set_yticks(range(0, grid.shape[0], -(-grid.shape[0] // 8)))
        ax.grid(False)
    drawn[0].set_ylabel("filter (output channel)")
    step = -(-full // 4)
    bar = sub.colorbar(image, ax=drawn, shrink=0.9, ticks=sorted({*range(0, full + 1, step), full}))
    bar.set_label("alive weights per kernel")
    bar.minorticks_off()
    sub.suptitle(
        f"{what}: {pick['model']} · {layer_label(pick['layer'])}, level {pick['level']} "
        f"({pick['percent_remaining']:.1f} % left), kernel index {pick['index']:.3g}",
        fontsize=8,
    )


def most_and_least_structured(index: pd.DataFrame, arm: str) -> list[pd.Series]:
    """The index rows of ``arm``'s most and least structured conv layer by kernel index at its
    deepest level, both among the layers with several input channels where two or more have
    one (a one-input layer's image is a single column, its kernels its filters)."""
    rows = index[(index["arm"] == arm) & (index["unit"] == "kernel")]
    rows = rows[rows["level"] == rows.groupby(["model", "layer"])["level"].transform("max")]
    rows = rows[np.isfinite(rows["index"])]
    places = zip(rows["model"], rows["layer"], strict=True)
    wide = rows[[not single_input(index, *place) for place in places]]
    rows = wide if len(wide) >= 2 else rows
    if len(rows) < 2:
        raise Unsupported(f"{len(rows)} conv layer(s) with a finite kernel index for {arm}: "
                          "the figure sets the most and the least structured side by side")  # fmt: skip
    most = rows.loc[rows["index"].idxmax()]
    return [most, rows.loc[rows.drop(index=most.name)["index"].idxmin()]]


def mask_image_figure(masks: pd.DataFrame, index: pd.DataFrame, study: Study) -> Figure:
    """Kernel-count images of the most and the least structured conv layer (by kernel index at
    the ticket arm's deepest level) of magnitude · rewind θ0, for up to three seeds."""
    arm = study.arm(TICKET)
    if arm is None:
        raise Unsupported("the sweeps plan no magnitude · rewind θ0 arm")
    picks = most_and_least_structured(index, arm.name)
    chosen = [select(masks, **p[KEYS]).sort_values("seed").head(3) for p in picks]
    apply_style()
    columns = max(len(c) for c in chosen)
    width = min(DOUBLE_COLUMN[0], MASK_PANEL * columns + 1.2)  # + the colour bars
    fig = plt.figure(figsize=(width, 2 * MASK_PANEL + 1.4), layout="constrained")
    for sub, pick, mine, what in zip(
        fig.subfigures(2, 1), picks, chosen, ("most structured", "least structured"), strict=True
    ):
        mask_row(sub, mine, pick, what, columns)
    fig.suptitle(
        f"{arm.name} on {study.dataset}: alive weights per kernel (white: dead)", fontsize=9
    )
    return fig


def curve_panels(
    study: Study,
    table: pd.DataFrame,
    grid: Sequence[Sequence[pd.DataFrame]],
    titles: Sequence[str],
    ylabels: Sequence[str],
    title: str,
) -> Figure:
    """A grid of panels (rows of mean_band tables: arm, percent_remaining, mean, lo, hi, n),
    each arm's mean over seeds vs % of the network remaining with its 95 % band; ``titles``
    head the columns, ``ylabels`` the rows; a log y-axis where the values span decades."""
    arms = [a for a in study.arms if a.name in set(table["arm"])]
    columns = len(titles)
    apply_style()
    size = (min(DOUBLE_COLUMN[0] / columns, 3.5), 2.4 if len(grid) == 1 else 1.9)
    fig, axes = panel_grid(len(grid) * columns, columns, sharey=False, size=size)
    cells = [cell for row in grid for cell in row]
    for i, (ax, cell) in enumerate(zip(axes, cells, strict=True)):
        for arm in arms:
            banded_line(ax, cell[cell["arm"] == arm.name], arm, "mean", "lo", "hi")
        if (cell["lo"] > 0).all() and spans_decades(cell[["mean", "lo", "hi"]].stack().to_numpy()):
            log_y(ax)
        remaining_axis(ax, table["percent_remaining"], "weights remaining (%)")
        ax.set_title(titles[i] if i < columns else "")
        ax.set_ylabel(ylabels[i // columns] if i % columns == 0 else "")
    fig.suptitle(
        f"{title}, {study.dataset}, {seeds_words(table['n'])} (mean, 95 % bootstrap band)",
        fontsize=8,
    )
    legend_below(fig, [arm_handles(arms)], columns=LEGEND_COLUMNS)
    return fig


def stability_figure(stability: pd.DataFrame, study: Study) -> Figure:
    """Whole-network stability measures vs % remaining, a row per model, a column per measure."""
    whole = stability[(stability["layer"] == WHOLE) & stability["measure"].isin(STABILITY_SHOWN)]
    if whole.empty:
        raise Unsupported(
            "no pruned level yet: stability compares level L with L − 1 and the dense level"
        )
    measures = [m for m in STABILITY_SHOWN if m in set(whole["measure"])]
    models = list(dict.fromkeys(whole["model"]))
    grid = [[select(whole, model=model, measure=m) for m in measures] for model in models]
    titles = [METRIC_LABELS[m] for m in measures]
    return curve_panels(study, whole, grid, titles, models, "Weight stability, whole network")


def lmc_figure(lmc: pd.DataFrame, study: Study) -> Figure:
    """Linear mode connectivity: the test error barrier between two copies of a level trained
    with different data orders vs % remaining, a panel per model; stable below 2 points."""
    points = lmc.assign(**{c: 100 * lmc[c] for c in ("mean", "lo", "hi")})
    models = list(dict.fromkeys(points["model"]))
    grid = [[select(points, model=m) for m in models]]
    ylabel = "error barrier (test, points)"
    title = "Linear mode connectivity (grey: the 2-point stability threshold)"
    fig = curve_panels(study, points, grid, models, [ylabel], title)
    for ax in fig.axes[: len(models)]:
        ax.axhline(100 * STABLE_BARRIER, **CHANCE, zorder=1)
        if ax.get_yscale() == "linear":  # a log axis (barriers spanning decades) has no 0
            ax.set_ylim(bottom=0)
    return fig


def accuracy_figure(accuracy: pd.DataFrame, study: Study) -> Figure:
    """Test accuracy (%) vs % of weights remaining, a panel per model."""
    scaled = accuracy.assign(**{c: 100 * accuracy[c] for c in ("mean", "lo", "hi")})
    models = list(dict.fromkeys(scaled["model"]))
    grid = [[select(scaled, model=m) for m in models]]
    return curve_panels(study, scaled, grid, models, ["test accuracy (%)"], "Test accuracy")


# --- the command -------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> tuple[StudyArgs, list[Path], int]:
    """The study scripts' command line (study_args: the first sweep, --out, --format), with
    more sweep directories after the first and --permutations."""
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--permutations", type=int, default=PERMUTATIONS)
    known, rest = extra.parse_known_args(argv)
    sweeps = list(itertools.takewhile(lambda a: not a.startswith("-"), rest))
    args = study_args(__doc__, "structure/*.toml", [*sweeps[:1], *rest[len(sweeps) :]])
    if known.permutations < 1:
        extra.error(f"--permutations {known.permutations}: give at least 1 (e.g. 999)")
    bad = [f for f in args.formats if f not in FORMATS]
    if bad:
        raise ConfigError(f"--format {','.join(bad)} is not one of {', '.join(FORMATS)}")
    return args, [args.sweep, *map(Path, sweeps[1:])], known.permutations


def structure_tables(
    masks: pd.DataFrame, study: Study, permutations: int, notes: list[str]
) -> dict[str, pd.DataFrame]:
    """The per-seed tests and their summaries over seeds (index, kernel counts, resemblance)."""
    dead = study.arrange(dead_unit_seeds(masks, permutations))
    kernels = study.arrange(kernel_count_seeds(masks, permutations))
    tables = {
        "structure_seeds": dead, "structure_index": study.arrange(structure_index_summary(dead)),
        "kernel_counts_seeds": kernels,
        "kernel_counts": study.arrange(kernel_count_summary(kernels)),
    }  # fmt: skip
    sources = dead_source_seeds(masks, permutations)
    if not sources.empty:
        tables["dead_sources_seeds"] = study.arrange(sources)
        tables["dead_sources"] = study.arrange(dead_source_summary(sources))
    resemblance = resemblance_seeds(masks, [a.name for a in study.references], permutations)
    if resemblance.empty:
        notes.append(
            f"resemblance: skipped, no pruned level of an {REFERENCE} run shared with another arm"
        )
        return tables
    tables["resemblance_seeds"] = study.arrange(resemblance)
    tables["resemblance"] = study.arrange(resemblance_summary(resemblance))
    return tables


def study_tables(inputs: Inputs, permutations: int, notes: list[str]) -> dict[str, pd.DataFrame]:
    """Every table of the study (by CSV name), from its inputs."""
    study, frames, masks = inputs.study, inputs.frames, inputs.masks
    tables = {"accuracy": study.arrange(accuracy_summary(frames["accuracy"]))}
    if frames["stability"].empty:
        notes.append("stability: skipped, no pruned level completed yet")
    else:
        tables["stability"] = study.arrange(stability_summary(frames["stability"]))
    gains = frames["gains"]
    tables["convergence"] = study.arrange(convergence_summary(gains)) if not gains.empty else gains
    if frames["lmc"].empty:
        notes.append("lmc: skipped, no curve from analysis/structure/lmc.py yet")
    else:
        tables["lmc"] = study.arrange(lmc_summary(frames["lmc"]))
    if masks.empty:
        notes.append("structure tables: skipped, no pruned level completed yet")
        return tables
    tables |= structure_tables(masks, study, permutations, notes)
    tables["key_table"] = study.arrange(
        key_table(tables["structure_index"], tables.get("resemblance", pd.DataFrame()))
    )
    return tables


def read_inputs(folders: Sequence[Path], notes: list[str]) -> Inputs:
    """The study of the given folders: the sweep directories read together from their runs,
    each folder of saved inputs (a results folder of this script) loaded, all merged."""
    saved = [f for f in folders if is_saved(f) and not (f / "sweep.toml").exists()]
    sweeps = [f for f in folders if f not in saved]
    parts = [inputs_from_runs(read_study(sweeps))] if sweeps else []
    parts += [load_inputs(f) for f in saved]
    names = ([" + ".join(map(str, sweeps))] if sweeps else []) + [str(f) for f in saved]
    return merge_inputs(parts, names, notes)


def needs(tables: dict[str, pd.DataFrame], *names: str) -> list[pd.DataFrame]:
    """The named tables, or Unsupported naming the first one the runs could not give."""
    for name in names:
        if tables.get(name) is None or tables[name].empty:
            raise Unsupported(f"no {name} table: the runs have no completed level it needs")
    return [tables[name] for name in names]


def draw(
    report: FigureReport, out: Path, formats: Sequence[str], name: str, build: Callable[[], Figure]
) -> None:
    """Draw one figure into out/<name>.<format>, or record why the runs cannot support it."""
    try:
        fig = build()
    except Unsupported as why:
        report.skipped[name] = str(why)
        return
    report.drawn[name] = save_figure(fig, out, name, formats)


def print_key(key: pd.DataFrame) -> None:
    """Print the key table of each model's sparsest levels, one column per unit."""
    with pd.option_context(
        "display.width", 250, "display.max_rows", 500, "display.max_colwidth", 60
    ):
        print(
            f"\nstructure at each model's {KEY_LEVELS} sparsest levels: index = mean dead / chance "
            "[95 % bootstrap interval over seeds], p = permutation tests against random masks "
            "combined over seeds (Fisher), '–' = no unit can die by chance; filter lift = dead "
            f"filters shared with {REFERENCE} over chance; L1-removed density = alive weights of the "
            f"filters {REFERENCE} removed ÷ of the others (1 = no resemblance), p exact\n"
            f"{key_wide(sparsest(key)).to_string(index=False)}"
        )


def print_dead_sources(sources: pd.DataFrame) -> None:
    """Print, at each model's sparsest levels, how thin the channels behind dead filters are."""
    rows = sparsest(sources).assign(
        ratio=lambda t: [interval(*v) for v in t[["ratio", "ratio_lo", "ratio_hi"]].to_numpy()],
        p=lambda t: t["p_fisher"].map(lambda p: f"{p:.2g}"),
    )
    columns = [
        "model",
        "layer",
        "level",
        "arm",
        "seeds",
        "ratio_seeds",
        "dead_sources",
        "ratio",
        "p",
    ]
    with pd.option_context("display.width", 250, "display.max_rows", 500):
        print(
            "\nchannels behind dead filters of the layer before: alive weights per such channel ÷ "
            "per other channel (1 = no coupling) [95 % interval over the seeds that have dead "
            f"sources], p = exact permutation tests combined (Fisher)\n"
            f"{rows[columns].round({'dead_sources': 2}).to_string(index=False)}"
        )


def main(argv: Sequence[str] | None = None) -> FigureReport:
    """Read the sweeps and saved folders, save their inputs and write every table as
    out/<name>.csv and every figure the runs support, print what is missing, the key table and
    what was drawn or skipped, and why."""
    args, folders, permutations = parse_args(argv)
    notes: list[str] = []
    inputs = read_inputs(folders, notes)
    study, masks = inputs.study, inputs.masks
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    save_inputs(inputs, out)
    print(
        f"runs per model and arm, done / planned (the others: state, levels done):\n{missing_report(study)}"
    )
    report = FigureReport()
    if inputs.empty:
        print("no completed level yet: nothing to analyse")
        return report
    tables = study_tables(inputs, permutations, notes)
    for name, table in tables.items():
        table.to_csv(out / f"{name}.csv", index=False)
    if "key_table" in tables:
        print_key(tables["key_table"])
    if "dead_sources" in tables:
        print_dead_sources(tables["dead_sources"])
    figures = {
        "structure_index": lambda: index_figure(*needs(tables, "structure_index"), study),
        "dead_units": lambda: dead_units_figure(*needs(tables, "structure_index"), study),
        "kernel_histograms": lambda: kernel_histogram_figure(masks, *needs(tables, "kernel_counts_seeds"), study, notes),
        "mask_images": lambda: mask_image_figure(masks, *needs(tables, "structure_index"), study),
        "stability": lambda: stability_figure(*needs(tables, "stability"), study),
        "accuracy": lambda: accuracy_figure(*needs(tables, "accuracy"), study),
        "lmc": lambda: lmc_figure(*needs(tables, "lmc"), study),
    }  # fmt: skip
    for name, build in figures.items():
        draw(report, out, args.formats, name, build)
    print("\n" + "\n".join([str(report), *notes]))
    print(f"tables ({', '.join(f'{n}.csv' for n in tables)}), the inputs they were computed "
          f"from ({MASKS}, {', '.join(FRAMES.values())}) and figures: {out}")  # fmt: skip
    return report


if __name__ == "__main__":
    main()
