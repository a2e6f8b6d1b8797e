"""Significance of emergent structure in one layer's mask, and its resemblance to structured pruning.

The chance model is the one of ``structure.py``: a random mask keeps the layer's K of N weights
uniformly at random. Against it:

- ``dead_unit_test``: are more filters / channels / kernels / units entirely pruned than a random
  mask leaves? A permutation test (the mask's kept weights placed at random ``permutations``
  times), one-sided, with p = (1 + #{random ≥ observed}) / (1 + permutations).
- ``kernel_count_test``: does the number of alive weights per kernel follow its chance law,
  Hypergeometric(N, K, kh·kw)? Pearson's χ² on the alive-count histogram (bins pooled until every
  expected count is ≥ 5), with the permutation p-value (exact under the null: kernels of one mask
  are not independent draws, so the χ² law is only an approximation, also reported).
- ``structured_resemblance``: of the filters (or channels) the mask left dead, how many did a
  structured method (``ln_structured``) remove from the same layer? Overlap, Jaccard, lift over
  the |A|·|B|/G that independent choices give, and the hypergeometric tail P(X ≥ overlap).
- ``dead_source_test``: across two consecutive conv layers, do the input channels of the second
  that read a dead filter of the first keep fewer weights than its other channels? Their mean
  alive count against the others' (ratio), with an exact permutation test over which channels
  are called dead-source (all subsets of that size, or ``permutations`` random ones).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from scipy import stats

from maskstudy.analysis.chance import alive_count_pmf, prob_all_pruned
from maskstudy.analysis.structure import _bool_array, unit_axes
from maskstudy.errors import ConfigError

__all__ = ["dead_source_test", "dead_unit_test", "kernel_count_test", "structured_resemblance"]

MIN_EXPECTED = 5.0  # χ² bins are pooled until each expects at least this many kernels


def _unit_axes(mask: np.ndarray, unit: str) -> tuple[int, ...]:
    """The axes ``unit`` reduces over in ``mask`` (``structure.unit_axes``), or a ConfigError
    naming the units this mask has."""
    axes = unit_axes(mask)
    if unit not in axes:
        raise ConfigError(
            f"a mask of shape {mask.shape} has no {unit}s; its units: {', '.join(axes)}"
        )
    return axes[unit]


def _random_masks(mask: np.ndarray, permutations: int, seed: int):
    """``permutations`` masks keeping as many weights as ``mask``, placed uniformly at random."""
    rng = np.random.default_rng(seed)
    flat = mask.reshape(-1)
    for _ in range(permutations):
        yield rng.permutation(flat).reshape(mask.shape)


def _check_permutations(permutations: int) -> None:
    if isinstance(permutations, bool) or not isinstance(permutations, int) or permutations < 1:
        raise ConfigError(f"permutations = {permutations!r} must be an integer >= 1, e.g. 999")


def dead_unit_test(
    mask: Any, unit: str = "filter", permutations: int = 999, seed: int = 0
) -> dict[str, Any]:
    """Entirely pruned ``unit``s of one layer's mask against random masks with its kept count.

    Returns dead, groups, expected (exact chance mean, G·C(N−g, K)/C(N, K)), index
    (dead / expected), random_mean and random_max (over the permutations) and p_value
    (one-sided: at least as many dead by chance).
    """
    m = _bool_array(mask)
    _check_permutations(permutations)
    axes = _unit_axes(m, unit)
    dead = int((~m.any(axis=axes)).sum())
    groups = int(np.prod([m.shape[a] for a in range(m.ndim) if a not in axes]))
    expected = groups * float(prob_all_pruned(m.size, int(m.sum()), m.size // groups))
    chance = np.array([(~r.any(axis=axes)).sum() for r in _random_masks(m, permutations, seed)])
    return {
        "unit": unit,
        "dead": dead,
        "groups": groups,
        "expected": expected,
        "index": dead / expected if expected > 0 else (np.inf if dead else np.nan),
        "random_mean": float(chance.mean()),
        "random_max": int(chance.max()),
        "p_value": (1 + int((chance >= dead).sum())) / (1 + permutations),
        "permutations": permutations,
    }


def _pooled_bins(expected: np.ndarray) -> list[np.ndarray]:
    """Consecutive alive counts grouped so that each group expects >= MIN_EXPECTED kernels
    (the last group absorbs a short tail)."""
    bins, current, total = [], [], 0.0
    for a, e in enumerate(expected):
        current.append(a)
        total += e
        if total >= MIN_EXPECTED:
            bins.append(np.array(current))
            current, total = [], 0.0
    if current:
        if bins:
            bins[-1] = np.concatenate([bins[-1], current])
        else:
            bins.append(np.array(current))
    return bins


def _chi2(counts: np.ndarray, expected: np.ndarray, bins: list[np.ndarray]) -> float:
    obs = np.array([counts[b].sum() for b in bins], dtype=float)
    exp = np.array([expected[b].sum() for b in bins])
    return float(((obs - exp) ** 2 / exp).sum())


def kernel_count_test(mask: Any, permutations: int = 999, seed: int = 0) -> dict[str, Any]:
    """Alive weights per kernel of a conv mask against Hypergeometric(N, K, kh·kw).

    Returns kernels, bins (after pooling), chi2, dof, p_chi2 (χ² law, approximate), p_value
    (permutation), tv (total-variation distance of the alive-count histogram from chance) and
    dead_or_full (fraction of kernels with 0 or all weights alive, the structured extremes).
    """
    m = _bool_array(mask)
    _check_permutations(permutations)
    if m.ndim < 3:
        raise ConfigError(f"kernel_count_test needs a conv mask (out, in, *kernel); got {m.shape}")
    size = int(np.prod(m.shape[2:]))
    kernels = m.size // size
    pmf = alive_count_pmf(m.size, int(m.sum()), size)
    expected = pmf * kernels
    bins = _pooled_bins(expected)

    def histogram(x: np.ndarray) -> np.ndarray:
        return np.bincount(x.reshape(kernels, size).sum(axis=1), minlength=size + 1)

    counts = histogram(m)
    observed = _chi2(counts, expected, bins)
    chance = np.array(
        [_chi2(histogram(r), expected, bins) for r in _random_masks(m, permutations, seed)]
    )
    dof = max(len(bins) - 1, 1)
    return {
        "kernels": kernels,
        "bins": len(bins),
        "chi2": observed,
        "dof": dof,
        "p_chi2": float(stats.chi2.sf(observed, dof)),
        "p_value": (1 + int((chance >= observed).sum())) / (1 + permutations),
        "tv": 0.5 * float(np.abs(counts / kernels - pmf).sum()),
        "dead_or_full": float((counts[0] + counts[size]) / kernels),
        "permutations": permutations,
    }


def structured_resemblance(mask: Any, structured: Any, unit: str = "filter") -> dict[str, Any]:
    """Dead ``unit``s of ``mask`` (A) against those removed by the ``structured`` mask (B) of the
    same layer: overlap |A∩B|, jaccard, expected = |A|·|B|/G (independent choices), lift =
    overlap / expected, and p_value = P(X ≥ overlap), X ~ Hypergeometric(G, |B|, |A|)."""
    a, b = _bool_array(mask), _bool_array(structured, "structured mask")
    if a.shape != b.shape:
        raise ConfigError(
            f"the masks differ in shape: {a.shape} and {b.shape}; give one layer's two masks"
        )
    axes = _unit_axes(a, unit)
    dead_a, dead_b = ~a.any(axis=axes), ~b.any(axis=axes)
    groups, n_a, n_b = dead_a.size, int(dead_a.sum()), int(dead_b.sum())
    overlap = int((dead_a & dead_b).sum())
    union = n_a + n_b - overlap
    expected = n_a * n_b / groups
    return {
        "unit": unit,
        "groups": groups,
        "dead": n_a,
        "removed": n_b,
        "overlap": overlap,
        "jaccard": overlap / union if union else np.nan,
        "expected": expected,
        "lift": overlap / expected if expected > 0 else np.nan,
        "p_value": float(stats.hypergeom.sf(overlap - 1, groups, n_b, n_a)),
    }


def dead_source_test(
    previous: Any, mask: Any, permutations: int = 9999, seed: int = 0
) -> dict[str, Any]:
    """Input channels of ``mask`` (a conv mask (out, in, *kernel)) fed by dead filters of
    ``previous`` (the conv mask before it, whose filters are its input channels) against the
    other input channels: dead_sources (k), alive_dead_source and alive_live_source (mean alive
    weights per channel), ratio (their quotient; 1 = no coupling, nan when k is 0 or all) and
    p_value, one-sided: the share of the C(C_in, k) ways to pick k channels whose mean alive
    count is at most the dead-source channels' (all of them when there are at most
    ``permutations``, else ``permutations`` random picks, p = (1 + hits) / (1 + picks))."""
    prev, m = _bool_array(previous, "previous mask"), _bool_array(mask)
    _check_permutations(permutations)
    if prev.ndim < 3 or m.ndim < 3 or prev.shape[0] != m.shape[1]:
        raise ConfigError(
            f"masks of shapes {prev.shape} and {m.shape} are not consecutive conv layers: the "
            "first's filters must be the second's input channels (out, in, *kernel)"
        )
    dead = ~prev.any(axis=tuple(range(1, prev.ndim)))
    alive = m.sum(axis=(0, *range(2, m.ndim))).astype(np.int64)  # per input channel
    k, channels = int(dead.sum()), len(alive)
    row = {"dead_sources": k, "channels": channels}
    if k in (0, channels):
        nan = float("nan")
        return {**row, "alive_dead_source": nan, "alive_live_source": nan, "ratio": nan,
                "p_value": nan, "picks": 0}  # fmt: skip
    observed = int(alive[dead].sum())
    if math.comb(channels, k) <= permutations:
        sums = np.array([alive[list(c)].sum() for c in itertools.combinations(range(channels), k)])
        p_value, picks = float((sums <= observed).mean()), len(sums)
    else:
        rng = np.random.default_rng(seed)
        sums = np.array([alive[rng.choice(channels, k, replace=False)].sum()
                         for _ in range(permutations)])  # fmt: skip
        p_value, picks = (1 + int((sums <= observed).sum())) / (1 + permutations), permutations
    dead_mean, live_mean = observed / k, int(alive[~dead].sum()) / (channels - k)
    return {
        **row,
        "alive_dead_source": dead_mean,
        "alive_live_source": live_mean,
        "ratio": dead_mean / live_mean if live_mean > 0 else float("nan"),
        "p_value": p_value,
        "picks": picks,
    }
