"""Mask overlap metrics against scipy, chance baselines against Monte-Carlo, tables on fake runs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pytest
import torch
from scipy.spatial import distance
from scipy.stats import hypergeom

from maskstudy.analysis import chance
from maskstudy.analysis.overlap import (
    compare,
    expected_hamming,
    expected_jaccard,
    hamming,
    jaccard,
    layerwise,
    overlap_coefficient,
    pairwise,
    pairwise_counts,
)
from maskstudy.analysis.run_overlap import overlap_table
from maskstudy.errors import ConfigError
from maskstudy.pruning import CRITERIA
from maskstudy.runs.config import PruneConfig, RunConfig

DRAWS = 20_000


def random_masks(rng: np.random.Generator, draws: int, n: int, k: int) -> np.ndarray:
    """``draws`` independent uniform masks keeping exactly ``k`` of ``n`` (one per row)."""
    base = np.zeros((draws, n), bool)
    base[:, :k] = True
    return rng.permuted(base, axis=1)


def mc_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter, union = (a & b).sum(1), (a | b).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def assert_mean(samples: np.ndarray, expected: float) -> None:
    """Expected within 4 Monte-Carlo standard errors of the sample mean."""
    se = samples.std() / math.sqrt(len(samples))
    assert abs(samples.mean() - expected) < 4 * se + 1e-12


def assert_sd(samples: np.ndarray, expected: float) -> None:
    """Expected sd within 4 standard errors (normal approximation) of the sample sd."""
    sd = samples.std(ddof=1)
    assert abs(sd - expected) < 4 * sd / math.sqrt(2 * (len(samples) - 1))


# --- metrics against scipy ------------------------------------------------------------------
@pytest.mark.parametrize("density", [0.05, 0.3, 0.8])
def test_jaccard_and_hamming_match_scipy(density):
    rng = np.random.default_rng(1)
    a, b = rng.random(999) < density, rng.random(999) < density
    # scipy's jaccard is the dissimilarity 1 − J over the nonzero (kept) entries
    assert jaccard(a, b) == pytest.approx(1 - distance.jaccard(a, b), abs=1e-15)
    assert jaccard(a, b, on="pruned") == pytest.approx(1 - distance.jaccard(~a, ~b), abs=1e-15)
    assert hamming(a, b) == pytest.approx(distance.hamming(a, b), abs=1e-15)
    assert hamming(a, b, normalize=False) == int((a != b).sum())
    small = min(a.sum(), b.sum())
    assert overlap_coefficient(a, b) == pytest.approx((a & b).sum() / small, abs=1e-15)


def test_tensors_dicts_and_arrays_agree():
    rng = np.random.default_rng(2)
    a = {"x.weight": rng.random((5, 7)) < 0.4, "y.weight": rng.random((3, 2, 3, 3)) < 0.4}
    b = {"y.weight": rng.random((3, 2, 3, 3)) < 0.4, "x.weight": rng.random((5, 7)) < 0.4}
    flat_a = np.concatenate([a[k].ravel() for k in a])
    flat_b = np.concatenate([b[k].ravel() for k in a])  # b follows a's key order
    torch_a = {k: torch.from_numpy(v) for k, v in a.items()}
    expected = 1 - distance.jaccard(flat_a, flat_b)
    assert jaccard(a, b) == pytest.approx(expected, abs=1e-15)
    assert jaccard(torch_a, b) == pytest.approx(expected, abs=1e-15)
    assert jaccard(torch.from_numpy(flat_a), flat_b) == pytest.approx(expected, abs=1e-15)


def test_empty_sets_and_nesting():
    none, some = np.zeros(6, bool), np.array([1, 1, 0, 0, 1, 0], bool)
    assert jaccard(none, none) == 1.0
    assert jaccard(none, some) == 0.0
    assert jaccard(~none, ~none, on="pruned") == 1.0
    subset = np.array([1, 0, 0, 0, 1, 0], bool)
    assert overlap_coefficient(subset, some) == 1.0
    assert compare(subset, some).nested
    assert not compare(subset, ~subset).nested


def test_hamming_jaccard_identity_at_equal_density():
    rng = np.random.default_rng(3)
    n = 5000
    for k in (250, 1000, 2500, 4000):
        a, b = random_masks(rng, 2, n, k)
        j, h, d = jaccard(a, b), hamming(a, b), k / n
        assert h == pytest.approx(2 * d * (1 - j) / (1 + j), rel=1e-12)


@pytest.mark.parametrize(
    "a, b, message",
    [
        (np.ones(4), np.ones(4, bool), "dtype float64"),
        (np.ones(4, bool), np.ones(5, bool), "shape"),
        ({"w": np.ones(2, bool)}, {"v": np.ones(2, bool)}, "missing: \\['w'\\]"),
        ({"w": np.ones(2, bool)}, np.ones(2, bool), "single tensor"),
    ],
)
def test_bad_masks_raise(a, b, message):
    with pytest.raises(ConfigError, match=message):
        jaccard(a, b)


def test_bad_arguments_raise():
    masks = [np.ones(8, bool), np.zeros(8, bool)]
    with pytest.raises(ConfigError, match="choose one of: jaccard, hamming, overlap"):
        pairwise(masks, metric="cosine")
    with pytest.raises(ConfigError, match="choose one of: kept, pruned"):
        jaccard(*masks, on="alive")
    with pytest.raises(ConfigError, match="chunk"):
        pairwise(masks, chunk=8)
    with pytest.raises(ConfigError, match="no masks"):
        pairwise([])
    with pytest.raises(ConfigError, match="outside"):
        expected_jaccard(10, 11, 3)
    with pytest.raises(ConfigError, match="integers"):
        expected_jaccard(10, 2.5, 3)


# --- chance baselines against Monte-Carlo ---------------------------------------------------
@pytest.mark.parametrize("n, k_a, k_b", [(40, 10, 15), (30, 3, 27), (64, 32, 32), (12, 1, 1)])
def test_jaccard_and_hamming_chance_match_monte_carlo(n, k_a, k_b):
    rng = np.random.default_rng(n + k_a)
    a, b = random_masks(rng, DRAWS, n, k_a), random_masks(rng, DRAWS, n, k_b)
    j = mc_jaccard(a, b)
    assert_mean(j, expected_jaccard(n, k_a, k_b))
    assert_sd(j, chance.jaccard_std(n, k_a, k_b))
    j_pruned = mc_jaccard(~a, ~b)
    assert_mean(j_pruned, expected_jaccard(n, n - k_a, n - k_b))
    h = (a != b).mean(1)
    assert_mean(h, expected_hamming(n, k_a, k_b))
    assert_sd(h, chance.hamming_std(n, k_a, k_b))
    assert expected_hamming(n, k_a, k_b, normalize=False) == k_a + k_b - 2 * k_a * k_b / n


# --- chance baselines against exact enumeration ---------------------------------------------
def all_masks(n: int, k: int) -> np.ndarray:
    """Every mask keeping exactly ``k`` of ``n`` weights, one per row (equally likely by chance)."""
    rows = np.zeros((math.comb(n, k), n), bool)
    for row, kept in zip(rows, combinations(range(n), k), strict=True):
        row[list(kept)] = True
    return rows


def all_pairs(n: int, k_a: int, k_b: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows (a, b) running over every pair of masks keeping ``k_a`` and ``k_b`` of ``n``, once."""
    a, b = all_masks(n, k_a), all_masks(n, k_b)
    return np.repeat(a, len(b), axis=0), np.tile(b, (len(a), 1))


@pytest.mark.parametrize(
    "n, k_a, k_b", [(6, 2, 3), (6, 3, 3), (7, 1, 6), (7, 5, 4), (6, 0, 2), (6, 6, 4), (5, 0, 0)]
)
def test_chance_moments_equal_exact_enumeration(n, k_a, k_b):
    a, b = all_pairs(n, k_a, k_b)
    j = mc_jaccard(a, b)
    assert expected_jaccard(n, k_a, k_b) == pytest.approx(j.mean(), abs=1e-12)
    assert chance.jaccard_std(n, k_a, k_b) == pytest.approx(j.std(), abs=1e-12)
    pruned = mc_jaccard(~a, ~b)
    assert expected_jaccard(n, n - k_a, n - k_b) == pytest.approx(pruned.mean(), abs=1e-12)
    h = (a != b).sum(1)
    assert expected_hamming(n, k_a, k_b, normalize=False) == pytest.approx(h.mean(), abs=1e-12)
    assert expected_hamming(n, k_a, k_b) == pytest.approx(h.mean() / n, abs=1e-12)
    assert chance.hamming_std(n, k_a, k_b, normalize=False) == pytest.approx(h.std(), abs=1e-12)
    assert chance.hamming_std(n, k_a, k_b) == pytest.approx(h.std() / n, abs=1e-12)


def test_chance_spreads_match_scipy_hypergeom():
    for n, k_a, k_b in [(40, 10, 15), (1000, 300, 450), (10**6, 2 * 10**5, 5 * 10**5)]:
        x = hypergeom(n, k_a, k_b)  # the intersection |A∧B|; H = k_a + k_b − 2·|A∧B|
        assert chance.hamming_std(n, k_a, k_b, normalize=False) == pytest.approx(2 * x.std())
        assert expected_hamming(n, k_a, k_b, normalize=False) == pytest.approx(
            k_a + k_b - 2 * x.mean(), rel=1e-12
        )


def test_stratified_moments_equal_exact_enumeration():
    strata = ((4, 2, 1), (5, 3, 2))
    (a0, b0), (a1, b1) = (all_pairs(*s) for s in strata)
    first, second = np.divmod(np.arange(len(a0) * len(a1)), len(a1))  # every pair of pairs
    a = np.concatenate([a0[first], a1[second]], axis=1)
    b = np.concatenate([b0[first], b1[second]], axis=1)
    j = mc_jaccard(a, b)
    mean, sd = chance.stratified_jaccard_moments(strata)
    assert mean == pytest.approx(j.mean(), abs=1e-12)
    assert sd == pytest.approx(j.std(), abs=1e-12)


def test_layerwise_chance_is_stratified():
    """Whole-network chance keeps each layer's counts: a sum of per-layer hypergeometrics."""
    rng = np.random.default_rng(4)
    strata = ((30, 27, 24), (50, 5, 8))  # a dense and a sparse layer
    draws = [(random_masks(rng, DRAWS, n, ka), random_masks(rng, DRAWS, n, kb))
             for n, ka, kb in strata]  # fmt: skip
    a = np.concatenate([x for x, _ in draws], axis=1)
    b = np.concatenate([y for _, y in draws], axis=1)
    j = mc_jaccard(a, b)
    mean, sd = chance.stratified_jaccard_moments(strata)
    assert_mean(j, mean)
    assert_sd(j, sd)
    pooled = expected_jaccard(80, 32, 32)  # all weights in one pool: a different null
    assert abs(pooled - mean) > 20 * j.std() / math.sqrt(DRAWS)
    # compare() on mask dicts uses the stratified baseline
    masks = [{"l0": x[0], "l1": x[1]} for x in ((draws[0][0][0], draws[1][0][0]),
                                                (draws[0][1][0], draws[1][1][0]))]  # fmt: skip
    assert compare(*masks).expected_jaccard == pytest.approx(mean, rel=1e-12)


def test_intersection_pmf_is_exact():
    n, k_a, k_b = 2000, 400, 700
    x, pmf = chance.intersection_pmf(n, k_a, k_b)
    exact = [math.comb(k_a, i) * math.comb(n - k_a, k_b - i) / math.comb(n, k_b) for i in x]
    assert np.allclose(pmf, exact, rtol=1e-11, atol=0)
    assert x[0] == 0 and x[-1] == k_a  # the window covers the whole support here


def test_truncated_expected_jaccard_matches_full_support_and_approximation():
    n, k_a, k_b = 2_000_000, 400_000, 700_000
    x = np.arange(max(0, k_a + k_b - n), min(k_a, k_b) + 1)
    pmf = hypergeom.pmf(x, n, k_a, k_b)  # scipy's own pmf over the whole support
    full = np.dot(pmf, x / (k_a + k_b - x)) / pmf.sum()
    window, _ = chance.intersection_pmf(n, k_a, k_b)
    assert len(window) < len(x) / 10
    assert expected_jaccard(n, k_a, k_b) == pytest.approx(full, rel=1e-9)
    assert expected_jaccard(10**7, 2 * 10**6, 2 * 10**6) == pytest.approx(0.2 / 1.8, abs=1e-6)
    assert chance.approx_expected_jaccard(0.2, 0.2) == pytest.approx(0.1111, abs=1e-4)


def test_degenerate_chance():
    assert expected_jaccard(10, 0, 0) == 1.0
    assert expected_jaccard(10, 10, 10) == 1.0
    assert chance.jaccard_std(10, 10, 10) == 0.0
    assert expected_jaccard(10, 0, 4) == 0.0
    rec = compare(np.ones(10, bool), np.ones(10, bool))
    assert rec.lift == 1.0 and math.isnan(rec.z)
    assert math.isnan(compare(np.zeros(10, bool), np.ones(10, bool)).lift)


def test_compare_lift_and_z():
    rng = np.random.default_rng(5)
    a, b = random_masks(rng, 2, 200, 60)
    rec = compare(a, b)
    mean, sd = expected_jaccard(200, 60, 60), chance.jaccard_std(200, 60, 60)
    assert rec.jaccard == pytest.approx(1 - distance.jaccard(a, b), abs=1e-15)
    assert rec.lift == pytest.approx(rec.jaccard / mean, rel=1e-12)
    assert rec.z == pytest.approx((rec.jaccard - mean) / sd, rel=1e-12)
    assert (rec.n, rec.kept_a, rec.kept_b, rec.intersection) == (200, 60, 60, int((a & b).sum()))


# --- pairwise -------------------------------------------------------------------------------
def naive(masks: list[dict[str, np.ndarray]], metric: str, on: str) -> np.ndarray:
    flat = [np.concatenate([m[k].ravel() for k in masks[0]]) for m in masks]
    if on == "pruned":
        flat = [~f for f in flat]
    out = np.empty((len(flat), len(flat)))
    for i, x in enumerate(flat):
        for j, y in enumerate(flat):
            if metric == "jaccard":
                out[i, j] = 1 - distance.jaccard(x, y)
            elif metric == "hamming":
                out[i, j] = distance.hamming(x, y)
            else:
                out[i, j] = (x & y).sum() / min(x.sum(), y.sum())
    return out


@pytest.fixture
def dict_masks() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(6)
    return [
        {"a.weight": rng.random((7, 13)) < d, "b.weight": rng.random((5, 3, 3, 3)) < d / 2}
        for d in (0.1, 0.3, 0.5, 0.5, 0.7, 0.9, 0.95)
    ]


@pytest.mark.parametrize("metric", ["jaccard", "hamming", "overlap"])
@pytest.mark.parametrize("on", ["kept", "pruned"])
def test_pairwise_equals_naive_loop(dict_masks, metric, on):
    assert np.allclose(pairwise(dict_masks, metric, on), naive(dict_masks, metric, on),
                       rtol=0, atol=1e-14)  # fmt: skip


def test_chunks_and_threads_do_not_change_counts(dict_masks):
    reference, n = pairwise_counts(dict_masks, chunk=1 << 16, threads=1)
    flat = np.stack([np.concatenate([m[k].ravel() for k in m]) for m in dict_masks]).astype(int)
    assert n == flat.shape[1]
    assert np.array_equal(reference, flat @ flat.T)
    for chunk, threads in [(64, 1), (100, 3), (129, 2), (1 << 20, 4)]:
        counts, _ = pairwise_counts(dict_masks, chunk=chunk, threads=threads)
        assert np.array_equal(counts, reference)


def test_layerwise_rows(dict_masks):
    a, b = dict_masks[1], dict_masks[4]
    frame = layerwise(a, b)
    assert list(frame.layer) == ["a.weight", "b.weight", "all"]
    for row in frame.itertuples():
        if row.layer == "all":
            assert row.jaccard == pytest.approx(jaccard(a, b), abs=1e-15)
            assert row.n == 7 * 13 + 5 * 27
        else:
            assert row.jaccard == pytest.approx(jaccard(a[row.layer], b[row.layer]), abs=1e-15)
            assert row.expected_jaccard == pytest.approx(
                expected_jaccard(row.n, row.kept_a, row.kept_b), rel=1e-12
            )


# --- tables over runs -----------------------------------------------------------------------
@pytest.fixture
def criteria(monkeypatch):
    """Make 'magnitude' and 'random' valid criteria even before the pruning module registers
    them (RunConfig validates names against the registry); restored after the test."""
    for name in ("magnitude", "random"):
        if name not in CRITERIA:
            monkeypatch.setitem(CRITERIA._entries, name, object())


@dataclass
class FakeRun:
    config: RunConfig
    masks: dict[int, dict[str, torch.Tensor]]
    run_id: str

    @property
    def levels(self) -> list[int]:
        return sorted(self.masks)

    def mask(self, level: int) -> dict[str, torch.Tensor]:
        return self.masks[level]


def imp_run(seed: int, criterion: str, levels: int = 3) -> FakeRun:
    """Nested masks as IMP makes them: each level keeps 60 % of the previous level's weights."""
    gen = torch.Generator().manual_seed(seed * 10 + len(criterion))
    scores = {
        "fc1.weight": torch.rand(20, 30, generator=gen),
        "fc2.weight": torch.rand(10, 20, generator=gen),
    }
    masks = {}
    for level in range(levels):
        masks[level] = {}
        for name, s in scores.items():
            keep = round(s.numel() * 0.6**level)
            threshold = s.flatten().sort(descending=True).values[keep - 1]
            masks[level][name] = s >= threshold
    cfg = RunConfig(seed=seed, prune=PruneConfig(criterion=criterion))
    return FakeRun(cfg, masks, f"{criterion}-s{seed}")


def test_overlap_table_along_seed(criteria):
    runs = [imp_run(s, "magnitude") for s in range(3)] + [imp_run(0, "random")]
    table = overlap_table(runs, along="seed")
    pairs = set(zip(table.run_a, table.run_b, strict=True))
    assert pairs == {("magnitude-s0", "magnitude-s1"), ("magnitude-s0", "magnitude-s2"),
                     ("magnitude-s1", "magnitude-s2")}  # fmt: skip
    assert len(table) == 3 * 3 * 3  # pairs × levels × (2 layers + 'all')
    row = table.query("run_a == 'magnitude-s0' and run_b == 'magnitude-s2' and level == 2")
    row = row.set_index("layer")
    m0, m2 = runs[0].mask(2), runs[2].mask(2)
    assert row.loc["all", "jaccard"] == pytest.approx(jaccard(m0, m2), abs=1e-15)
    assert row.loc["fc2.weight", "jaccard"] == pytest.approx(
        jaccard(m0["fc2.weight"], m2["fc2.weight"]), abs=1e-15
    )
    assert (row.value_a.iloc[0], row.value_b.iloc[0]) == (0, 2)
    assert row.loc["fc1.weight", "density_a"] == pytest.approx(round(600 * 0.36) / 600)
    assert {"expected_jaccard", "lift", "z", "hamming", "nested"} <= set(table.columns)
    assert not table.query("level > 0").nested.any()  # level 0 masks are dense: trivially nested
    assert table.query("level == 0").nested.all()


def test_overlap_table_along_criterion_levels_and_layers(criteria):
    runs = [imp_run(s, "magnitude") for s in range(2)] + [imp_run(0, "random")]
    table = overlap_table(runs, along="criterion", levels=[1, 2], layers=["fc2.weight"])
    assert set(zip(table.value_a, table.value_b, strict=True)) == {("magnitude", "random")}
    assert set(table.level) == {1, 2}
    assert list(table.layer.unique()) == ["fc2.weight", "all"]
    with pytest.raises(ConfigError, match="not mask entries"):
        overlap_table(runs, along="criterion", layers=["fc9.weight"])
    with pytest.raises(ConfigError, match="along = 'colour'"):
        overlap_table(runs, along="colour")


def test_overlap_table_along_level_flags_nested_masks(criteria):
    run = imp_run(0, "magnitude", levels=4)
    table = overlap_table([run], along="level", layers=())
    assert len(table) == 6  # 4 levels → 6 pairs, 'all' rows only
    assert table.nested.all()
    consecutive = table.query("level == 1 and level_b == 2").iloc[0]
    assert consecutive.jaccard == pytest.approx(consecutive.density_b / consecutive.density_a)
    shuffled = {lv: {k: v.flip(0) if lv == 3 else v for k, v in m.items()}
                for lv, m in run.masks.items()}  # fmt: skip
    table = overlap_table([FakeRun(run.config, shuffled, "flip")], along="level", levels=[2, 3])
    assert not table.nested.any()
