"""Tail probabilities of count models, as fast scalar functions.

Plain z-scores lie about small counts (2 → 6 is not 2,000 → 6,000), so xwatch
judges counts by the tail probability of a count distribution:

* volume:   negative binomial with mean ``mu`` and dispersion ``alpha``
            (variance ``mu + alpha * mu**2``; ``alpha = 0`` is Poisson);
* share:    beta-binomial of ``k`` negatives in ``n`` posts around a usual share
            ``p`` with concentration ``c`` (larger ``c``: less drift in the share).

The functions use scipy's regularized incomplete beta/gamma ufuncs directly,
which are exact and a few microseconds per call.

``OnsetTail`` is the other tail a detector needs: that of its own series' alarms. A
model's tail probability is exact only if the series follows the model; real feeds
are heavier-tailed than a negative binomial, some far more than others, so it keeps
count of how rare each size of onset has been in the series itself (see its docstring).
"""

from __future__ import annotations

import bisect
import functools
import math
import operator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.special import betainc, betaln, gammainc, gammaincc, gammaincinv

_MIN_ALPHA = 1e-6


def larger(a: float, b: float) -> float:
    """``max(a, b)``, the same to the bit (``a`` unless ``b > a``: of equals, the first,
    so ``larger(-0.0, 0.0)`` is ``-0.0`` as ``max``'s is). The detectors call it at every
    bucket, where the builtin's call costs more than the comparison."""
    return b if b > a else a


def smaller(a: float, b: float) -> float:
    """``min(a, b)``, the same to the bit (``a`` unless ``b < a``), as ``larger``."""
    return b if b < a else a


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
    # Sum the side of k away from the mean (the smaller one, and no cancellation).
    if k > n * a / (a + b):
        return min(1.0, _betabinom_sum(k, 1, n, a, b))
    return max(0.0, 1.0 - _betabinom_sum(k - 1, -1, n, a, b))


def betabinom_mid_p(k: int, n: int, p: float, concentration: float) -> tuple[float, float]:
    """The mid-p tails (up, down) of ``k`` (0..n) for K ~ BetaBinomial(n, p * c, (1 - p) *
    c): ``P(K > k) + P(K = k) / 2`` and ``P(K < k) + P(K = k) / 2``, which add up to 1."""
    a = max(p, 1e-9) * concentration
    b = max(1.0 - p, 1e-9) * concentration
    # Sum the side of k away from the mean (the smaller one, and no cancellation).
    if k > n * a / (a + b):
        up = min(1.0, _betabinom_sum(k, 1, n, a, b, first_weight=0.5))
        return up, max(0.0, 1.0 - up)
    down = min(1.0, _betabinom_sum(k, -1, n, a, b, first_weight=0.5))
    return max(0.0, 1.0 - down), down


_NEGLIGIBLE = 1e-17  # a term this small against the sum so far changes no double


def _betabinom_sum(
    first: int, step: int, n: int, a: float, b: float, first_weight: float = 1.0
) -> float:
    """The pmf summed from ``first`` outwards (``step`` +1: up to n; -1: down to 0), the
    first term times ``first_weight`` (a half: a mid-p tail).

    One pmf in closed form, the others by the ratio of consecutive terms,
    ``pmf(j + 1) / pmf(j) = (n - j) (j + a) / ((j + 1) (n - j - 1 + b))``; the sum
    stops once the terms shrink below ``_NEGLIGIBLE`` of it (or all are 0: a first term
    that underflows, far in the tail, summed to the end of the range), about nine
    standard deviations from ``first`` when it lies past the mean (the pmf is unimodal
    or monotone there: the concentration is at least 10). One log-gamma call, then a
    term per count within those deviations: the deviation grows with the bucket (as
    ``n / sqrt(concentration)`` once ``n`` passes the concentration), so a bucket of
    50 posts costs about 12 µs here, 5,000 posts 0.4 ms, 50,000 posts 3 ms.
    """
    term = _betabinom_pmf(first, n, a, b)
    total = first_weight * term
    j = first
    while 0 <= j + step <= n:
        if step > 0:
            ratio = (n - j) * (j + a) / ((j + 1) * (n - j - 1 + b))
        else:
            ratio = j * (n - j + b) / ((n - j + 1) * (j - 1 + a))
        term *= ratio
        j += step
        total += term
        if ratio < 1.0 and term <= _NEGLIGIBLE * total:
            break
    return total


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
    low, high = gammaincinv(shape, _band_quantiles(coverage)).tolist()  # one ufunc call
    return low * scale, high * scale


@functools.lru_cache(maxsize=8)
def _band_quantiles(coverage: float) -> npt.NDArray[np.float64]:
    """The quantiles of a central band: (1 - coverage) / 2 and its complement."""
    tail = (1.0 - coverage) / 2.0
    quantiles = np.array([tail, 1.0 - tail])
    quantiles.flags.writeable = False  # shared by every call
    return quantiles


ONSET_EDGES: tuple[float, ...] = (0.0, *(0.05 * 1.1**i for i in range(58)))
"""Where ``OnsetTail`` counts onsets, in surprise (-log10 of a tail): every 10 % from
0.05 to 11.5 (a tail of 3e-12, beyond the strictest rule), so its threshold and its
counts are within 10 % of the exact ones; above the last edge the tail's exponential
takes over, as it does above the threshold."""
ONSET_TAIL_QUANTILE = 0.8  # onsets above this quantile of the series' own are its tail
ONSET_PRIOR_EXCESSES = 5.0  # the tail's scale starts from the model's, worth this many onsets
LN10 = math.log(10)
NOMINAL_EXCESS = 1.0 / LN10  # mean excess of a calibrated -log10 tail: Exp(1) / ln 10
RESCALE_WEIGHT = 1e100  # ``OnsetTail`` rescales its counts when its weight reaches this


@dataclass(slots=True)
class OnsetTail:
    """How rare an onset of a given size has been in one series: a peaks-over-threshold
    estimate, as SPOT does for streams (Siffer et al., KDD 2017), in fixed memory.

    An onset is what a bucket's surprise adds to the episode it belongs to (the first
    bucket of a burst: its whole surprise; the next ones: what they add), so an episode
    counts once however many buckets it lasts: its onsets are the series' own alarms,
    declustered.

    Below the tail's threshold (the highest of ``ONSET_EDGES`` with at least
    ``1 - ONSET_TAIL_QUANTILE`` of the onsets at or above it) the rate is empirical: the
    onsets at least as large, plus this one, per bucket seen plus one (a conformal
    p-value), interpolated log-linearly between the edges. Above it, where the series
    has too few onsets to count, the excesses are taken as exponential (the generalised
    Pareto with shape 0: the surprise of a calibrated model, ``-log10`` of a uniform
    tail, is exponential above any threshold, with mean excess ``NOMINAL_EXCESS``),
    their mean learned from the series and started from the nominal one. The result is
    ``-log10`` of the rate per bucket, the scale of the model's surprise: on a series the
    model fits, the rate is no larger than the model's (an onset of ``s`` needs a
    surprise of at least ``s``); on a heavier-tailed one, it can be far larger.

    The state is two lists the size of ``ONSET_EDGES`` (how many onsets reached each
    edge, and by how much in all), whatever the length of the stream.

    The past fades: ``learn(onset, keep)`` leaves ``keep`` of every count before it (a
    half-life), so a series that was bursty last quarter and is calm now is judged by
    what it does now, and the other way round. The counts are kept in units of the
    newest bucket's ``weight`` (each bucket weighs ``1 / keep`` times the one before it,
    and the counts divided by ``weight`` are the faded ones): fading costs one division
    per bucket, not one per count. Every ``+ 1`` of a conformal count is ``+ weight``.

    ``quantile`` sets the threshold: ``ONSET_TAIL_QUANTILE`` for declustered onsets (few,
    one per episode); a tail fed every bucket (most of them near 0) needs a higher one,
    or the exponential would be fitted to the bulk and not to the tail.
    """

    buckets: float = 0.0  # buckets judged (after the warm-up), in units of ``weight``
    quantile: float = ONSET_TAIL_QUANTILE  # onsets above this quantile are the tail
    reached: list[float] = field(default_factory=lambda: [0.0] * len(ONSET_EDGES))
    excess: list[float] = field(default_factory=lambda: [0.0] * len(ONSET_EDGES))
    # reached[i]: the onsets at or above ONSET_EDGES[i] (the first: every positive one);
    # excess[i]: the sum of what they exceed that edge by; both in units of ``weight``
    weight: float = 1.0  # what the newest bucket counts for (the counts over it: faded)

    def calibrated(self, surprise: float, prior_buckets: float = 0.0) -> float:
        """The smaller of a model's surprise and ``self.surprise`` of it. No onset has
        been commoner than the positive ones all together, so a surprise below their
        rarity keeps its value without the tail being looked at (most buckets' case)."""
        weight = self.weight
        if surprise <= math.log10((self.buckets + weight) / (self.reached[0] + weight)):
            return surprise
        return smaller(surprise, self.surprise(surprise, prior_buckets))

    def surprise(self, onset: float, prior_buckets: float = 0.0) -> float:
        """-log10 of the rate per bucket of onsets at least this large (0 for none).

        ``prior_buckets``: the model's word (a rate of ``10 ** -onset``) counts as that
        many buckets of the series' own past, so that a short past (just after the
        warm-up, an episode's first onset counted in it) cannot overrule it alone; the
        prior fades as the buckets judged outnumber it.
        """
        if onset <= 0.0:
            return 0.0
        own = self._own_surprise(onset)
        if prior_buckets <= 0.0:
            return own
        # -log10 of (prior x 10^-onset + buckets x 10^-own) / (prior + buckets), stably
        least = smaller(onset, own)
        buckets = self.buckets / self.weight
        mixed = prior_buckets * 10.0 ** (least - onset) + buckets * 10.0 ** (least - own)
        return least - math.log10(mixed / (prior_buckets + buckets))

    def _own_surprise(self, onset: float) -> float:
        first, threshold, mean_excess, rarity = self._tail()
        if onset <= threshold:
            reached, weight = self.reached, self.weight
            i = min(bisect.bisect_right(ONSET_EDGES, onset), first) - 1  # first >= 1 here
            low, high = ONSET_EDGES[i], ONSET_EDGES[i + 1]
            step = (onset - low) / (high - low)
            log_at_least = (1.0 - step) * math.log10(reached[i] + weight) + step * math.log10(
                reached[i + 1] + weight
            )
            return math.log10(self.buckets + weight) - log_at_least
        return rarity + (onset - threshold) / (mean_excess * LN10)

    def _tail(self) -> tuple[int, float, float, float]:
        """The tail's edge index, threshold, mean excess, and rarity at the threshold
        (the threshold: the highest edge that a tail's worth of the onsets reached)."""
        reached, weight = self.reached, self.weight
        needed = larger(weight, (1.0 - self.quantile) * reached[0])
        # the counts fall edge by edge: bisect them negated (``operator.neg``, in C: this
        # runs at most buckets)
        first = max(0, bisect.bisect_right(reached, -needed, key=operator.neg) - 1)
        tail = reached[first]
        prior = ONSET_PRIOR_EXCESSES * weight
        mean_excess = (self.excess[first] + prior * NOMINAL_EXCESS) / (tail + prior)
        rarity = math.log10((self.buckets + weight) / (tail + weight))
        return first, ONSET_EDGES[first], mean_excess, rarity

    def learn(self, onset: float, keep: float = 1.0) -> None:
        """Count one bucket judged, and its onset (0 or less: none), after leaving
        ``keep`` of every count before it (1: the past never fades)."""
        if keep != 1.0:
            self.weight /= keep
            if self.weight > RESCALE_WEIGHT:
                self._rescale()
        weight = self.weight
        self.buckets += weight
        if onset <= 0.0:
            return
        reached, excess, edges = self.reached, self.excess, ONSET_EDGES
        for i in range(bisect.bisect_right(edges, onset)):  # the edges it reached
            reached[i] += weight
            excess[i] += weight * (onset - edges[i])

    def _rescale(self) -> None:
        """Express the counts in units of a weight of 1 again (before they overflow)."""
        weight = self.weight
        self.buckets /= weight
        self.reached[:] = [count / weight for count in self.reached]
        self.excess[:] = [total / weight for total in self.excess]
        self.weight = 1.0
