"""Paper figures (P1–P8 and the map of masks; docs/methods.md#analyses): one function per figure over
the tidy tables, and :func:`draw_figures` for every figure a set of runs supports."""

from maskstudy.plots.accuracy import accuracy_vs_remaining
from maskstudy.plots.density import density_vs_level
from maskstudy.plots.embedding import mask_map
from maskstudy.plots.figures import FIGURES, FigureReport, draw_figures
from maskstudy.plots.overlap import (
    criterion_heatmap,
    regime_overlap,
    seed_overlap,
    with_run_columns,
)
from maskstudy.plots.stability import stability_vs_level, weight_scatter
from maskstudy.plots.structure import conv_mask_images, dead_units_vs_level, kernel_counts

__all__ = [
    "FIGURES",
    "FigureReport",
    "accuracy_vs_remaining",
    "conv_mask_images",
    "criterion_heatmap",
    "dead_units_vs_level",
    "density_vs_level",
    "draw_figures",
    "kernel_counts",
    "mask_map",
    "regime_overlap",
    "seed_overlap",
    "stability_vs_level",
    "weight_scatter",
    "with_run_columns",
]
