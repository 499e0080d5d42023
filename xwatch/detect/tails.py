"""Tail probabilities of count models, as fast scalar functions.

Plain z-scores lie about small counts (2 → 6 is not 2,000 → 6,000), so xwatch
judges counts by the tail probability of a count distribution:

* volume:   negative binomial with mean ``mu`` and dispersion ``alpha``
            (variance ``mu + alpha * mu**2``; ``alpha = 0`` is Poisson);
* share:    beta-binomial of ``k`` negatives in ``n`` posts around a usual share
            ``p`` with concentration ``c`` (larger ``c``: less drift in the share).

The functions use scipy's regularized incomplete beta/gamma ufuncs directly,
which are exact and a few microseconds per call.
"""

from __future__ import annotations

import math

from scipy.special import betainc, betaln, gammainc, gammaincc, gammaincinv

_MIN_ALPHA = 1e-6


def nbinom_sf(x: float, mu: float, alpha: float) -> float:
    """P(X >= x) for X ~ NB(mean mu, dispersion alpha)."""
    if x <= 0:
        return 1.0
    k = math.ceil(x)
    if mu <= 0:
        return 0.0
    if alpha <= _MIN_ALPHA:
        return float(gammainc(k, mu))  # Poisson: P(X >= k) = P(k, mu), regularized lower gamma
    r = 1.0 / alpha
    p = r / (r + mu)
    return float(betainc(k, r, 1.0 - p))


def nbinom_cdf(x: float, mu: float, alpha: float) -> float:
    """P(X <= x) for X ~ NB(mean mu, dispersion alpha)."""
    if x < 0:
        return 0.0
    k = math.floor(x)
    if mu <= 0:
        return 1.0
    if k == 0:  # an empty bucket, the commonest of a quiet series: P(X = 0) in closed form
        if alpha <= _MIN_ALPHA:
            return math.exp(-mu)
        return math.exp(-math.log1p(alpha * mu) / alpha)
    if alpha <= _MIN_ALPHA:
        return float(gammaincc(k + 1, mu))  # Poisson: P(X <= k) = Q(k + 1, mu)
    r = 1.0 / alpha
    p = r / (r + mu)
    return float(betainc(r, k + 1, p))


def nbinom_pmf(x: int, mu: float, alpha: float) -> float:
    """P(X = x) for X ~ NB(mean mu, dispersion alpha), in closed form (for mid-p tails)."""
    if x < 0:
        return 0.0
    if mu <= 0:
        return 1.0 if x == 0 else 0.0
    if alpha <= _MIN_ALPHA:
        return math.exp(x * math.log(mu) - mu - math.lgamma(x + 1))
    r = 1.0 / alpha
    log_p = math.lgamma(x + r) - math.lgamma(r) - math.lgamma(x + 1)
    return math.exp(log_p + r * math.log(r / (r + mu)) + x * math.log(mu / (r + mu)))


def betabinom_sf(k: int, n: int, p: float, concentration: float) -> float:
    """P(K >= k) for K ~ BetaBinomial(n, p * c, (1 - p) * c)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    a = max(p, 1e-9) * concentration
    b = max(1.0 - p, 1e-9) * concentration
    # Sum the pmf over the shorter side of the distribution.
    if k > n / 2:
        return min(1.0, sum(_betabinom_pmf(j, n, a, b) for j in range(k, n + 1)))
    return max(0.0, 1.0 - sum(_betabinom_pmf(j, n, a, b) for j in range(k)))


def betabinom_cdf(k: int, n: int, p: float, concentration: float) -> float:
    """P(K <= k) for K ~ BetaBinomial(n, p * c, (1 - p) * c)."""
    return 1.0 - betabinom_sf(k + 1, n, p, concentration)


def _betabinom_pmf(j: int, n: int, a: float, b: float) -> float:
    log_choose = math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1)
    return math.exp(log_choose + float(betaln(j + a, n - j + b)) - float(betaln(a, b)))


def nbinom_band(mu: float, alpha: float, coverage: float = 0.99) -> tuple[float, float]:
    """The central ``coverage`` band of NB(mu, alpha), from a gamma with the same mean and
    variance: skewed like counts are, so its lower edge is not stuck at 0 (which a
    symmetric mean +/- z sd band would be for every mean below a few dozen)."""
    if mu <= 0:
        return 0.0, 0.0
    variance = mu + alpha * mu * mu
    shape, scale = mu * mu / variance, variance / mu
    tail = (1.0 - coverage) / 2.0
    return (
        float(gammaincinv(shape, tail)) * scale,
        float(gammaincinv(shape, 1.0 - tail)) * scale,
    )
