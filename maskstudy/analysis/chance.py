"""Exact chance baselines for mask comparisons: what independent uniformly random masks give.

Every mask statistic is read against these. A random mask keeping ``k`` of ``n`` weights is a
uniform draw among the C(n, k) subsets, so the intersection of two independent masks is
hypergeometric and the number of kept weights in a fixed group of ``g`` weights is too.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.signal import fftconvolve
from scipy.special import gammaln

from maskstudy.errors import ConfigError

# Hypergeometric sums run over mode ± (WINDOW_SDS·sd + WINDOW_PAD); log-concavity bounds the
# pmf mass left outside, and if that bound exceeds MISSING_MASS the whole support is used.
# Every statistic summed here lies in [0, 1], so truncation moves it by < MISSING_MASS.
WINDOW_SDS = 40.0
WINDOW_PAD = 40
MISSING_MASS = 1e-12


def check_counts(n: int, *kept: int) -> None:
    """Raise ConfigError unless ``n`` ≥ 1 and every kept count is an integer in [0, n]."""
    values = (n, *kept)
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in values):
        raise ConfigError(f"counts must be integers, got n = {n!r}, kept = {kept!r}")
    if n < 1:
        raise ConfigError(f"n = {n} weights: a mask needs at least one weight")
    for k in kept:
        if not 0 <= k <= n:
            raise ConfigError(
                f"kept count {k} is outside [0, n = {n}]; pass counts of kept weights"
            )


def intersection_pmf(n: int, k_a: int, k_b: int) -> tuple[np.ndarray, np.ndarray]:
    """Support and pmf of |A∩B| for independent uniform masks keeping ``k_a`` and ``k_b`` of ``n``.

    Built from the exact ratio pmf(x+1)/pmf(x) = (k_a−x)(k_b−x) / ((x+1)(n−k_a−k_b+x+1)),
    summed in log space from the window start and normalised (relative error ~1e-12, and fast
    for n ~ 10^7, unlike scipy's pmf for n ≲ 10^5). The support is cut to
    mode ± (40 sd + 40); because the pmf is log-concave the ratio at each edge bounds the
    dropped mass, and the whole support is used when that bound exceeds 1e-12.
    """
    check_counts(n, k_a, k_b)
    low, high = max(0, k_a + k_b - n), min(k_a, k_b)
    mode = min(max((k_a + 1) * (k_b + 1) // (n + 2), low), high)
    sd = math.sqrt(k_a * k_b * (n - k_a) * (n - k_b) / (n * n * max(n - 1, 1)))
    half = WINDOW_SDS * sd + WINDOW_PAD
    start, stop = max(low, math.floor(mode - half)), min(high, math.ceil(mode + half))
    x, pmf, dropped = _window(n, k_a, k_b, start, stop, low, high)
    if dropped > MISSING_MASS:
        x, pmf, _ = _window(n, k_a, k_b, low, high, low, high)
    return x, pmf


def _log_ratio(n: int, k_a: int, k_b: int, x: np.ndarray) -> np.ndarray:
    """log pmf(x+1) − log pmf(x) for low ≤ x < high."""
    x = x.astype(np.float64)
    return np.log(k_a - x) + np.log(k_b - x) - np.log(x + 1) - np.log(n - k_a - k_b + x + 1)


def _window(
    n: int, k_a: int, k_b: int, start: int, stop: int, low: int, high: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """(x, pmf normalised over [start, stop], bound on the mass outside it)."""
    x = np.arange(start, stop + 1)
    log_w = np.concatenate(([0.0], np.cumsum(_log_ratio(n, k_a, k_b, x[:-1]))))
    w = np.exp(log_w - log_w.max())
    dropped = 0.0
    for inside, r_log in (
        (w[-1], _log_ratio(n, k_a, k_b, np.array([stop]))[0] if stop < high else -np.inf),
        (w[0], -_log_ratio(n, k_a, k_b, np.array([start - 1]))[0] if start > low else -np.inf),
    ):
        r = math.exp(r_log)
        dropped += inside * r / (1 - r) if r < 1 else math.inf
    total = w.sum()
    return x, w / total, dropped / total


def jaccard_moments(n: int, k_a: int, k_b: int) -> tuple[float, float]:
    """Exact (mean, sd) of the kept-set Jaccard of two independent uniform random masks.

    J = X / (k_a + k_b − X) with X = |A∩B| ~ Hypergeometric(n, k_a, k_b); J = 1 when both
    masks keep nothing. For the Jaccard of pruned sets call it with n − k_a, n − k_b.
    """
    return stratified_jaccard_moments(((int(n), int(k_a), int(k_b)),))


@lru_cache(maxsize=4096)
def stratified_jaccard_moments(strata: tuple[tuple[int, int, int], ...]) -> tuple[float, float]:
    """(mean, sd) of the whole-mask Jaccard when each stratum (layer) ``(n, k_a, k_b)`` is drawn
    on its own: random masks with the same kept count in every layer as the observed ones.

    The intersection is then a sum of independent hypergeometrics, whose pmf is the convolution
    of the per-layer (truncated) pmfs. This is the null of layer-wise random pruning; pooling
    all weights into one hypergeometric instead underestimates chance overlap whenever layer
    densities differ.
    """
    if not strata:
        raise ConfigError("no strata given; pass one (n, k_a, k_b) per layer")
    offset, pmf = 0, np.ones(1)
    for n, k_a, k_b in strata:
        x, p = intersection_pmf(n, k_a, k_b)
        offset += int(x[0])
        pmf = fftconvolve(pmf, p) if min(len(pmf), len(p)) > 64 else np.convolve(pmf, p)
    x = offset + np.arange(len(pmf))
    pmf = np.clip(pmf, 0.0, None)  # FFT round-off can leave tiny negative values
    pmf /= pmf.sum()
    kept = sum(k_a + k_b for _, k_a, k_b in strata)
    union = kept - x
    j = np.divide(x, union, out=np.ones(len(x)), where=union > 0)
    mean = float(np.dot(pmf, j))
    var = float(np.dot(pmf, (j - mean) ** 2))
    return mean, math.sqrt(max(var, 0.0))


def expected_jaccard(n: int, k_a: int, k_b: int) -> float:
    """Exact E[J] of two independent uniform masks keeping ``k_a`` and ``k_b`` of ``n`` weights."""
    check_counts(n, k_a, k_b)
    return jaccard_moments(int(n), int(k_a), int(k_b))[0]


def jaccard_std(n: int, k_a: int, k_b: int) -> float:
    """Standard deviation of J under the same chance model as :func:`expected_jaccard`."""
    check_counts(n, k_a, k_b)
    return jaccard_moments(int(n), int(k_a), int(k_b))[1]


def approx_expected_jaccard(d_a: float, d_b: float) -> float:
    """Large-n approximation d_a·d_b / (d_a + d_b − d_a·d_b) of E[J] (d/(2−d) at equal density)."""
    union = d_a + d_b - d_a * d_b
    return d_a * d_b / union if union > 0 else 1.0


def expected_hamming(n: int, k_a: int, k_b: int, normalize: bool = True) -> float:
    """E[H] = k_a + k_b − 2·k_a·k_b/n for independent uniform masks (divided by n if ``normalize``)."""
    check_counts(n, k_a, k_b)
    expected = k_a + k_b - 2 * k_a * k_b / n
    return expected / n if normalize else expected


def hamming_std(n: int, k_a: int, k_b: int, normalize: bool = True) -> float:
    """sd of H = k_a + k_b − 2X: twice the hypergeometric sd of X (divided by n if ``normalize``)."""
    check_counts(n, k_a, k_b)
    sd = 2 * math.sqrt(k_a * k_b * (n - k_a) * (n - k_b) / (n * n * max(n - 1, 1)))
    return sd / n if normalize else sd


def lift(observed: float, expected: float) -> float:
    """observed / expected; nan when the expectation is 0 (then chance allows only 0 too)."""
    return observed / expected if expected != 0 else math.nan


def zscore(observed: float, expected: float, sd: float) -> float:
    """(observed − expected) / sd; nan when sd = 0 (chance is then deterministic)."""
    return (observed - expected) / sd if sd > 0 else math.nan


def log_prob_all_pruned(n: int, k: int, g: int | np.ndarray) -> np.ndarray:
    """log P(a fixed group of ``g`` weights is entirely pruned) = log C(n−g, k) − log C(n, k).

    ``k`` of ``n`` weights are kept uniformly at random; −inf where g > n − k (impossible).
    Computed with gammaln; the absolute error of the log is ~1e-16·log(n!) (≈ 2e-8 at n = 10^7).
    """
    check_counts(n, k)
    g = np.asarray(g, dtype=np.int64)
    if np.any((g < 0) | (g > n)):
        raise ConfigError(f"group sizes {g} must lie in [0, n = {n}]")
    free = n - g - k
    with np.errstate(invalid="ignore"):
        log_p = gammaln(n - g + 1) + gammaln(n - k + 1) - gammaln(np.maximum(free, 0) + 1)
        log_p = log_p - gammaln(n + 1)
    return np.where(free >= 0, np.minimum(log_p, 0.0), -np.inf)


def prob_all_pruned(n: int, k: int, g: int | np.ndarray) -> np.ndarray:
    """P(a fixed group of ``g`` weights is entirely pruned) = C(n−g, k) / C(n, k)."""
    return np.exp(log_prob_all_pruned(n, k, g))


def alive_count_pmf(n: int, k: int, g: int) -> np.ndarray:
    """P(exactly a of a fixed group of ``g`` weights are kept), a = 0..g: Hypergeometric(n, k, g).

    Values beyond the window of :func:`intersection_pmf` (mass < 1e-12) are 0.
    """
    x, pmf = intersection_pmf(n, k, g)
    out = np.zeros(g + 1)
    out[x] = pmf
    return out
