"""Statistics over seeds: bootstrap confidence intervals, per-group summaries (the bands the
figures draw) and permutation tests between methods.

Everything is seeded, so a table regenerates bit for bit. Seeds are few (often 3–10): the
tests here are exact whenever the number of distinct rearrangements is small enough to
enumerate, and a percentile interval from a handful of values is rough, so show n beside it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from itertools import combinations, islice
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from maskstudy.errors import ConfigError

CI_METHODS = ("percentile", "BCa")
ALTERNATIVES = ("two-sided", "less", "greater")
BLOCK_VALUES = 1 << 22  # values per block of resamples / rearrangements held in memory
# Null values within this relative distance of the observed statistic count as ties: they are
# theoretically equal but rounded differently (scipy.stats.permutation_test uses the same
# factor, relative to the observed value; here relative to the data's scale as well).
TIE_TOLERANCE = 100 * np.finfo(np.float64).eps

Statistic = Callable[..., Any]

__all__ = ["bootstrap_ci", "compare_methods", "permutation_test", "summarize"]


# --- checks ---------------------------------------------------------------------------------
def _values(values: Any, what: str) -> np.ndarray:
    """``values`` as a 1-D float array of finite numbers."""
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what} must be numbers; got {values!r}") from e
    if x.ndim != 1:
        raise ConfigError(f"{what} has shape {x.shape}; pass a flat sequence of numbers")
    if not np.isfinite(x).all():
        raise ConfigError(
            f"{what} holds nan or infinite values at positions "
            f"{np.flatnonzero(~np.isfinite(x)).tolist()}; drop the missing runs first"
        )
    return x


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} = {value!r} must be an integer >= 1")
    return int(value)


def _choice(value: Any, allowed: Sequence[str], name: str) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} = {value!r}; choose one of: {', '.join(allowed)}")
    return value


def _columns(frame: pd.DataFrame, names: Sequence[str]) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise ConfigError(
            f"columns {missing} are not in the frame; its columns are: "
            f"{', '.join(map(str, frame.columns))}"
        )


def _names(columns: str | Sequence[str]) -> list[str]:
    return [columns] if isinstance(columns, str) else list(columns)


def _groups(frame: pd.DataFrame, by: list[str]) -> Iterator[tuple[dict[str, Any], pd.DataFrame]]:
    """({column: value}, rows) per group of ``by`` in sorted order; the whole frame if no ``by``."""
    if not by:
        yield {}, frame
        return
    for key, group in frame.groupby(by, sort=True, dropna=False):
        yield dict(zip(by, key, strict=True)), group


def _spans(total: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, count) of consecutive blocks of at most ``size`` covering ``range(total)``."""
    for start in range(0, total, size):
        yield start, min(size, total - start)


# --- bootstrap ------------------------------------------------------------------------------
def _resampled(x: np.ndarray, statistic: Statistic, n_resamples: int, seed: int) -> np.ndarray:
    """``statistic`` of ``n_resamples`` resamples of ``x`` drawn with replacement."""
    rng = np.random.default_rng(seed)
    vectorized = "axis" in inspect.signature(statistic).parameters
    rows = max(1, BLOCK_VALUES // len(x))
    out = []
    for _, count in _spans(n_resamples, rows):
        block = x[rng.integers(0, len(x), (count, len(x)))]
        out.append(
            statistic(block, axis=-1) if vectorized else np.apply_along_axis(statistic, -1, block)
        )
    return np.concatenate(out)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
    statistic: Statistic = np.mean,
    method: str = "percentile",
) -> tuple[float, float, float]:
    """(statistic(values), low, high): a two-sided bootstrap confidence interval.

    ``method="percentile"`` (default): the α/2 and 1 − α/2 quantiles of the statistic over
    ``n_resamples`` resamples with replacement. ``method="BCa"``: bias-corrected and
    accelerated, via ``scipy.stats.bootstrap``. ``statistic`` is a numpy-style reduction
    (``np.mean``, ``np.median``, …; ``axis=`` is used when it takes one). One value gives
    (v, nan, nan); a constant sample gives a collapsed interval.
    """
    x = _values(values, "values")
    if len(x) == 0:
        raise ConfigError("values is empty; pass at least one value to bootstrap")
    ok = isinstance(confidence, (int, float)) and not isinstance(confidence, bool)
    if not ok or not 0 < confidence < 1:
        raise ConfigError(f"confidence = {confidence!r} must be a fraction in (0, 1), e.g. 0.95")
    n_resamples = _count(n_resamples, "n_resamples")
    _choice(method, CI_METHODS, "method")
    estimate = float(statistic(x))
    if len(x) == 1:
        return estimate, math.nan, math.nan
    if (x == x[0]).all():  # every resample is the sample itself
        return estimate, estimate, estimate
    if method == "BCa":
        result = stats.bootstrap(
            (x,),
            statistic,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method="BCa",
            rng=np.random.default_rng(seed),
        )
        interval = result.confidence_interval
        return estimate, float(interval.low), float(interval.high)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(_resampled(x, statistic, n_resamples, seed), [alpha, 1 - alpha])
    return estimate, float(low), float(high)


def summarize(
    frame: pd.DataFrame,
    value: str,
    by: str | Sequence[str],
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
    method: str = "percentile",
) -> pd.DataFrame:
    """One row per group of ``by``: the ``by`` values, mean, sd (ddof 1), n and the bootstrap
    CI of the mean (ci_low, ci_high; see :func:`bootstrap_ci`) of ``value`` over its rows.

    Rows whose ``value`` is missing are left out (n counts the others). Every group is
    resampled with the same ``seed``, so a group's interval does not depend on the others.
    """
    by = _names(by)
    _columns(frame, [value, *by])
    rows = []
    for key, group in _groups(frame.dropna(subset=[value]), by):
        x = _values(group[value], f"column {value!r}")
        mean, low, high = bootstrap_ci(x, confidence, n_resamples, seed, method=method)
        sd = float(np.std(x, ddof=1)) if len(x) > 1 else math.nan
        rows.append({**key, "mean": mean, "sd": sd, "n": len(x), "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=[*by, "mean", "sd", "n", "ci_low", "ci_high"])


def interval_table(
    frame: pd.DataFrame,
    value: str,
    index: str | Sequence[str],
    columns: str,
    scale: float = 1.0,
    digits: int = 2,
    **bootstrap: Any,
) -> pd.DataFrame:
    """A wide table for a README: one row per ``index``, one column per ``columns`` value,
    each cell ``mean [ci_low, ci_high] (n)`` of ``value`` × ``scale`` (:func:`summarize`'s
    bootstrap interval over the group's rows, e.g. seeds); empty where a group has no rows."""
    index = _names(index)
    stats_ = summarize(frame, value, [*index, columns], **bootstrap)

    def cell(row: pd.Series) -> str:
        mean, low, high = (scale * row[c] for c in ("mean", "ci_low", "ci_high"))
        interval = "" if math.isnan(low) else f" [{low:.{digits}f}, {high:.{digits}f}]"
        return f"{mean:.{digits}f}{interval} ({row['n']})"

    stats_["cell"] = stats_.apply(cell, axis=1)
    wide = stats_.pivot(index=index, columns=columns, values="cell").fillna("")
    wide.columns.name = None
    return wide.reset_index()


def method_tables(
    frame: pd.DataFrame,
    reference: str,
    others: Sequence[str],
    values: Sequence[tuple[str, float, int]],
    method_col: str = "regime",
) -> dict[str, pd.DataFrame]:
    """A study's tables: per level, one :func:`interval_table` per (value, scale, digits) with
    the methods ``reference``, ``*others`` as columns (% remaining beside the level), and
    ``reference`` against each other method by a paired permutation test over seeds."""
    present = [m for m in (reference, *others) if m in set(frame[method_col])]
    remaining = frame.groupby("level")["percent_remaining"].mean().round(1)
    tables = {}
    for value, scale, digits in values:
        table = interval_table(frame, value, "level", method_col, scale=scale, digits=digits)
        table.insert(1, "percent_remaining", table["level"].map(remaining))
        tables[value] = table[["level", "percent_remaining", *present]]
    tests = [
        compare_methods(frame, values[0][0], method_col, reference, m, paired_on="seed")
        for m in present
        if m != reference
    ]
    tables["tests"] = pd.concat(tests, ignore_index=True) if tests else pd.DataFrame()
    return tables


# --- permutation tests ----------------------------------------------------------------------
def _blocks(rows: Iterator[Any], size: int) -> Iterator[np.ndarray]:
    while block := list(islice(rows, size)):
        yield np.array(block)


def _split_null(
    x: np.ndarray, y: np.ndarray, n_permutations: int, rng: np.random.Generator
) -> tuple[np.ndarray, float, bool]:
    """(null differences of means, observed difference, exact) over splits of x ∪ y into
    groups of len(x) and len(y): all C(n, len(x)) when at most ``n_permutations``."""
    pooled = np.concatenate([x, y])
    n, size = len(pooled), len(x)
    total = pooled.sum()

    def difference(index: np.ndarray) -> np.ndarray:  # index: positions of group a, per row
        kept = pooled[index].sum(axis=-1)
        return kept / size - (total - kept) / (n - size)

    rows = max(1, BLOCK_VALUES // n)
    exact = math.comb(n, size) <= n_permutations
    if exact:
        indices = _blocks(combinations(range(n), size), rows)
    else:
        order = np.arange(n)
        indices = (
            rng.permuted(np.tile(order, (m, 1)), axis=1)[:, :size]
            for _, m in _spans(n_permutations, rows)
        )
    null = np.concatenate([difference(index) for index in indices])
    return null, float(difference(np.arange(size))), exact


def _sign_flip_null(
    d: np.ndarray, n_permutations: int, rng: np.random.Generator
) -> tuple[np.ndarray, float, bool]:
    """(null means, observed mean, exact) of the paired differences ``d`` under random signs:
    all 2^n sign patterns when at most ``n_permutations``."""
    n = len(d)
    rows = max(1, BLOCK_VALUES // n)
    exact = 2**n <= n_permutations
    if exact:
        signs = (  # the bits of pattern numbers start … start + m − 1, one row each
            1 - 2 * ((np.arange(start, start + m)[:, None] >> np.arange(n)) & 1)
            for start, m in _spans(2**n, rows)
        )
    else:
        signs = (1 - 2 * rng.integers(0, 2, (m, n)) for _, m in _spans(n_permutations, rows))
    null = np.concatenate([(s * d).mean(axis=1) for s in signs])
    return null, float(d.mean()), exact


def _p_value(
    null: np.ndarray, observed: float, exact: bool, alternative: str, scale: float
) -> float:
    """Share of the null at least as extreme as ``observed``; Monte-Carlo nulls count the
    observed arrangement too ((k + 1) / (n + 1)); two-sided = twice the smaller one-sided p."""
    tie = TIE_TOLERANCE * max(abs(observed), scale)
    extra = 0 if exact else 1
    less = (np.count_nonzero(null <= observed + tie) + extra) / (len(null) + extra)
    greater = (np.count_nonzero(null >= observed - tie) + extra) / (len(null) + extra)
    p = {"less": less, "greater": greater, "two-sided": 2 * min(less, greater)}[alternative]
    return min(float(p), 1.0)


def permutation_test(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_permutations: int = 10_000,
    seed: int = 0,
    alternative: str = "two-sided",
    paired: bool = False,
) -> tuple[float, float]:
    """(mean(a) − mean(b), p-value) of a permutation test of equal means.

    Unpaired: the pooled values are split into groups of len(a) and len(b). ``paired=True``
    (a[i] and b[i] from the same seed): the signs of a[i] − b[i] are flipped. All distinct
    rearrangements are enumerated when there are at most ``n_permutations`` (exact p, as
    ``scipy.stats.permutation_test``), else ``n_permutations`` random ones are drawn with the
    (k + 1)/(n + 1) correction. ``alternative`` = 'less' / 'greater' tests mean(a) below /
    above mean(b); 'two-sided' doubles the smaller one-sided p (capped at 1).
    """
    x, y = _values(a, "a"), _values(b, "b")
    n_permutations = _count(n_permutations, "n_permutations")
    _choice(alternative, ALTERNATIVES, "alternative")
    rng = np.random.default_rng(seed)
    if paired:
        if len(x) != len(y) or len(x) == 0:
            raise ConfigError(
                f"paired test got {len(x)} and {len(y)} values; pass a[i], b[i] from the "
                "same seed (equal lengths >= 1), or paired=False"
            )
        d = x - y
        null, observed, exact = _sign_flip_null(d, n_permutations, rng)
        scale = float(np.abs(d).max())
    else:
        if len(x) == 0 or len(y) == 0:
            raise ConfigError(f"a has {len(x)} and b {len(y)} values; each needs at least one")
        null, observed, exact = _split_null(x, y, n_permutations, rng)
        scale = float(np.abs(np.concatenate([x, y])).max())
    return observed, _p_value(null, observed, exact, alternative, scale)


def compare_methods(
    frame: pd.DataFrame,
    value: str,
    method_col: str,
    a: Any,
    b: Any,
    match: str | Sequence[str] = ("level",),
    paired_on: str | None = None,
    n_permutations: int = 10_000,
    seed: int = 0,
    alternative: str = "two-sided",
) -> pd.DataFrame:
    """Method ``a`` against method ``b`` (values of ``method_col``) per group of ``match``.

    One row per group holding both: the ``match`` values, a, b, mean_a, mean_b, difference
    (mean_a − mean_b), n_a, n_b and the permutation p-value (:func:`permutation_test`).
    With ``paired_on`` (e.g. 'seed') only values present for both methods are compared, as
    pairs, with the sign-flip test. p-values are per group, not corrected for multiplicity.
    """
    match = _names(match)
    _columns(frame, [value, method_col, *match, *([paired_on] if paired_on else [])])
    methods = set(frame[method_col].dropna())
    for name in (a, b):
        if name not in methods:
            raise ConfigError(
                f"method {name!r} is not in column {method_col!r}; its values are: "
                f"{', '.join(map(str, sorted(methods, key=str)))}"
            )
    if a == b:
        raise ConfigError(f"a = b = {a!r}; compare two different methods")
    data = frame[frame[method_col].isin([a, b])].dropna(subset=[value])
    rows = []
    for key, group in _groups(data, match):
        if paired_on:
            twice = group.duplicated([paired_on, method_col])
            if twice.any():
                raise ConfigError(
                    f"several {value!r} rows share {paired_on} = "
                    f"{group.loc[twice, paired_on].iloc[0]!r} for one method in group {key}; "
                    "add the column that tells them apart to `match`"
                )
            wide = group.pivot(index=paired_on, columns=method_col, values=value)
            wide = wide.reindex(columns=[a, b]).dropna()
            x, y = wide[a].to_numpy(), wide[b].to_numpy()
        else:
            x = group.loc[group[method_col] == a, value].to_numpy()
            y = group.loc[group[method_col] == b, value].to_numpy()
        if len(x) == 0 or len(y) == 0:
            continue
        difference, p = permutation_test(
            x, y, n_permutations, seed, alternative, paired=paired_on is not None
        )
        rows.append(
            {
                **key,
                "a": a,
                "b": b,
                "mean_a": float(np.mean(x)),
                "mean_b": float(np.mean(y)),
                "difference": difference,
                "n_a": len(x),
                "n_b": len(y),
                "p_value": p,
            }
        )
    columns = [*match, "a", "b", "mean_a", "mean_b", "difference", "n_a", "n_b", "p_value"]
    return pd.DataFrame(rows, columns=columns)
