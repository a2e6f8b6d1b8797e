"""Statistics over seeds against scipy.stats and hand-enumerated cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from maskstudy.analysis.stats import (
    bootstrap_ci,
    compare_methods,
    interval_table,
    method_tables,
    permutation_test,
    summarize,
)
from maskstudy.errors import ConfigError

ALTERNATIVES = ("two-sided", "less", "greater")


def mean_difference(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def paired_difference(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(x - y, axis=axis)


# --- bootstrap ------------------------------------------------------------------------------
@pytest.mark.parametrize("statistic", [np.mean, np.median])
def test_percentile_bootstrap_matches_scipy(statistic):
    x = np.random.default_rng(5).normal(3.0, 2.0, 25)
    estimate, low, high = bootstrap_ci(x, 0.95, n_resamples=20_000, seed=0, statistic=statistic)
    reference = stats.bootstrap(
        (x,), statistic, n_resamples=20_000, method="percentile", rng=np.random.default_rng(1)
    ).confidence_interval
    width = reference.high - reference.low
    # independent draws: Monte-Carlo error of a 2.5 % quantile is ~0.5 % of the width here,
    # while quantiles at α = 0.05 instead of 0.025 would be off by ~8 %
    assert estimate == statistic(x)
    assert low == pytest.approx(reference.low, abs=0.03 * width)
    assert high == pytest.approx(reference.high, abs=0.03 * width)


def test_bca_is_scipys():
    x = np.random.default_rng(6).exponential(1.0, 30)
    _, low, high = bootstrap_ci(x, 0.9, n_resamples=5_000, seed=3, method="BCa")
    reference = stats.bootstrap(
        (x,), np.mean, n_resamples=5_000, confidence_level=0.9, rng=np.random.default_rng(3)
    ).confidence_interval
    assert (low, high) == (reference.low, reference.high)


def test_degenerate_samples():
    for method in ("percentile", "BCa"):
        assert bootstrap_ci([0.7] * 5, method=method) == (0.7, 0.7, 0.7)
    assert bootstrap_ci([0.7] * 5, statistic=np.std) == (0.0, 0.0, 0.0)
    estimate, low, high = bootstrap_ci([0.25])
    assert estimate == 0.25 and math.isnan(low) and math.isnan(high)
    with pytest.raises(ConfigError, match="empty"):
        bootstrap_ci([])
    with pytest.raises(ConfigError, match=r"nan or infinite values at positions \[1\]"):
        bootstrap_ci([0.1, float("nan"), 0.3])
    with pytest.raises(ConfigError, match="confidence = 95"):
        bootstrap_ci([0.1, 0.2], confidence=95)
    with pytest.raises(ConfigError, match="method = 'bca'.*percentile, BCa"):
        bootstrap_ci([0.1, 0.2], method="bca")


def test_percentile_interval_coverage_and_width():
    rng = np.random.default_rng(8)
    trials, covered = 300, 0
    for t in range(trials):
        _, low, high = bootstrap_ci(rng.normal(3.0, 2.0, 20), 0.9, n_resamples=2_000, seed=t)
        covered += low <= 3.0 <= high
    # the percentile interval of a mean from 20 values covers a bit less than nominal
    # (~0.87 for 0.9); 300 trials give a standard error of ~0.02
    assert 0.8 <= covered / trials <= 0.94
    x = rng.normal(3.0, 2.0, 400)
    _, low, high = bootstrap_ci(x, n_resamples=4_000)
    normal_width = 2 * 1.959964 * x.std() / math.sqrt(len(x))
    assert high - low == pytest.approx(normal_width, rel=0.1)


def test_summarize_by_hand():
    frame = pd.DataFrame(
        {
            "method": ["b", "a", "a", "a", "b", "b", "a"],
            "level": [1, 1, 1, 1, 1, 2, 2],
            "acc": [0.5, 0.9, 0.8, 0.7, np.nan, 0.6, 0.3],
        }
    )
    table = summarize(frame, "acc", by=["method", "level"], n_resamples=20_000, seed=4)
    assert list(table.columns) == ["method", "level", "mean", "sd", "n", "ci_low", "ci_high"]
    assert list(zip(table.method, table.level, strict=True)) == [
        ("a", 1), ("a", 2), ("b", 1), ("b", 2),
    ]  # fmt: skip
    first = table.iloc[0]
    assert first["mean"] == pytest.approx(0.8)
    assert first.sd == pytest.approx(0.1)  # deviations ±0.1, 0: sqrt(0.02 / 2)
    assert first.n == 3
    assert (first.ci_low, first.ci_high) == bootstrap_ci([0.9, 0.8, 0.7], 0.95, 20_000, 4)[1:]
    # a resample of three 0.7s (or 0.9s) has probability 1/27 ≈ 3.7 % > 2.5 %: the interval
    # runs between the extreme resample means
    assert (first.ci_low, first.ci_high) == (pytest.approx(0.7), pytest.approx(0.9))
    single = table.iloc[2]  # b at level 1: the nan row is left out
    assert (single["mean"], single.n) == (0.5, 1)
    assert math.isnan(single.sd) and math.isnan(single.ci_low) and math.isnan(single.ci_high)
    overall = summarize(frame, "acc", by="method", n_resamples=500)
    assert list(overall.n) == [4, 2]
    assert overall["mean"].tolist() == pytest.approx([0.675, 0.55])
    with pytest.raises(ConfigError, match=r"\['seed'\].*method, level, acc"):
        summarize(frame, "acc", by="seed")


# --- permutation tests ----------------------------------------------------------------------
def test_permutation_test_by_hand():
    # pooled (3, 5, 1), a takes two: {3,5} → 4 − 1 = 3, {3,1} → 2 − 5 = −3, {5,1} → 3 − 3 = 0
    assert permutation_test([3, 5], [1], alternative="greater") == (3.0, pytest.approx(1 / 3))
    assert permutation_test([3, 5], [1], alternative="less") == (3.0, 1.0)
    assert permutation_test([3, 5], [1]) == (3.0, pytest.approx(2 / 3))
    # paired differences (1, 2): sign flips give means 1.5, 0.5, −0.5, −1.5
    assert permutation_test([3, 5], [2, 3], paired=True, alternative="greater") == (1.5, 0.25)
    assert permutation_test([3, 5], [2, 3], paired=True) == (1.5, 0.5)
    # equal means: every split is at least as extreme on one side; ties despite rounding
    assert permutation_test([1, 2, 3], [2, 2, 2]) == (pytest.approx(0.0, abs=1e-15), 1.0)


@pytest.mark.parametrize("sizes", [(6, 5), (4, 4), (2, 7)])
@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_exact_permutation_test_equals_scipy(sizes, alternative):
    rng = np.random.default_rng(sum(sizes))
    a, b = rng.normal(0.0, 1.0, sizes[0]), rng.normal(0.7, 1.0, sizes[1])
    difference, p = permutation_test(a, b, alternative=alternative)
    reference = stats.permutation_test(
        (a, b), mean_difference, n_resamples=10_000, alternative=alternative
    )
    assert len(reference.null_distribution) == math.comb(sum(sizes), sizes[0])  # scipy exact
    assert difference == pytest.approx(reference.statistic, abs=1e-14)
    assert p == reference.pvalue


@pytest.mark.parametrize("n", [3, 9])
@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_sign_flip_test_equals_scipy(n, alternative):
    rng = np.random.default_rng(n)
    a = rng.normal(0.0, 1.0, n)
    b = a + rng.normal(-0.4, 0.5, n)
    difference, p = permutation_test(a, b, paired=True, alternative=alternative)
    reference = stats.permutation_test(
        (a, b), paired_difference, permutation_type="samples", alternative=alternative
    )
    assert len(reference.null_distribution) == 2**n
    assert difference == pytest.approx(reference.statistic, abs=1e-14)
    assert p == reference.pvalue


def test_monte_carlo_permutation_test():
    rng = np.random.default_rng(11)
    a, b = rng.normal(0.0, 1.0, 10), rng.normal(0.5, 1.0, 10)
    _, exact = permutation_test(a, b, n_permutations=200_000)  # all C(20, 10) = 184 756 splits
    _, sampled = permutation_test(a, b, n_permutations=10_000, seed=2)
    assert sampled * 10_001 == pytest.approx(round(sampled * 10_001))  # (k + 1) / (n + 1)
    assert sampled == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / 10_000) * 2)
    # separated groups: no random split is as extreme, so each side counts only the observed one
    low, high = np.arange(12.0), np.arange(12.0) + 100
    assert permutation_test(high, low, n_permutations=10_000)[1] == 2 / 10_001
    assert permutation_test(high, low, n_permutations=10_000, alternative="greater")[1] == (
        1 / 10_001
    )
    _, flips = permutation_test(np.ones(20), np.zeros(20), n_permutations=5_000, paired=True)
    assert flips == 2 / 5_001


def test_permutation_test_rejects_bad_input():
    with pytest.raises(ConfigError, match="a has 0 and b 2"):
        permutation_test([], [1, 2])
    with pytest.raises(ConfigError, match="3 and 2 values"):
        permutation_test([1, 2, 3], [1, 2], paired=True)
    with pytest.raises(ConfigError, match="alternative = 'both'"):
        permutation_test([1, 2], [3], alternative="both")
    with pytest.raises(ConfigError, match="n_permutations = 0"):
        permutation_test([1, 2], [3], n_permutations=0)


# --- method comparisons ---------------------------------------------------------------------
@pytest.fixture
def runs_frame() -> pd.DataFrame:
    """Two levels × 5 seeds × methods; at level 1 'rewind' beats 'reinit' by 0.1 + noise."""
    rng = np.random.default_rng(12)
    rows = []
    for level in (1, 2):
        for seed in range(5):
            base = rng.normal(0.8, 0.05)
            lift = 0.1 if level == 1 else 0.0
            rows.append({"level": level, "seed": seed, "regime": "reinit", "acc": base})
            rows.append(
                {"level": level, "seed": seed, "regime": "rewind",
                 "acc": base + lift + rng.normal(0, 0.01)}
            )  # fmt: skip
        rows.append({"level": level, "seed": 9, "regime": "finetune", "acc": 0.5})
    return pd.DataFrame(rows)


def test_compare_methods_unpaired_and_paired(runs_frame):
    table = compare_methods(runs_frame, "acc", "regime", "rewind", "reinit")
    assert list(table.columns) == [
        "level", "a", "b", "mean_a", "mean_b", "difference", "n_a", "n_b", "p_value",
    ]  # fmt: skip
    assert list(table.level) == [1, 2]
    for row in table.itertuples():
        at = runs_frame[runs_frame.level == row.level]
        a, b = at[at.regime == "rewind"].acc, at[at.regime == "reinit"].acc
        assert row.difference == pytest.approx(a.mean() - b.mean(), abs=1e-14)
        assert (row.n_a, row.n_b) == (5, 5)
        assert row.p_value == permutation_test(a, b)[1]
    paired = compare_methods(runs_frame, "acc", "regime", "rewind", "reinit", paired_on="seed")
    # level 1: all five differences positive → only the identity pattern is as large: 2 · 1/32
    assert paired.p_value.iloc[0] == 2 / 32
    assert paired.p_value.iloc[1] > 0.05
    dropped = runs_frame.drop(runs_frame.query("regime == 'reinit' and seed == 0").index)
    fewer = compare_methods(dropped, "acc", "regime", "rewind", "reinit", paired_on="seed")
    assert list(fewer.n_a) == [4, 4] and list(fewer.n_b) == [4, 4]
    assert fewer.p_value.iloc[0] == 2 / 16
    overall = compare_methods(runs_frame, "acc", "regime", "rewind", "reinit", match=())
    assert len(overall) == 1 and overall.n_a.iloc[0] == 10


def test_compare_methods_errors(runs_frame):
    with pytest.raises(ConfigError, match="'random' is not in column 'regime'.*finetune"):
        compare_methods(runs_frame, "acc", "regime", "random", "reinit")
    with pytest.raises(ConfigError, match="share seed.*add the column"):
        compare_methods(runs_frame, "acc", "regime", "rewind", "reinit", match=(), paired_on="seed")
    with pytest.raises(ConfigError, match=r"\['epoch'\]"):
        compare_methods(runs_frame, "acc", "regime", "rewind", "reinit", match="epoch")
    with pytest.raises(ConfigError, match="two different methods"):
        compare_methods(runs_frame, "acc", "regime", "rewind", "rewind")


def test_interval_and_method_tables_format_the_bootstrap_of_each_group():
    rows = [
        {"level": lv, "seed": s, "regime": m, "acc": 0.9 + 0.01 * lv + 0.002 * s + d,
         "percent_remaining": 100 * 0.8**lv}
        for lv in (0, 1) for s in (0, 1, 2) for m, d in (("rewind", 0.0), ("reinit", -0.01))
    ]  # fmt: skip
    frame = pd.DataFrame(rows)
    table = interval_table(frame, "acc", "level", "regime", scale=100, digits=2)
    mean, low, high = bootstrap_ci(frame.query("level == 1 and regime == 'reinit'")["acc"])
    assert table.set_index("level").loc[1, "reinit"] == (
        f"{100 * mean:.2f} [{100 * low:.2f}, {100 * high:.2f}] (3)"
    )
    tables = method_tables(frame, "rewind", ["reinit", "shuffle"], [("acc", 100, 1)])
    assert list(tables["acc"].columns) == ["level", "percent_remaining", "rewind", "reinit"]
    assert tables["acc"]["percent_remaining"].tolist() == [100.0, 80.0]
    expected = compare_methods(frame, "acc", "regime", "rewind", "reinit", paired_on="seed")
    pd.testing.assert_frame_equal(tables["tests"], expected)
    assert tables["tests"]["difference"].tolist() == pytest.approx([0.01, 0.01])
