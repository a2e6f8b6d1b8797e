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
- ``removed_filter_test``: the same comparison for the filters a structured mask of the same
  layer removed: are they thinner in the unstructured mask? A resemblance to structured pruning
  that is defined even when the unstructured mask leaves no filter entirely dead.
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

__all__ = [
    "dead_source_test",
    "dead_unit_test",
    "kernel_count_test",
    "removed_filter_test",
    "structured_resemblance",
    "thinner_subset_test",
]

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


def thinner_subset_test(
    alive: np.ndarray, chosen: np.ndarray, permutations: int = 9999, seed: int = 0
) -> dict[str, Any]:
    """Do the ``chosen`` groups (a bool vector over groups: channels, filters) hold fewer alive
    weights than the others? ``alive`` holds each group's count. Returns chosen (k), groups,
    alive_chosen and alive_others (mean per group), ratio (their quotient; 1 = no difference,
    nan when k is 0 or all) and p_value, one-sided: the share of the C(groups, k) ways to pick k
    groups whose mean is at most the chosen ones' (all enumerated when there are at most
    ``permutations``, else ``permutations`` random picks, p = (1 + hits) / (1 + picks)). It
    conditions on the counts themselves, so it needs no chance model for them."""
    _check_permutations(permutations)
    alive, chosen = np.asarray(alive, np.int64), np.asarray(chosen, bool)
    k, groups = int(chosen.sum()), len(alive)
    row = {"chosen": k, "groups": groups}
    if k in (0, groups):
        nan = float("nan")
        return {**row, "alive_chosen": nan, "alive_others": nan, "ratio": nan, "p_value": nan,
                "picks": 0}  # fmt: skip
    observed = int(alive[chosen].sum())
    if math.comb(groups, k) <= permutations:
        sums = np.array([alive[list(c)].sum() for c in itertools.combinations(range(groups), k)])
        p_value, picks = float((sums <= observed).mean()), len(sums)
    else:
        rng = np.random.default_rng(seed)
        sums = np.array([alive[rng.choice(groups, k, replace=False)].sum()
                         for _ in range(permutations)])  # fmt: skip
        p_value, picks = (1 + int((sums <= observed).sum())) / (1 + permutations), permutations
    chosen_mean, others_mean = observed / k, int(alive[~chosen].sum()) / (groups - k)
    return {
        **row,
        "alive_chosen": chosen_mean,
        "alive_others": others_mean,
        "ratio": chosen_mean / others_mean if others_mean > 0 else float("nan"),
        "p_value": p_value,
        "picks": picks,
    }


def dead_source_test(
    previous: Any, mask: Any, permutations: int = 9999, seed: int = 0
) -> dict[str, Any]:
    """Input channels of ``mask`` (a conv mask (out, in, *kernel)) fed by dead filters of
    ``previous`` (the conv mask before it, whose filters are its input channels) against the
    other input channels (:func:`thinner_subset_test` on the alive weights per channel):
    dead_sources, channels, alive_dead_source, alive_live_source, ratio, p_value, picks."""
    prev, m = _bool_array(previous, "previous mask"), _bool_array(mask)
    if prev.ndim < 3 or m.ndim < 3 or prev.shape[0] != m.shape[1]:
        raise ConfigError(
            f"masks of shapes {prev.shape} and {m.shape} are not consecutive conv layers: the "
            "first's filters must be the second's input channels (out, in, *kernel)"
        )
    dead = ~prev.any(axis=tuple(range(1, prev.ndim)))
    alive = m.sum(axis=(0, *range(2, m.ndim)))  # per input channel
    test = thinner_subset_test(alive, dead, permutations, seed)
    names = {"chosen": "dead_sources", "groups": "channels", "alive_chosen": "alive_dead_source",
             "alive_others": "alive_live_source"}  # fmt: skip
    return {names.get(k, k): v for k, v in test.items()}


def removed_filter_test(
    mask: Any, structured: Any, permutations: int = 9999, seed: int = 0
) -> dict[str, Any]:
    """Resemblance to structured pruning by density: do the filters the ``structured`` mask of
    the same layer removed hold fewer alive weights in ``mask`` than its other filters?
    (:func:`thinner_subset_test` on alive weights per filter: removed, filters,
    alive_removed, alive_kept, ratio, p_value, picks.) Defined where no filter of ``mask`` is
    dead, unlike :func:`structured_resemblance`."""
    a, b = _bool_array(mask), _bool_array(structured, "structured mask")
    if a.shape != b.shape or a.ndim < 3:
        raise ConfigError(
            f"masks of shapes {a.shape} and {b.shape}: give one conv layer's two masks"
        )
    axes = tuple(range(1, a.ndim))
    test = thinner_subset_test(a.sum(axis=axes), ~b.any(axis=axes), permutations, seed)
    names = {"chosen": "removed", "groups": "filters", "alive_chosen": "alive_removed",
             "alive_others": "alive_kept"}  # fmt: skip
    return {names.get(k, k): v for k, v in test.items()}
