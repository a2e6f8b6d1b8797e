"""Mean and spread of a value over seeds (or pairs) per group: the line and band of a figure."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from maskstudy.analysis.stats import summarize
from maskstudy.errors import ConfigError

BANDS = ("ci", "minmax", "none")


def mean_band(frame: pd.DataFrame, value: str, by: Sequence[str], band: str = "ci") -> pd.DataFrame:
    """One row per group of ``by``: ``mean``, ``lo``, ``hi`` and ``n`` of ``value``.

    ``band="ci"``: 95 % percentile-bootstrap CI of the mean (``analysis.stats.summarize``;
    nan for one value); ``"minmax"``: the smallest and largest value; ``"none"``: lo = hi = mean.
    Missing values are left out.
    """
    if band not in BANDS:
        raise ConfigError(f"band = {band!r}; choose one of: {', '.join(BANDS)}")
    by = list(by)
    data = frame.dropna(subset=[value])
    if band == "ci":
        stats = summarize(data, value, by)
        return stats.rename(columns={"ci_low": "lo", "ci_high": "hi"})[
            [*by, "mean", "lo", "hi", "n"]
        ]
    grouped = data.groupby(by, sort=True)[value]
    stats = grouped.agg(mean="mean", lo="min", hi="max", n="count").reset_index()
    if band == "none":
        stats["lo"] = stats["hi"] = stats["mean"]
    return stats
