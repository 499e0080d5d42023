"""The count detector: mentions (or negative mentions) per bucket against a rhythmic baseline.

The expected count of a bucket is ``level x daily[hour] x weekly[weekday]``:

* ``level``  the recent mean rate, deseasonalised (half-life: hours);
* ``daily``  a factor per UTC hour of day, learned online (half-life: a week of that hour);
* ``weekly`` a factor per day of week (half-life: a month of that weekday).

A bucket is judged by the tail probability of a negative binomial around that
expectation, whose dispersion is learned online too, so "2 → 6" and
"2,000 → 6,000" get the weight they deserve. The likelihood is ``1 - tail``:
under normal behaviour, a likelihood of at least 0.999 happens in about one
bucket in a thousand.

Learning is robust: a bucket outside the expected band is learned as if it sat on
the band's edge, so a crisis does not teach the baseline that crises are normal
(while a lasting change of level is still followed, step by step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from xwatch.detect.tails import nbinom_band, nbinom_cdf, nbinom_sf
from xwatch.model import Bucket, Direction, Measure, Signal

DAY = 86400.0
WEEK = 7 * DAY
BAND_Z = 2.576  # the expected band is the central 99 %
MIN_FACTOR = 0.05  # a seasonal factor never goes below this (a quiet hour is not a dead one)


@dataclass(frozen=True, slots=True)
class CountParams:
    """Defaults are stated in time, not in buckets, so they hold at every scale."""

    level_halflife_seconds: float = 6 * 3600.0
    daily_halflife_days: float = 7.0
    weekly_halflife_weeks: float = 4.0
    dispersion_halflife_seconds: float = 2 * DAY
    initial_dispersion: float = 0.05
    warmup_seconds: float = DAY  # no alarm before a day of rhythm has been seen
    adopt_after_seconds: float = 3 * 3600.0  # a change that lasts this long is the new normal
    factor_evidence_posts: float = (
        30.0  # a seasonal factor resting on this many posts: half-trusted
    )


def _alpha(halflife_in_steps: float) -> float:
    """EWMA weight of a new value for a given half-life in update steps."""
    return float(1.0 - 0.5 ** (1.0 / max(halflife_in_steps, 1.0)))


@dataclass(slots=True)
class CountDetector:
    """Negative-binomial detector for one count series (volume or negative volume)."""

    measure: Measure
    width_seconds: int
    params: CountParams = CountParams()
    level: float = 0.0
    dispersion: float = 0.0
    daily: list[float] = field(default_factory=lambda: [1.0] * 24)
    weekly: list[float] = field(default_factory=lambda: [1.0] * 7)
    daily_seen: list[int] = field(default_factory=lambda: [0] * 24)
    weekly_seen: list[int] = field(default_factory=lambda: [0] * 7)
    learned: int = 0
    first_start: float | None = None
    last_hour: int = -1
    outlier_side: int = 0  # -1, 0, 1: where the last value fell against the band
    outlier_run: int = 0  # how many buckets in a row fell on that side

    def __post_init__(self) -> None:
        if self.dispersion == 0.0:
            self.dispersion = self.params.initial_dispersion

    # -- the model ---------------------------------------------------------------

    def _slots(self, start: datetime) -> tuple[int, int]:
        hour = start.hour if self.width_seconds < DAY else 0
        return hour, start.weekday()

    def expected(self, start: datetime) -> float:
        hour, weekday = self._slots(start)
        daily = self._trusted(self.daily[hour], self.daily_seen[hour])
        weekly = self._trusted(self.weekly[weekday], self.weekly_seen[weekday])
        return max(self.level * daily * weekly, 1e-3)

    def _trusted(self, factor: float, seen: int) -> float:
        """A seasonal factor shrunk towards 1 by how many posts it rests on.

        A factor learned from a handful of posts is mostly noise (Poisson noise of
        ``1/sqrt(posts)``); it counts fully only once it rests on many more than
        ``params.factor_evidence_posts`` posts.
        """
        posts = seen * self.level  # buckets learned in this slot x posts per bucket
        weight = posts / (posts + self.params.factor_evidence_posts)
        return 1.0 + (factor - 1.0) * weight

    def _value(self, bucket: Bucket) -> int:
        return bucket.negative if self.measure is Measure.NEGATIVE_VOLUME else bucket.count

    def _warming_up(self, start: datetime) -> bool:
        if self.first_start is None:
            return True
        return start.timestamp() - self.first_start < self.params.warmup_seconds

    def _robust(self, value: float, mu: float, start: datetime) -> tuple[float, float]:
        """What to learn from a value: (for the level, for the rhythm).

        An outlier counts as if it sat on the band's edge, so a crisis does not teach
        the baseline that crises are normal. Not while warming up (there is no band to
        trust yet). Once the values have stayed on the same side outside the band for
        ``adopt_after_seconds``, the level takes them as they are (a lasting change is
        the new normal), while the hour-of-day and weekday factors still learn the
        clipped value: a long crisis must not become tomorrow's expected rhythm.
        """
        low, high = nbinom_band(mu, self.dispersion)
        side = 1 if value > high else -1 if value < low else 0
        if side == 0 or side != self.outlier_side:
            self.outlier_run = 0
        self.outlier_side = side
        if side == 0 or self._warming_up(start):
            return value, value
        self.outlier_run += 1
        clipped = min(max(value, low), high)
        if self.outlier_run * self.width_seconds > self.params.adopt_after_seconds:
            return value, clipped
        return clipped, clipped

    # -- river's contract ----------------------------------------------------------

    def score_one(self, bucket: Bucket) -> Signal:
        observed = self._value(bucket)
        mu = self.expected(bucket.start)
        low, high = nbinom_band(mu, self.dispersion)
        if observed >= mu:
            direction: Direction = "up"
            tail = nbinom_sf(observed, mu, self.dispersion)
        else:
            direction = "down"
            tail = nbinom_cdf(observed, mu, self.dispersion)
        return Signal(
            series=bucket.series,
            measure=self.measure,
            start=bucket.start,
            end=bucket.end,
            observed=float(observed),
            expected=mu,
            low=low,
            high=high,
            likelihood=min(1.0, max(0.0, 1.0 - tail)),
            direction=direction,
            surprise=Signal.surprise_of(tail),
            warming_up=self._warming_up(bucket.start) or self.learned == 0,
        )

    def learn_one(self, bucket: Bucket) -> None:
        if self.first_start is None:
            self.first_start = bucket.start.timestamp()
        hour, weekday = self._slots(bucket.start)
        width = float(self.width_seconds)
        p = self.params
        mu = self.expected(bucket.start)
        value, rhythm_value = self._robust(float(self._value(bucket)), mu, bucket.start)

        season = self.daily[hour] * self.weekly[weekday]
        deseasonalised = value / season
        self.learned += 1
        # Fast start: plain averages until the half-life's own weight takes over.
        a_level = max(_alpha(p.level_halflife_seconds / width), 1.0 / self.learned)
        if self.learned > 1 and mu >= 1.0:
            raw = ((rhythm_value - mu) ** 2 - mu) / (mu * mu)
            a_disp = max(_alpha(p.dispersion_halflife_seconds / width), 1.0 / self.learned)
            self.dispersion = min(
                1.0, max(0.001, self.dispersion + a_disp * (raw - self.dispersion))
            )
        level_before = self.level
        self.level += a_level * (deseasonalised - self.level)
        if self.level <= 0 or level_before <= 0:
            return

        if self.width_seconds < DAY:
            per_day = DAY / width / 24.0  # buckets of one hour slot per day
            self.daily_seen[hour] += 1
            # the starting factor of 1 counts as one observation (a first zero is no rhythm)
            a_daily = max(_alpha(per_day * p.daily_halflife_days), 1 / (self.daily_seen[hour] + 1))
            target = rhythm_value / (level_before * self.weekly[weekday])
            self.daily[hour] = max(
                MIN_FACTOR, self.daily[hour] + a_daily * (target - self.daily[hour])
            )
        # Weekday factors only move once a whole week has been seen.
        if bucket.start.timestamp() - self.first_start >= WEEK:
            self.weekly_seen[weekday] += 1
            per_week = DAY / width  # buckets of one weekday per week
            a_weekly = max(
                _alpha(per_week * p.weekly_halflife_weeks), 1 / (self.weekly_seen[weekday] + 1)
            )
            target = rhythm_value / (level_before * self.daily[hour])
            self.weekly[weekday] = max(
                MIN_FACTOR, self.weekly[weekday] + a_weekly * (target - self.weekly[weekday])
            )
        # Once every slot has been seen, keep the factors averaging 1 (at each new hour),
        # so that ``level`` stays the mean rate.
        if hour != self.last_hour:
            self.last_hour = hour
            if min(self.daily_seen) > 0:
                self.level *= _normalise(self.daily)
            if min(self.weekly_seen) > 0:
                self.level *= _normalise(self.weekly)


def _normalise(factors: list[float]) -> float:
    """Scale seasonal factors to average 1; return the scale, for the level to absorb."""
    mean = math.fsum(factors) / len(factors)
    if mean <= 0:
        return 1.0
    for i, value in enumerate(factors):
        factors[i] = value / mean
    return mean
