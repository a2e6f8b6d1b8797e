"""P2–P4: mask overlap against chance. P2 seed pairs vs level, P3 criterion × criterion
heatmap at one level, P4 regime pairs (rewind / reinit / finetune) vs level.

All take the stacked overlap table of ``analysis.report.overlap_tables`` (an ``along``
column: 'seed', 'prune.criterion', 'regime', …) with the pair's run columns added by
:func:`with_run_columns`. Level 0 is left out of the curves: every dense mask keeps all weights,
so any two agree by construction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from maskstudy.analysis.run_overlap import along_field
from maskstudy.errors import ConfigError
from maskstudy.plots.bands import mean_band
from maskstudy.plots.style import (
    CHANCE,
    CRITERIA,
    REGIMES,
    WHOLE,
    apply_style,
    chance_line,
    colour_by_regime,
    criterion_color,
    layer_label,
    legend_below,
    level_axis,
    method_label,
    method_legend,
    method_line,
    methods,
    need_columns,
    need_rows,
    ordered,
    panel_grid,
)

RUN_COLUMNS = ("criterion", "regime", "seed", "scope")
# The chance value of each metric: a column of the table, or a constant.
CHANCE_VALUES = {
    "jaccard": "expected_jaccard",
    "hamming": "expected_hamming",
    "lift": 1.0,
    "z": 0.0,
}
METRIC_LABELS = {
    "jaccard": "Jaccard (kept weights)",
    "lift": "lift, J / E[J]",
    "hamming": "Hamming distance (fraction)",
    "z": "z-score vs chance",
}
# The least an axis shows around chance (lift 1 ± 0.1, z 0 ± 2), so that a null effect of a
# few hundredths is not drawn across the whole panel as if it were a trend.
MIN_REACH = {"lift": 0.1, "z": 2.0}
# Regime pairs of P4, each with its own line style and marker; the pairs are also drawn side
# by side at each level (PAIR_SPREAD), so that coinciding values never hide a marker.
PAIR_STYLES = (
    ("-", "o", 4),
    ("--", "s", 4),
    (":", "^", 4),
    ("-.", "D", 3.5),
    ((0, (1, 3)), "v", 4),
    ((0, (3, 1, 1, 1)), "P", 4),
)
PAIR_SPREAD = 0.08  # levels between regime pairs drawn side by side at one level


def with_run_columns(
    overlap: pd.DataFrame, runs: pd.DataFrame, columns: Sequence[str] = RUN_COLUMNS
) -> pd.DataFrame:
    """``overlap`` with ``columns`` of each pair's first run (``run_a``) joined from ``runs``
    (``runs_frame`` or any frame with ``run_id``); the two runs of a pair share every config
    field but the one compared, whose two values are ``value_a`` / ``value_b``."""
    need_columns(overlap, ["run_a"], "pass an overlap table (analysis.report.overlap_tables)")
    need_columns(runs, ["run_id", *columns], "pass runs_frame(runs)")
    lookup = runs.drop_duplicates("run_id").set_index("run_id")[list(columns)]
    kept = overlap.drop(columns=[c for c in columns if c in overlap.columns])
    return kept.join(lookup, on="run_a")


def _along(overlap: pd.DataFrame, along: str) -> pd.DataFrame:
    """The rows comparing runs along ``along`` (an alias or dotted field), level 0 aside."""
    need_columns(
        overlap,
        ["along", "level", "layer", "value_a", "value_b"],
        "pass analysis.report.overlap_tables(runs, axes) joined by with_run_columns",
    )
    field = along_field(along)
    rows = overlap[(overlap["along"] == field) & (overlap["level"] > 0)]
    need_rows(rows, f"no overlap rows along {field!r}; the runs must differ in {field!r} only")
    return rows


def _check_metric(metric: str) -> None:
    if metric not in CHANCE_VALUES:
        raise ConfigError(f"metric = {metric!r}; choose one of: {', '.join(CHANCE_VALUES)}")


def _draw_chance(ax, rows: pd.DataFrame, metric: str) -> None:
    """The chance line of ``metric``: its expectation per level (mean over the rows) or constant."""
    chance = CHANCE_VALUES[metric]
    if isinstance(chance, float):
        chance_line(ax, [], chance)
    else:
        expected = rows.groupby("level")[chance].mean()
        chance_line(ax, expected.index, expected.to_numpy())


def _layers(rows: pd.DataFrame, layers: Sequence[str] | None) -> list[str]:
    present = list(dict.fromkeys(rows["layer"]))
    if layers is None:
        return [lay for lay in present if lay != WHOLE] + [WHOLE]
    unknown = [lay for lay in layers if lay not in present]
    if unknown:
        raise ConfigError(f"layers {unknown} are not in the table; its layers: {present}")
    return list(layers)


def seed_overlap(
    overlap: pd.DataFrame,
    metrics: Sequence[str] = ("jaccard", "lift"),
    layers: Sequence[str] | None = (WHOLE,),
    split_methods: bool = False,
    band: str = "ci",
) -> Figure:
    """P2: overlap of two seeds' masks vs level, mean over seed pairs with a band, and chance.

    One panel per metric (jaccard, lift, hamming or z; chance is E[J], 1, E[Hamming] or 0:
    the broad grey line labelled 'chance') and layer (``layers=None``: every layer and the whole
    network); with ``split_methods`` also one panel per criterion × regime, else one line each.
    Panels of one metric share their y axis.
    """
    for metric in metrics:
        _check_metric(metric)
    rows = _along(overlap, "seed")
    need_columns(rows, ["criterion", "regime", *metrics], "join the run columns: with_run_columns")
    apply_style()
    chosen = _layers(rows, layers)
    groups: list[tuple[str, str] | None] = [*methods(rows)] if split_methods else [None]
    panels = [(lay, m, metric) for lay in chosen for m in groups for metric in metrics]
    columns = 3 if len(metrics) == 1 else len(metrics)
    fig, axes = panel_grid(len(panels), columns, sharey=False)
    first: dict[str, Axes] = {}
    by_regime = colour_by_regime(rows)
    for ax, (_, _, metric) in zip(axes, panels, strict=True):  # share before any data
        if metric in first:
            ax.sharey(first[metric])
        first.setdefault(metric, ax)
    for i, (ax, (layer, method, metric)) in enumerate(zip(axes, panels, strict=True)):
        data = rows[rows["layer"] == layer]
        if method is not None:
            data = data[(data["criterion"] == method[0]) & (data["regime"] == method[1])]
        _method_curves(ax, data, metric, band, by_regime)
        title = layer_label(layer)
        ax.set_title(title if method is None else f"{method_label(*method)}\n{title}")
        if len(metrics) > 1 or i % columns == 0:
            ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        level_axis(ax)
    for metric, ax in first.items():  # the shared axis of each metric, after all its data
        _keep_reach(ax, metric)
    method_legend(fig, rows, chance=True)
    return fig


def _keep_reach(ax: Axes, metric: str) -> None:
    """Widen the y axis to at least chance ± MIN_REACH[metric] (lift 0.9–1.1, z −2–2)."""
    if metric not in MIN_REACH:
        return
    centre, reach = float(CHANCE_VALUES[metric]), MIN_REACH[metric]
    low, high = ax.get_ylim()
    ax.set_ylim(min(low, centre - reach), max(high, centre + reach))


def _method_curves(ax, data: pd.DataFrame, metric: str, band: str, by_regime: bool) -> None:
    """Each criterion × regime of ``data`` as mean ± band over pairs, and its chance line."""
    stats = mean_band(data, metric, ["criterion", "regime", "level"], band)
    for criterion, regime in methods(stats):
        g = stats[(stats["criterion"] == criterion) & (stats["regime"] == regime)]
        spread = None if band == "none" else (g["lo"], g["hi"])
        method_line(ax, g["level"], g["mean"], criterion, regime, spread, by_regime=by_regime)
    _draw_chance(ax, data, metric)


HEATMAP_VALUES = {"jaccard": "Jaccard", "lift": "lift, J / E[J]"}  # colour-bar labels


def criterion_heatmap(
    overlap: pd.DataFrame,
    level: int | None = None,
    layers: Sequence[str] = (WHOLE,),
    regime: str | None = None,
    value: str = "jaccard",
) -> Figure:
    """P3: mean Jaccard (or lift) of every two criteria's masks (same seed, regime) at ``level``.

    Off-diagonal cells average the ``along='prune.criterion'`` rows over seeds (and regimes
    unless ``regime`` picks one); the diagonal holds the mean of two *seeds* of the same
    criterion (``along='seed'`` rows) when the table has them, else it is left blank.
    ``level`` defaults to the deepest level every criterion pair reached. One panel per layer
    with the chance Jaccard E[J] under it; panels share one colour scale (0–1 for Jaccard,
    centred on 1 for lift), and each cell is annotated with its value.
    """
    if value not in HEATMAP_VALUES:
        raise ConfigError(f"value = {value!r}; choose one of: {', '.join(HEATMAP_VALUES)}")
    rows = _along(overlap, "criterion")
    seeds = overlap[(overlap["along"] == "seed") & (overlap["level"] > 0)]
    if "criterion" not in seeds:
        seeds = seeds.iloc[0:0]
    if regime is not None:
        need_columns(rows, ["regime"], "join the run columns: with_run_columns")
        rows = rows[rows["regime"] == regime]
        seeds = seeds[seeds["regime"] == regime]
        need_rows(rows, f"no criterion pairs with regime {regime!r}")
    if level is None:
        level = int(rows.groupby(["value_a", "value_b"])["level"].max().min())
    rows = rows[rows["level"] == level]
    need_rows(rows, f"no criterion pairs at level {level}")
    seeds = seeds[seeds["level"] == level]
    apply_style()
    names = ordered([*rows["value_a"], *rows["value_b"]], CRITERIA)
    matrices = [_matrix(rows, seeds, names, layer, value) for layer in layers]
    low, high = 0.0, 1.0  # Jaccard: the full range, so that small differences look small
    if value == "lift":  # symmetric about 1, so that chance is the neutral colour
        cells = np.concatenate([m.to_numpy(dtype=float).ravel() for m, _ in matrices])
        reach = max(np.nanmax(np.abs(cells - 1)), 0.05)
        low, high = 1 - reach, 1 + reach
    side = 0.42 * len(names) + 1.2
    fig, axes = panel_grid(
        len(layers), 3 if len(layers) > 4 else 2, sharey=False, size=(side, side)
    )
    for ax, layer, (matrix, chance) in zip(axes, layers, matrices, strict=True):
        sns.heatmap(
            matrix.astype(float),
            ax=ax,
            annot=True,
            fmt=".2f",
            annot_kws={"fontsize": 6.5},
            cmap="vlag" if value == "lift" else "mako_r",
            vmin=low,
            vmax=high,
            square=True,
            linewidths=0.5,
            cbar=False,
        )
        ax.set_title(layer_label(layer))
        ax.set(xlabel=f"chance: E[J] = {chance:.2f}", ylabel="")
        ax.tick_params(axis="x", labelrotation=35)
        ax.tick_params(axis="y", labelrotation=0)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
        ax.grid(False)
    fig.colorbar(axes[0].collections[0], ax=axes, shrink=0.8, label=HEATMAP_VALUES[value])
    fig.suptitle(f"level {level}" + ("" if regime is None else f", {regime}"), fontsize=8)
    if len(seeds):
        fig.supxlabel("off-diagonal: two criteria, same seed; diagonal: two seeds", fontsize=7)
    return fig


def _matrix(
    rows: pd.DataFrame, seeds: pd.DataFrame, names: list[str], layer: str, value: str
) -> tuple[pd.DataFrame, float]:
    """(criterion × criterion mean of ``value``, mean chance E[J]) of one layer."""
    data = rows[rows["layer"] == layer]
    need_rows(data, f"no criterion pairs for layer {layer!r}")
    both = pd.concat([data, data.rename(columns={"value_a": "value_b", "value_b": "value_a"})])
    means = both.groupby(["value_a", "value_b"])[value].mean()
    matrix = means.unstack().reindex(index=names, columns=names)
    same = seeds[seeds["layer"] == layer].groupby("criterion")[value].mean()
    for name in names:
        matrix.loc[name, name] = same.get(name, np.nan)
    return matrix, float(data["expected_jaccard"].mean())


def regime_overlap(
    overlap: pd.DataFrame, metric: str = "jaccard", layer: str = WHOLE, band: str = "ci"
) -> Figure:
    """P4: overlap of the masks of two regimes (same criterion and seed) vs level.

    One panel per criterion (in its colour), one line per regime pair (style and marker),
    mean over seeds with a band, and the chance line (broad, pale grey).
    """
    _check_metric(metric)
    rows = _along(overlap, "regime")
    need_columns(rows, ["criterion", metric], "join the run columns: with_run_columns")
    rows = rows[rows["layer"] == layer]
    need_rows(rows, f"no regime pairs for layer {layer!r}")
    apply_style()
    regimes = ordered([*rows["value_a"], *rows["value_b"]], REGIMES)
    ranked = [
        tuple(sorted((a, b), key=regimes.index))
        for a, b in zip(rows["value_a"], rows["value_b"], strict=True)
    ]
    rows = rows.assign(pair=[f"{a} vs {b}" for a, b in ranked])
    pairs = [f"{a} vs {b}" for a, b in sorted(set(ranked), key=lambda p: [*map(regimes.index, p)])]
    if len(pairs) > len(PAIR_STYLES):
        raise ConfigError(
            f"{len(pairs)} regime pairs; at most {len(PAIR_STYLES)} can be told apart"
        )
    styles = dict(zip(pairs, PAIR_STYLES, strict=False))
    criteria = ordered(rows["criterion"], CRITERIA)
    fig, axes = panel_grid(len(criteria), 3)
    for ax, criterion in zip(axes, criteria, strict=True):
        data = rows[rows["criterion"] == criterion]
        stats = mean_band(data, metric, ["pair", "level"], band)
        for i, pair in enumerate(pairs):
            g = stats[stats["pair"] == pair]
            ls, marker, size = styles[pair]
            color = criterion_color(criterion)
            # pairs side by side around each level, so that equal values never hide a marker
            x = g["level"] + PAIR_SPREAD * (i - (len(pairs) - 1) / 2)
            ax.plot(x, g["mean"], ls=ls, color=color, label=pair)
            ax.plot(x, g["mean"], ls="", marker=marker, ms=size, mfc="none", mec=color)
            if band != "none":
                ax.fill_between(x, g["lo"], g["hi"], color=color, alpha=0.12, lw=0)
        _draw_chance(ax, data, metric)
        where = "" if layer == WHOLE else f" ({layer_label(layer)})"
        ax.set_title(criterion + where, color=criterion_color(criterion))
        level_axis(ax)
        _keep_reach(ax, metric)
    axes[0].set_ylabel(METRIC_LABELS.get(metric, metric))
    handles = [
        Line2D([], [], color="0.15", ls=ls, marker=m, ms=size, mfc="none", label=p)
        for p, (ls, m, size) in styles.items()
    ]
    legend_below(fig, [[*handles, Line2D([], [], **CHANCE, label="chance")]], columns=2)
    return fig
