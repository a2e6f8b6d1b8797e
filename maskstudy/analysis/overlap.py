"""Mask overlap: Jaccard, Hamming and overlap coefficient, beside their exact chance baselines.

A mask is a bool tensor/array (True = kept) or a mask dict; a dict is compared over all its
entries together (the whole network), or entry by entry with :func:`layerwise`. Every count
comes from one routine, :func:`maskstudy.analysis.bitcount.pairwise_counts`: the Gram matrix
X·Xᵀ of the 0/1 masks, chunked, exact integer sums. Tables over runs are in :mod:`maskstudy.analysis.run_overlap`.

Read overlaps against chance. Two random masks at 20 % density already have J ≈ 0.111, so
report the lift J / E[J] and the z-score next to the raw J. Jaccard of *pruned* sets
(``on="pruned"``) is large at high sparsity by construction and is not comparable with the
kept-set J. Jaccard across different initialisations ignores neuron permutations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from maskstudy.analysis.bitcount import (
    DEFAULT_CHUNK,
    WHOLE,
    MaskLike,
    layer_counts,
    pairwise_counts,
)
from maskstudy.analysis.chance import (
    expected_hamming,
    expected_jaccard,
    lift,
    stratified_jaccard_moments,
    zscore,
)
from maskstudy.errors import ConfigError

METRICS = ("jaccard", "hamming", "overlap")
SETS = ("kept", "pruned")

__all__ = [
    "Overlap",
    "compare",
    "expected_hamming",
    "expected_jaccard",
    "hamming",
    "jaccard",
    "layerwise",
    "overlap_coefficient",
    "pairwise",
    "pairwise_counts",
]


# --- metrics from counts --------------------------------------------------------------------
def _metric(metric: str, on: str, n: int, k_a: Any, k_b: Any, inter: Any) -> np.ndarray:
    """Vectorised metric from counts; J = overlap = 1 where the sets compared are both empty."""
    if metric not in METRICS:
        raise ConfigError(f"metric = {metric!r}; choose one of: {', '.join(METRICS)}")
    if on not in SETS:
        raise ConfigError(f"on = {on!r}; choose one of: {', '.join(SETS)}")
    k_a, k_b, inter = (np.asarray(v, dtype=np.float64) for v in (k_a, k_b, inter))
    if on == "pruned":
        k_a, k_b, inter = n - k_a, n - k_b, n - k_a - k_b + inter
    if metric == "hamming":
        return (k_a + k_b - 2 * inter) / n
    denominator = k_a + k_b - inter if metric == "jaccard" else np.minimum(k_a, k_b)
    return np.divide(
        inter,
        denominator,
        out=np.ones(np.broadcast(inter, denominator).shape),
        where=denominator > 0,
    )


def _two(a: MaskLike, b: MaskLike) -> tuple[int, int, int, int]:
    """(n, |A|, |B|, |A∧B|) over all entries."""
    inter, n = pairwise_counts([a, b])
    return n, int(inter[0, 0]), int(inter[1, 1]), int(inter[0, 1])


def jaccard(a: MaskLike, b: MaskLike, on: str = "kept") -> float:
    """|A∧B| / |A∨B| over the kept (or, with ``on="pruned"``, the pruned) weights; 1 if both empty."""
    n, k_a, k_b, inter = _two(a, b)
    return float(_metric("jaccard", on, n, k_a, k_b, inter))


def hamming(a: MaskLike, b: MaskLike, normalize: bool = True) -> float:
    """Positions where the masks differ: a fraction of all weights, or a count if not ``normalize``."""
    n, k_a, k_b, inter = _two(a, b)
    differ = k_a + k_b - 2 * inter
    return differ / n if normalize else differ


def overlap_coefficient(a: MaskLike, b: MaskLike, on: str = "kept") -> float:
    """|A∧B| / min(|A|, |B|): 1 exactly when one set contains the other (1 if one is empty)."""
    n, k_a, k_b, inter = _two(a, b)
    return float(_metric("overlap", on, n, k_a, k_b, inter))


@dataclass(frozen=True)
class Overlap:
    """Observed overlap of two masks beside its chance baseline: independent uniform masks
    keeping the same number of weights in every layer. ``hamming`` values are fractions of
    ``n``; ``nested`` is true when one kept set contains the other."""

    n: int
    kept_a: int
    kept_b: int
    intersection: int
    density_a: float
    density_b: float
    jaccard: float
    expected_jaccard: float
    jaccard_std: float
    lift: float
    z: float
    hamming: float
    expected_hamming: float
    overlap: float
    nested: bool


Stratum = tuple[int, int, int, int]  # (n, kept_a, kept_b, intersection) of one layer


def _record(strata: Sequence[Stratum]) -> Overlap:
    """Overlap of the union of ``strata``; chance keeps every stratum's kept counts."""
    n, k_a, k_b, inter = (sum(s[c] for s in strata) for c in range(4))
    observed = float(_metric("jaccard", "kept", n, k_a, k_b, inter))
    mean, sd = stratified_jaccard_moments(tuple(s[:3] for s in strata))
    chance_h = sum(expected_hamming(*s[:3], normalize=False) for s in strata) / n
    return Overlap(
        n=n,
        kept_a=k_a,
        kept_b=k_b,
        intersection=inter,
        density_a=k_a / n,
        density_b=k_b / n,
        jaccard=observed,
        expected_jaccard=mean,
        jaccard_std=sd,
        lift=lift(observed, mean),
        z=zscore(observed, mean, sd),
        hamming=(k_a + k_b - 2 * inter) / n,
        expected_hamming=chance_h,
        overlap=float(_metric("overlap", "kept", n, k_a, k_b, inter)),
        nested=inter == min(k_a, k_b),
    )


def _strata(
    counts: Mapping[str, tuple[np.ndarray, int]], layers: Iterable[str], i: int, j: int
) -> list[Stratum]:
    return [
        (n, int(inter[i, i]), int(inter[j, j]), int(inter[i, j]))
        for inter, n in (counts[layer] for layer in layers)
    ]


def compare(a: MaskLike, b: MaskLike) -> Overlap:
    """Observed Jaccard/Hamming/overlap of two masks with E[J], sd, lift = J/E[J] and z-score.

    The chance masks keep as many weights as ``a`` and ``b`` in every entry (layer), see
    :func:`~maskstudy.analysis.chance.stratified_jaccard_moments`. lift is nan when E[J] = 0
    (a mask keeps nothing); z is nan when chance has no spread (masks keep all or nothing).
    """
    counts = layer_counts([a, b])
    return _record(_strata(counts, counts, 0, 1))


def pair_rows(
    counts: Mapping[str, tuple[np.ndarray, int]],
    pairs: Iterable[tuple[int, int]],
    layers: Sequence[str],
    labels: Mapping[str, Sequence[Any]],
) -> list[dict[str, Any]]:
    """One row per (pair, layer), ``'all'`` = every entry together; ``labels[col][i]`` / ``[j]``
    fill columns ``col_a`` / ``col_b``."""
    rows = []
    for i, j in pairs:
        ids = {
            f"{col}_{side}": values[k]
            for col, values in labels.items()
            for side, k in (("a", i), ("b", j))
        }
        for layer in layers:
            strata = _strata(counts, counts if layer == WHOLE else [layer], i, j)
            rows.append({**ids, "layer": layer, **dataclasses.asdict(_record(strata))})
    return rows


def layerwise(a: MaskLike, b: MaskLike) -> pd.DataFrame:
    """One :class:`Overlap` row per mask entry, then the whole network (``layer='all'``)."""
    counts = layer_counts([a, b])
    layers = list(counts) if WHOLE in counts else [*counts, WHOLE]
    return pd.DataFrame(pair_rows(counts, [(0, 1)], layers, {}))


def pairwise(
    masks: Sequence[MaskLike],
    metric: str = "jaccard",
    on: str = "kept",
    chunk: int = DEFAULT_CHUNK,
    threads: int | None = None,
) -> np.ndarray:
    """N×N matrix of ``metric`` (jaccard | hamming (a fraction) | overlap) between ``masks``.

    One exact counting pass over all masks, chunked Gram matrices of the 0/1 masks (see
    :func:`pairwise_counts` for devices and memory): torch tensors that all live on one GPU are
    counted there. The result is a numpy array either way; mask dicts are compared over all
    entries in the first mask's key order.
    """
    _metric(metric, on, 1, 0, 0, 0)  # validate before the expensive pass
    inter, n = pairwise_counts(masks, chunk, threads)
    kept = np.diag(inter)
    return _metric(metric, on, n, kept[:, None], kept[None, :], inter)
