"""The negative-share detector: the fraction of negative posts against its usual level.

The usual share is an exponentially weighted ratio of negative posts to posts
(half-life: a day), started from a weak prior. A bucket with ``k`` negatives out
of ``n`` posts is judged by a beta-binomial tail probability: the binomial part
respects small counts (1 negative out of 2 posts is not a crisis), the beta part
lets the share drift a little from hour to hour without alarming.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xwatch.detect.tails import betabinom_cdf, betabinom_sf
from xwatch.detect.volume import BAND_Z, DAY
from xwatch.model import Bucket, Direction, Measure, Signal


@dataclass(frozen=True, slots=True)
class ShareParams:
    halflife_seconds: float = DAY
    concentration: float = 100.0  # beta-binomial: how much the share drifts between buckets
    prior_share: float = 0.15
    prior_posts: float = 20.0
    warmup_posts: float = 200.0  # no alarm before this many posts have been learned
    warmup_seconds: float = DAY / 4


@dataclass(slots=True)
class NegativeShareDetector:
    width_seconds: int
    params: ShareParams = ShareParams()
    negatives: float = 0.0  # exponentially weighted
    posts: float = 0.0
    seen_posts: int = 0
    first_start: float | None = None
    measure: Measure = Measure.NEGATIVE_SHARE

    @property
    def usual_share(self) -> float:
        p = self.params
        return (self.negatives + p.prior_share * p.prior_posts) / (self.posts + p.prior_posts)

    def _band(self, share: float, n: int) -> tuple[float, float]:
        n = max(n, 1)
        c = self.params.concentration
        sd = math.sqrt(share * (1 - share) / n * (1 + (n - 1) / (c + 1)))
        return max(0.0, share - BAND_Z * sd), min(1.0, share + BAND_Z * sd)

    def score_one(self, bucket: Bucket) -> Signal:
        n, k = bucket.count, bucket.negative
        usual = self.usual_share
        observed = k / n if n else 0.0
        low, high = self._band(usual, n)
        direction: Direction = "up"
        if n == 0:
            tail = 1.0
        elif observed >= usual:
            tail = betabinom_sf(k, n, usual, self.params.concentration)
        else:
            direction = "down"
            tail = betabinom_cdf(k, n, usual, self.params.concentration)
        warming_up = self.seen_posts < self.params.warmup_posts or (
            self.first_start is None
            or bucket.start.timestamp() - self.first_start < self.params.warmup_seconds
        )
        return Signal(
            series=bucket.series,
            measure=self.measure,
            start=bucket.start,
            end=bucket.end,
            observed=observed,
            expected=usual,
            low=low,
            high=high,
            likelihood=min(1.0, max(0.0, 1.0 - tail)),
            direction=direction,
            surprise=Signal.surprise_of(tail),
            warming_up=warming_up,
        )

    def learn_one(self, bucket: Bucket) -> None:
        if self.first_start is None:
            self.first_start = bucket.start.timestamp()
        n, k = bucket.count, float(bucket.negative)
        if n and self.seen_posts >= self.params.prior_posts:
            # robust: an outlying share is learned as if it sat on the band's edge
            low, high = self._band(self.usual_share, n)
            k = min(max(k, low * n), high * n)
        decay = 0.5 ** (self.width_seconds / self.params.halflife_seconds)
        self.negatives = self.negatives * decay + k
        self.posts = self.posts * decay + n
        self.seen_posts += n
