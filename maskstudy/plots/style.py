"""One figure style: seaborn, a colour-blind-safe palette, the same colour for a method everywhere."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

SINGLE_COLUMN = (3.4, 2.6)  # inches: legible at single-column width
DOUBLE_COLUMN = (7.0, 2.8)
_PALETTE = sns.color_palette("colorblind", 10)
CRITERIA = ("magnitude", "random", "ln_structured", "random_structured")
REGIMES = ("rewind", "reinit", "finetune", "random_mask")
_LINESTYLES = {"rewind": "-", "reinit": "--", "finetune": ":", "random_mask": "-."}


def apply_style() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=0.9)
    plt.rcParams.update({"figure.dpi": 150, "savefig.bbox": "tight", "legend.frameon": False})


def method_label(criterion: str, regime: str) -> str:
    return f"{criterion} · {regime}"


def criterion_color(criterion: str) -> tuple[float, float, float]:
    """A criterion's colour: fixed for the known ones, stable (by name) for any other."""
    if criterion in CRITERIA:
        return _PALETTE[CRITERIA.index(criterion)]
    return _PALETTE[len(CRITERIA) + sum(map(ord, criterion)) % (len(_PALETTE) - len(CRITERIA))]


def regime_linestyle(regime: str) -> str:
    return _LINESTYLES.get(regime, "-")
