"""The map of masks: metric MDS of 1 − Jaccard between the runs' masks at one level, coloured
by criterion and marked by regime, so that masks pruning made alike sit together."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from maskstudy.plots.style import (
    CRITERIA,
    REGIMES,
    SINGLE_COLUMN,
    apply_style,
    colour_by_regime,
    criterion_color,
    layer_label,
    legend_below,
    method_color,
    need_columns,
    need_rows,
    ordered,
    panel_grid,
    regime_color,
)

REGIME_MARKERS = {"rewind": "o", "reinit": "s", "finetune": "^", "random_mask": "D", "shuffle": "X"}
OTHER_MARKERS = ("v", "P", "*", "<", ">")
MARKER_SIZE = 34  # one size: hollow markers of different shapes keep coinciding masks visible


def regime_marker(regime: str) -> str:
    """A regime's marker: fixed for the known ones, stable (by name) for any other."""
    if regime in REGIME_MARKERS:
        return REGIME_MARKERS[regime]
    return OTHER_MARKERS[sum(map(ord, regime)) % len(OTHER_MARKERS)]


def mask_map(embedding: pd.DataFrame) -> Figure:
    """MDS map of ``analysis.embedding.mask_embedding(runs, level)``: one point per run, colour
    = criterion, marker = regime. Axes are in Jaccard-distance units with equal aspect; their
    directions carry no meaning (MDS is defined up to rotation)."""
    need_columns(
        embedding,
        ["x", "y", "criterion", "regime", "level", "layer"],
        "pass mask_embedding(runs, level)",
    )
    need_rows(embedding, "the embedding has no runs")
    apply_style()
    fig, (ax,) = panel_grid(1, 1, size=(SINGLE_COLUMN[0], SINGLE_COLUMN[0] * 0.85))
    criteria = ordered(embedding["criterion"], CRITERIA)
    regimes = ordered(embedding["regime"], REGIMES)
    by_regime = colour_by_regime(embedding)
    for (criterion, regime), g in embedding.groupby(["criterion", "regime"]):
        ax.scatter(
            g["x"],
            g["y"],
            s=MARKER_SIZE,
            marker=regime_marker(regime),
            facecolor="none",
            edgecolor=method_color(criterion, regime, by_regime),
            linewidth=1.0,
            label=f"{criterion} · {regime}",
        )
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("MDS 1 (Jaccard distance)")
    ax.set_ylabel("MDS 2")
    level, layer = embedding["level"].iloc[0], embedding["layer"].iloc[0]
    ax.set_title(f"masks at level {level}, {layer_label(layer)}")
    if by_regime:  # one criterion: one entry per regime, in its colour and marker
        entries = [
            Line2D(
                [], [], ls="", marker=regime_marker(r), mfc="none",
                mec=regime_color(r), label=f"{criteria[0]} · {r}",
            )
            for r in regimes
        ]  # fmt: skip
        legend_below(fig, [entries])
        return fig
    colours = [
        Line2D([], [], ls="", marker="o", color=criterion_color(c), label=c) for c in criteria
    ]
    markers = [
        Line2D([], [], ls="", marker=regime_marker(r), mfc="none", mec="0.25", label=r)
        for r in regimes
    ]
    legend_below(fig, [colours, markers])
    return fig
