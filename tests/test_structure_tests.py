"""Permutation and χ² tests of emergent structure, and resemblance to structured pruning, against
independent references: scipy.stats, hand counts and Monte-Carlo."""

import numpy as np
import pytest
import torch
from scipy import stats

from maskstudy.analysis.structure_tests import (
    dead_source_test,
    dead_unit_test,
    kernel_count_test,
    removed_filter_test,
    structured_resemblance,
)
from maskstudy.errors import ConfigError
from maskstudy.pruning import prune


def random_mask(shape, density: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    flat = np.zeros(int(np.prod(shape)), dtype=bool)
    flat[: round(density * flat.size)] = True
    return rng.permutation(flat).reshape(shape)


def filter_mask(shape, dead_filters: int, density: float, seed: int) -> np.ndarray:
    """``dead_filters`` whole filters pruned, the rest pruned at random to ``density`` overall."""
    m = np.zeros(shape, dtype=bool)
    alive = shape[0] - dead_filters
    m[dead_filters:] = random_mask((alive, *shape[1:]), density * shape[0] / alive, seed)
    return m


def test_dead_filters_beyond_chance_are_significant_and_chance_ones_are_not():
    structured = filter_mask((32, 16, 3, 3), dead_filters=8, density=0.3, seed=1)
    result = dead_unit_test(structured, "filter", permutations=199, seed=0)
    assert result["dead"] == 8 and result["groups"] == 32
    assert result["random_max"] == 0 and result["p_value"] == 1 / 200  # none dead by chance
    chance = dead_unit_test(random_mask((16, 4, 3, 3), 0.1, seed=2), "filter", 199, seed=0)
    assert chance["p_value"] > 0.05
    # the exact chance mean against the permutations' mean (1/√199 Monte-Carlo error)
    assert chance["random_mean"] == pytest.approx(chance["expected"], rel=0.15)


def test_kernel_count_chi2_matches_scipy_on_the_pooled_bins():
    m = random_mask((20, 10, 3, 3), 0.4, seed=3)
    result = kernel_count_test(m, permutations=199, seed=0)
    # independent reference: the histogram and the Hypergeometric law from scipy
    alive = m.reshape(200, 9).sum(axis=1)
    counts = np.bincount(alive, minlength=10)
    expected = 200 * stats.hypergeom.pmf(np.arange(10), m.size, int(m.sum()), 9)
    obs, exp, o, e = [], [], 0, 0.0
    for a in range(10):  # pool consecutive counts until each bin expects >= 5 kernels
        o, e = o + counts[a], e + expected[a]
        if e >= 5:
            obs.append(o), exp.append(e)
            o, e = 0, 0.0
    obs[-1], exp[-1] = obs[-1] + o, exp[-1] + e
    chi2, p = stats.chisquare(obs, exp, sum_check=False)
    assert result["bins"] == len(obs) and result["chi2"] == pytest.approx(chi2, rel=1e-9)
    assert result["p_chi2"] == pytest.approx(p, rel=1e-6)
    assert result["p_value"] > 0.05  # a random mask follows the chance law


def test_all_or_nothing_kernels_are_far_from_chance():
    kernels = random_mask((20, 10), 0.4, seed=4)  # which kernels live
    m = np.repeat(kernels[:, :, None, None], 3, axis=2).repeat(3, axis=3)
    result = kernel_count_test(m, permutations=99, seed=0)
    assert result["dead_or_full"] == 1.0 and result["p_value"] == 1 / 100
    assert result["p_chi2"] < 1e-12 and 0.5 < result["tv"] <= 1


def test_resemblance_to_ln_structured_by_hand_and_by_hypergeometric_tail():
    shape = (10, 4, 3, 3)
    a = np.ones(shape, dtype=bool)
    a[[0, 1, 2, 3]] = False  # the unstructured mask left filters 0-3 dead
    b = np.ones(shape, dtype=bool)
    b[[2, 3, 4]] = False  # the structured one removed filters 2-4
    r = structured_resemblance(a, b, "filter")
    assert (r["dead"], r["removed"], r["overlap"]) == (4, 3, 2)
    assert r["jaccard"] == pytest.approx(2 / 5) and r["expected"] == pytest.approx(1.2)
    assert r["lift"] == pytest.approx(2 / 1.2)
    # P(X >= 2) for 3 removed among 10 filters, 4 of them dead: C(4,2)C(6,1)+C(4,3) over C(10,3)
    assert r["p_value"] == pytest.approx((6 * 6 + 4) / 120)
    rng = np.random.default_rng(0)  # Monte-Carlo: 3 filters chosen at random
    hits = [len({2, 3, 4} & set(rng.choice(10, 4, replace=False))) >= 2 for _ in range(20000)]
    assert np.mean(hits) == pytest.approx(r["p_value"], abs=0.01)


def test_resemblance_with_a_real_ln_structured_mask():
    g = torch.Generator().manual_seed(5)
    w = torch.randn(16, 8, 3, 3, generator=g)
    w[:4] *= 0.05  # four filters of small weights: magnitude kills them, ln_structured too
    magnitude = prune({"w": w}, None, "magnitude", 0.6)["w"].numpy()
    structured = prune({"w": w}, None, "ln_structured", 0.25, n=1, dim=0)["w"].numpy()
    r = structured_resemblance(magnitude, structured, "filter")
    assert r["removed"] == 4 and r["overlap"] == r["dead"] == 4 and r["lift"] == 4.0
    with pytest.raises(ConfigError, match="differ in shape"):
        structured_resemblance(magnitude, structured[:8], "filter")
    with pytest.raises(ConfigError, match="needs a conv mask"):
        kernel_count_test(np.ones((4, 4), dtype=bool))
    with pytest.raises(ConfigError, match="no kernels"):
        dead_unit_test(np.ones((4, 4), dtype=bool), "kernel")
    with pytest.raises(ConfigError, match="permutations = 0"):
        dead_unit_test(magnitude, "filter", permutations=0)


def scipy_thinner_p(alive: np.ndarray, chosen: np.ndarray) -> float:
    """scipy's exact one-sided permutation p that the ``chosen`` groups' mean alive count is
    this low: the reference for thinner_subset_test and the tests built on it."""
    return stats.permutation_test(
        (alive[chosen], alive[~chosen]),
        lambda a, b: np.mean(a),
        permutation_type="independent",
        alternative="less",
        n_resamples=np.inf,
    ).pvalue


def test_dead_source_channels_by_hand():
    previous = np.ones((3, 1, 1, 1), bool)
    previous[0] = False  # filter 0 of the first layer is dead
    mask = np.array([[0, 1, 1], [0, 1, 0]], bool).reshape(2, 3, 1, 1)  # alive per channel: 0, 2, 1
    got = dead_source_test(previous, mask)
    assert (got["dead_sources"], got["channels"], got["picks"]) == (1, 3, 3)
    assert (got["alive_dead_source"], got["alive_live_source"], got["ratio"]) == (0.0, 1.5, 0.0)
    assert got["p_value"] == pytest.approx(1 / 3)  # channel 0 is the thinnest of 3 equal picks


def test_dead_source_p_value_is_scipys_exact_permutation_test():
    rng = np.random.default_rng(3)
    previous = rng.random((8, 4, 3, 3)) < 0.5
    previous[[1, 4, 6]] = False
    mask = rng.random((5, 8, 3, 3)) < 0.4
    mask[:, [1, 4]] &= rng.random((5, 2, 3, 3)) < 0.3  # thinner behind two dead filters
    got = dead_source_test(previous, mask)
    alive = mask.sum(axis=(0, 2, 3))
    dead = np.zeros(8, bool)
    dead[[1, 4, 6]] = True
    assert got["picks"] == 56  # C(8, 3), all enumerated
    assert got["p_value"] == pytest.approx(scipy_thinner_p(alive, dead), abs=1e-12)
    assert got["ratio"] == pytest.approx(alive[dead].mean() / alive[~dead].mean())
    sampled = dead_source_test(previous, mask, permutations=40, seed=1)  # fewer than C(8, 3)
    assert sampled["picks"] == 40 and abs(sampled["p_value"] - got["p_value"]) < 0.2


def test_dead_source_needs_chained_conv_layers_and_a_dead_filter():
    with pytest.raises(ConfigError, match="not consecutive conv layers"):
        dead_source_test(np.ones((4, 1, 3, 3), bool), np.ones((2, 3, 3, 3), bool))
    none_dead = dead_source_test(np.ones((3, 1, 3, 3), bool), np.ones((2, 3, 3, 3), bool))
    assert none_dead["dead_sources"] == 0 and np.isnan(none_dead["ratio"])
    assert np.isnan(none_dead["p_value"])


def test_removed_filters_are_thinner_where_magnitude_resembles_ln_structured():
    g = torch.Generator().manual_seed(7)
    w = torch.randn(12, 6, 3, 3, generator=g)
    w[:3] *= 0.3  # three filters of smallish weights: thinned by magnitude, not killed
    magnitude = prune({"w": w}, None, "magnitude", 0.5)["w"].numpy()
    structured = prune({"w": w}, None, "ln_structured", 0.25, n=1, dim=0)["w"].numpy()
    assert magnitude.any(axis=(1, 2, 3)).all()  # no dead filter: the lift is undefined here
    got = removed_filter_test(magnitude, structured)
    alive = magnitude.sum(axis=(1, 2, 3))
    removed = ~structured.any(axis=(1, 2, 3))
    assert (got["removed"], got["filters"], got["picks"]) == (3, 12, 220)  # C(12, 3)
    assert got["ratio"] == pytest.approx(alive[removed].mean() / alive[~removed].mean())
    assert got["ratio"] < 0.5
    assert got["p_value"] == pytest.approx(scipy_thinner_p(alive, removed), abs=1e-12)
    assert got["p_value"] < 0.01
    unrelated = removed_filter_test(random_mask(w.shape, 0.5, 1), structured)
    assert unrelated["p_value"] > 0.05
    with pytest.raises(ConfigError, match="one conv layer's two masks"):
        removed_filter_test(magnitude, structured[:6])
