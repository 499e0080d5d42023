"""The negative-share detector: the fraction of negative posts against its usual level.

The usual share is an exponentially weighted ratio of negative posts to posts
(half-life: a day), started from a weak prior, times a factor for the (local) hour of day:
the share has a rhythm too (who posts at 3 a.m. is not who posts at noon; complaints
pile up while a support desk is closed). Each hour's factor is its negatives over the
last weeks (half-life: a week of that hour) over the negatives it would have had at a
factor of 1 (``hour_negatives`` over ``hour_expected``: each bucket's posts times the
usual share of its day when it was learned), against the same ratio over the whole day,
trusted as far as it stands out from its binomial noise (empirical Bayes,
``shrunk_factors``), so that an hour seen on a few posts keeps the day's share; and
times a factor for the day of the week: its share over whole local days (half-life: a
month of that weekday), once each has ended, against the share of all weekdays, shrunk
the same way: a share that runs higher at weekends is not news every Saturday. Against
the usual share of their time, the hours keep their factors when the share moves (over
the hours' posts alone, every hour not yet seen at a new level read as a quiet one, 0.7
of it, for a day); the weekdays are against each other, or a weekend taken for a
lasting change would be learned as the normal (``_learn_day``).

A bucket with ``k`` negatives out of ``n`` posts is judged by a beta-binomial tail
probability: the binomial part respects small counts (1 negative out of 2 posts is not a
crisis), the beta part lets the share drift from bucket to bucket without alarming. The
tail is the mid-p one (``P(K > k)`` and half of ``P(K = k)``), as the volume detector's:
the whole of ``P(K >= k)`` would make a discrete test conservative, most at small
buckets, where "0.99" would be met in about half a bucket in a hundred of a steady share
instead of one. How much it drifts (the beta's concentration ``c``) is learned online
from the buckets themselves: under a beta-binomial, a bucket's squared Pearson residual
has mean ``1 + (n - 1)/(c + 1)``, so the sum of ``r**2 - 1`` over the sum of ``n - 1``
estimates ``1/(c + 1)`` (the pooled moment estimator: each bucket weighs by its posts,
so that the many small buckets of a quiet hour, whose residuals are mostly noise, do not
swamp it). A steady share earns a high concentration (and a sharp test); a share that
wanders earns a low one.

A one-bucket test misses a share that doubles and stays doubled while the buckets are
small, so the detector also keeps a CUSUM of the beta-binomial log-likelihood ratio of
a share ``shift_factor`` times the usual one (at most halfway to 1): its exponential has
expectation 1 under the usual share, so ``exp(-cusum)`` is a valid tail (Ville's
inequality). The two tests share the false-alarm budget (weighted Bonferroni, as the
volume detector does): the bucket's tail is the smaller of ``tail / (1 - cusum_share)``
and ``exp(-cusum) / cusum_share``. When the CUSUM decides, the signal carries its run
(``model.Run``: the buckets since the CUSUM last stood at zero, their negative posts
against the usual share's expectation): a bucket of 30 % when 12 % is usual explains
little alone, "for the last 6 buckets, 40 of 120 posts were negative, 14 expected"
explains the alert.

A change that lasts is the new normal, as the volume detector's is: a second CUSUM looks
for the share halving (it only adopts: a drop in complaints is not an alarm), and once
either CUSUM has held its change (at least at its own test's ``adopt_likelihood``) for
``adopt_after_seconds``, the usual share becomes the change's (its buckets' negatives,
each over its season as the usual share learns them, over their posts, from where its
CUSUM last stood at 0) and both CUSUMs start again. A lasting rise alerts once, for
about those 3 hours, instead of for the day the usual share took to learn it (clipped at
the band's edge, as a wave must be). The share before an adopted change is remembered
for ``shift_memory_seconds``: a return to it (the end of a crisis long enough to be
adopted) is adopted as soon as a CUSUM holds it at its cap, so that the calm after the
crisis, and a new wave in it, are judged against the normal, not the crisis's share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from xwatch.detect.calendar import UTC_ZONE, day_number, local
from xwatch.detect.memo import Memo
from xwatch.detect.runs import RunTracker
from xwatch.detect.tails import betabinom_mid_p, larger, smaller
from xwatch.detect.volume import BAND_Z, DAY, MIN_FACTOR
from xwatch.model import Bucket, Direction, Measure, Run, Signal

MAX_SHARE = 0.99  # the usual share never reaches 1 (a share, not a certainty)
DRIFT_BAND_Z = 4.0  # the drift learns buckets within this many sd (1 in 16,000 beyond)


@dataclass(frozen=True, slots=True)
class ShareParams:
    halflife_seconds: float = DAY
    concentration: float = 100.0  # prior beta-binomial concentration (drift between buckets)
    concentration_prior_pairs: float = 50.0  # the prior counts as buckets of this many posts,
    # less one each (the weight of a bucket in the drift's estimate)
    concentration_range: tuple[float, float] = (10.0, 10_000.0)
    prior_share: float = 0.15
    prior_posts: float = 20.0
    warmup_posts: float = 200.0  # no alarm before this many posts have been learned
    warmup_seconds: float = DAY  # a day: the hours of day have each been seen once
    shift_factor: float = 2.0  # the sustained change the CUSUM looks for: the share doubles
    cusum_share: float = 0.2  # of the false-alarm budget, for the CUSUM (Bonferroni)
    cusum_cap: float = 20.0  # nats: the CUSUM saturates here (as the volume one), so it drains
    adopt_after_seconds: float = 3 * 3600.0  # a change held this long is the new normal
    adopt_likelihood: float = 0.99999  # a CUSUM holds its change while its own test says
    # at least this (the strictest shipped rule's; as the volume detector's)
    shift_memory_seconds: float = DAY  # after an adopted change, a return to the share
    # before it is adopted as soon as a CUSUM holds it, for this long
    hour_halflife_days: float = 7.0  # an hour of day's share: half-life in days of that hour
    weekday_halflife_weeks: float = 4.0  # a weekday's share: half-life in weeks


class Scored(NamedTuple):
    """What ``score_one`` worked out on ``bucket``, that ``learn_one`` needs again."""

    bucket: Bucket
    season: float  # ``_season``
    usual: float  # ``usual_at``
    concentration: float  # ``concentration``
    llr: float | None  # ``_llr`` (None: not worked out, while warming up)


@dataclass(slots=True)
class NegativeShareDetector(Memo[Scored]):
    width_seconds: int
    params: ShareParams = ShareParams()
    negatives: float = 0.0  # exponentially weighted, each over its hour's factor
    posts: float = 0.0
    # per (local) hour of day: negatives, posts and the negatives at a factor of 1 (posts
    # times the usual share of their day), exponentially weighted over that hour's
    # buckets, and the factors they give (``_learn_hour``)
    hour_negatives: list[float] = field(default_factory=lambda: [0.0] * 24)
    hour_posts: list[float] = field(default_factory=lambda: [0.0] * 24)
    hour_expected: list[float] = field(default_factory=lambda: [0.0] * 24)
    hour_factors: list[float] = field(default_factory=lambda: [1.0] * 24)
    last_hour: int = -1
    # per day of the week (Monday first), the same over whole days: each day is summed
    # (``today_*``) and, once it has ended, learned by its weekday
    weekday_negatives: list[float] = field(default_factory=lambda: [0.0] * 7)
    weekday_posts: list[float] = field(default_factory=lambda: [0.0] * 7)
    weekday_factors: list[float] = field(default_factory=lambda: [1.0] * 7)
    today: int = -1  # the local day being summed, in days since the epoch
    today_negatives: float = 0.0
    today_posts: float = 0.0
    seen_posts: int = 0
    first_start: float | None = None
    # the drift's estimate, 1/(c + 1): exponentially weighted sums of the buckets' squared
    # Pearson residuals less 1, and of their posts less 1 (``drift``)
    drift_excess: float = 0.0
    drift_pairs: float = 0.0
    cusum: float = 0.0  # nats of evidence for a share shift_factor x the usual one
    cusum_down: float = 0.0  # ... for 1 / shift_factor x (only adopted, never an alarm)
    # each CUSUM's change: the negatives (each over its season) and posts of the buckets
    # since it last stood at 0 (the share it has seen), and how many buckets in a row it
    # has held the change (``_held_nats``)
    rise_negatives: float = 0.0
    rise_posts: float = 0.0
    held_up: int = 0
    fall_negatives: float = 0.0
    fall_posts: float = 0.0
    held_down: int = 0
    shift_from: float = 0.0  # the usual share before the last adopted change (0: none)
    shift_at: float = 0.0  # when that change was adopted, epoch seconds
    # the CUSUM's run: negatives against the usual share's expectation, of how many posts
    run: RunTracker = field(default_factory=RunTracker)
    measure: Measure = Measure.NEGATIVE_SHARE
    timezone: str = UTC_ZONE  # whose hours and days the rhythm is (``calendar``): the brand's

    @property
    def drift(self) -> float:
        """The estimate of 1/(c + 1), the prior's counted in. Not floored at 0: the sum
        of a steady share's residuals is 0 on average and may stand below it."""
        p = self.params
        prior = p.concentration_prior_pairs
        return (self.drift_excess + prior / (p.concentration + 1.0)) / (self.drift_pairs + prior)

    @property
    def concentration(self) -> float:
        low, high = self.params.concentration_range
        return smaller(high, larger(low, 1.0 / larger(self.drift, 1e-9) - 1.0))

    @property
    def usual_share(self) -> float:
        """The day's usual share, whatever the hour (``usual_at`` gives the hour's)."""
        p = self.params
        return (self.negatives + p.prior_share * p.prior_posts) / (self.posts + p.prior_posts)

    def __post_init__(self) -> None:
        self._set_memo(None)  # score_one's work on its bucket, for learn_one

    def usual_at(self, bucket: Bucket, season: float | None = None) -> float:
        """The usual share at the bucket's hour of day and day of the week (below 1: a
        share, not a certainty). ``season``: the bucket's ``_season``, if known."""
        if season is None:
            season = self._season(bucket)
        return smaller(self.usual_share * season, MAX_SHARE)

    def _season(self, bucket: Bucket) -> float:
        at = local(bucket.start, self.timezone)
        return self.hour_factors[self._hour(at)] * self.weekday_factors[at.weekday()]

    def _hour(self, at: datetime) -> int:
        """The local hour of day of a bucket starting at ``at`` (local)."""
        return at.hour if self.width_seconds < DAY else 0

    def _band(
        self, share: float, n: int, z: float = BAND_Z, concentration: float | None = None
    ) -> tuple[float, float]:
        """The ``z`` band of a share of ``n`` posts (``concentration``: if known)."""
        n = max(n, 1)
        c = self.concentration if concentration is None else concentration
        sd = math.sqrt(share * (1 - share) / n * (1 + (n - 1) / (c + 1)))
        return larger(0.0, share - z * sd), smaller(1.0, share + z * sd)

    def _clipped(self, k: float, n: int, share: float, z: float, concentration: float) -> float:
        """``k`` negatives of ``n`` posts, moved to the edge of the ``z`` band if outside it."""
        low, high = self._band(share, n, z, concentration)
        return smaller(larger(k, low * n), high * n)

    def score_one(self, bucket: Bucket) -> Signal:
        n, k = bucket.count, bucket.negative
        concentration = self.concentration
        season = self._season(bucket)
        usual = self.usual_at(bucket, season)
        observed = k / n if n else 0.0
        low, high = self._band(usual, n, BAND_Z, concentration)
        direction: Direction = "up"
        if n == 0:
            tail = 1.0
        else:
            up, down = betabinom_mid_p(k, n, usual, concentration)
            if observed >= usual:
                tail = up
            else:
                direction, tail = "down", down
        warming_up = self._warming_up(bucket)
        p = self.params
        llr = None if warming_up else self._llr(k, n, usual, concentration)
        self._set_memo(Scored(bucket, season, usual, concentration, llr))
        cusum = 0.0 if llr is None else self.cusum + llr
        cusum = smaller(larger(cusum, 0.0), p.cusum_cap)
        sustained = math.exp(-cusum) / p.cusum_share
        run = None
        if sustained < 1.0 and (direction == "down" or sustained < tail / (1.0 - p.cusum_share)):
            run = self._run_through(bucket, usual)  # the CUSUM decides
        if direction == "up":
            tail = smaller(smaller(1.0, tail / (1.0 - p.cusum_share)), sustained)
        elif sustained < 1.0:  # a share below the usual one, but in a run of high ones
            direction, tail = "up", sustained
        return Signal(
            series=bucket.series,
            measure=self.measure,
            start=bucket.start,
            end=bucket.end,
            observed=observed,
            expected=usual,
            low=low,
            high=high,
            likelihood=smaller(1.0, larger(0.0, 1.0 - tail)),
            direction=direction,
            surprise=Signal.surprise_of(tail),
            warming_up=warming_up,
            run=run,
        )

    def _run_through(self, bucket: Bucket, usual: float) -> Run:
        """The CUSUM's run through ``bucket`` (it starts there if the CUSUM is at 0)."""
        n = bucket.count
        return self.run.through(self.cusum > 0.0, bucket.start, bucket.negative, n * usual, n)

    def _warming_up(self, bucket: Bucket) -> bool:
        return self._warming_up_at(bucket.start.timestamp())

    def _warming_up_at(self, start: float) -> bool:
        """Whether a bucket starting at ``start`` (epoch seconds) is in the warm-up."""
        return self.seen_posts < self.params.warmup_posts or (
            self.first_start is None or start - self.first_start < self.params.warmup_seconds
        )

    def _llr(
        self, k: int, n: int, usual: float, concentration: float, *, down: bool = False
    ) -> float:
        """log BB(k | n, shifted share) - log BB(k | n, usual share), one concentration: the
        share ``shift_factor`` times the usual one (at most halfway to 1), or, ``down``,
        divided by it."""
        if n == 0:
            return 0.0
        factor = self.params.shift_factor
        shifted = usual / factor if down else smaller(usual * factor, (1.0 + usual) / 2.0)
        c = concentration
        return _log_betabinom(k, n, shifted, c) - _log_betabinom(k, n, usual, c)

    def skip_hole(self, seconds: float) -> None:
        if self.first_start is not None:
            self.first_start += seconds

    def learn_one(self, bucket: Bucket) -> None:
        if self.first_start is None:
            self.first_start = bucket.start.timestamp()
        n, k = bucket.count, float(bucket.negative)
        scored = self._get_memo()
        self._set_memo(None)  # what is learned next changes the model
        if scored is not None and scored.bucket is bucket:  # score_one's work on it
            season, usual, concentration, llr = (
                scored.season,
                scored.usual,
                scored.concentration,
                scored.llr,
            )
        else:
            season, concentration, llr = self._season(bucket), self.concentration, None
            usual = self.usual_at(bucket, season)
        ongoing = self.cusum > 0.0  # (the run is the CUSUM's before this bucket)
        adopt: float | None = None
        warming_up = self._warming_up(bucket)
        if warming_up:
            self.cusum = self.cusum_down = 0.0
        else:
            step = self._llr(bucket.negative, n, usual, concentration) if llr is None else llr
            if self.cusum_down == 0.0 and bucket.negative >= n * usual:
                down = 0.0  # the fall's CUSUM stays at 0: its step is negative (the
                # beta-binomial's likelihood ratio falls with k, below 0 from k = n usual)
            else:
                down = self._llr(bucket.negative, n, usual, concentration, down=True)
            cap = self.params.cusum_cap
            self.cusum = smaller(larger(self.cusum + step, 0.0), cap)
            self.cusum_down = smaller(larger(self.cusum_down + down, 0.0), cap)
            adopt = self._learn_held(k / season, n, bucket.start.timestamp())
            if adopt is not None and not self._favours(
                bucket, adopt * season, usual, concentration
            ):
                adopt = None  # the change may be over: this bucket says the usual share
        self.run.advance(ongoing, bucket.start.timestamp(), k, n * usual, n, lasts=self.cusum > 0.0)
        if n >= 2 and self.seen_posts >= self.params.prior_posts and not self._changing():
            # the drift from the bucket as it is, unless it is far out (a crisis does not
            # teach that the share wanders): clipped at the usual band's edge, the spread
            # it is learned from was truncated, most at small buckets (2 negatives of 2 is
            # outside the band), and the share read steadier than it is (a concentration
            # of 48 to 80 learned where it is 30). Nor does a change: three hours of a
            # wave, each bucket clipped at the band's edge, took the concentration to its
            # floor, and the calm buckets after it drained the CUSUM so slowly that the
            # alarm went on for 1 to 3 hours of calm. A change that lasts is adopted
            # instead (``_adopt``)
            self._learn_drift(n, self._clipped(k, n, usual, DRIFT_BAND_Z, concentration), usual)
            concentration = self.concentration  # the drift has learned the bucket
        if n and self.seen_posts >= self.params.prior_posts:
            # robust: an outlying share is learned as if it sat on the band's edge
            k = self._clipped(k, n, usual, BAND_Z, concentration)
        level = self.usual_share  # the day's, as the bucket was judged against
        decay = 0.5 ** (self.width_seconds / self.params.halflife_seconds)
        self.negatives = self.negatives * decay + k / season
        self.posts = self.posts * decay + n
        self.seen_posts += n
        at = local(bucket.start, self.timezone)
        hour = self._hour(at)
        if self.width_seconds < DAY:  # at a factor of 1 for the hour, the weekday's kept
            self._learn_hour(hour, n, k, n * level * self.weekday_factors[at.weekday()], warming_up)
        self._learn_day(day_number(at), n, k)
        if adopt is not None:
            self._adopt(adopt, bucket.start.timestamp())
        if warming_up and not self._warming_up_at(bucket.start.timestamp() + self.width_seconds):
            self._rebase_hours()  # the next bucket is judged

    def _changing(self) -> bool:
        """A CUSUM holds a change at its cap (``learn_one``: after it has learned the
        bucket); it is adopted once held for ``adopt_after_seconds``."""
        cap = self.params.cusum_cap
        return self.cusum >= cap or self.cusum_down >= cap

    def _held_nats(self) -> float:
        """A CUSUM at least this high holds its change: its own test's tail (its share of
        the budget, ``exp(-cusum) / cusum_share``) is beyond ``adopt_likelihood``."""
        p = self.params
        return -math.log((1.0 - p.adopt_likelihood) * p.cusum_share)

    def _learn_held(self, negatives: float, posts: int, start: float) -> float | None:
        """Count the bucket (``negatives`` over its season, of ``posts``, starting at
        ``start``) in each CUSUM's change (``learn_one``: after the CUSUMs have learned
        it); the share of a change held for ``adopt_after_seconds``, or at its CUSUM's
        cap if it returns to the share before the last adopted change (``_returning``),
        if one has been. The share is the whole change's, from where its CUSUM last
        stood at 0 (its estimate of when the change began): the buckets of the hold alone
        are the ones that kept it high, and on a small series they read a fall from 40 %
        to 10 % as one to 5 %."""
        if self.cusum == 0.0 and self.cusum_down == 0.0:  # the calm: no change to count
            if self.held_up or self.held_down or self.rise_posts or self.fall_posts:
                self.rise_negatives = self.rise_posts = self.fall_negatives = 0.0
                self.fall_posts = 0.0
                self.held_up = self.held_down = 0
            return None
        held_nats = self._held_nats()
        if self.cusum > 0.0:
            self.rise_negatives += negatives
            self.rise_posts += posts
        else:
            self.rise_negatives = self.rise_posts = 0.0
        self.held_up = self.held_up + 1 if self.cusum >= held_nats else 0
        if self.cusum_down > 0.0:
            self.fall_negatives += negatives
            self.fall_posts += posts
        else:
            self.fall_negatives = self.fall_posts = 0.0
        self.held_down = self.held_down + 1 if self.cusum_down >= held_nats else 0
        adopt_after = self.params.adopt_after_seconds / self.width_seconds
        cap = self.params.cusum_cap
        if self.held_up and self.rise_posts > 0.0:
            share = self.rise_negatives / self.rise_posts
            if self.held_up > adopt_after or (self.cusum >= cap and self._returning(share, start)):
                return share
        if self.held_down and self.fall_posts > 0.0:
            share = self.fall_negatives / self.fall_posts
            returning = self.cusum_down >= cap and self._returning(share, start)
            if self.held_down > adopt_after or returning:
                return share
        return None

    def _remembering(self, start: float) -> bool:
        """Whether the share before an adopted change is remembered at ``start``."""
        return self.shift_from > 0.0 and start - self.shift_at < self.params.shift_memory_seconds

    def settled(self, at: datetime, since: datetime) -> float | None:
        """The usual share now over the one before the last adopted change, if it was
        adopted at ``since`` or later and is remembered at ``at`` (else None): an alert
        that ends because its change became the normal says so, not "back to normal"."""
        if not self._remembering(at.timestamp()) or self.shift_at < since.timestamp():
            return None
        return self.usual_share / self.shift_from

    def _near(self, share: float, other: float) -> bool:
        """Whether two shares are nearer than the change the CUSUMs look for (within the
        square root of ``shift_factor``, either way)."""
        if share <= 0.0 or other <= 0.0:
            return False
        return abs(math.log(share / other)) <= 0.5 * math.log(self.params.shift_factor)

    def _returning(self, share: float, start: float) -> bool:
        """Whether a change to ``share`` is the return to the share before the last
        adopted change, within ``shift_memory_seconds`` of it: the normal known before a
        crisis long enough to be adopted. It is adopted as soon as a CUSUM reaches its cap
        with it (all the evidence a CUSUM can hold), not 3 hours on: judged against the
        crisis's share meanwhile, a new wave an hour after the crisis went unseen. At the
        hold's own bar, 10-post buckets at 40 % read a return to 10 % by chance within a
        day (1 of 6 seeds)."""
        return self._remembering(start) and self._near(share, self.shift_from)

    def _favours(self, bucket: Bucket, share: float, usual: float, concentration: float) -> bool:
        """Whether the bucket is likelier at ``share`` (a change's, at its season) than at
        the ``usual`` one: a change is adopted at a bucket that still holds it. The first
        calm bucket after a 3-hour wave, its CUSUM still high, adopted the wave's share
        (73 %) just as it ended, and the calm read as a fall for 3 hours."""
        n, k = bucket.count, bucket.negative
        if n == 0:
            return False
        share = smaller(share, MAX_SHARE)
        c = concentration
        return _log_betabinom(k, n, share, c) > _log_betabinom(k, n, usual, c)

    def _adopt(self, share: float, start: float) -> None:
        """The usual share becomes ``share`` (a day's, whatever the hour: the hours'
        factors are against the usual share of their time and the weekdays' against each
        other, so both keep), and both CUSUMs start again. The share before it is
        remembered (``_returning``): the one already remembered, if the change continues an
        episode; none, if the change is the return to it."""
        p = self.params
        share = smaller(larger(share, 0.0), MAX_SHARE)
        normal = self.shift_from if self._remembering(start) else self.usual_share
        if self._near(share, normal):
            self.shift_from = self.shift_at = 0.0
        else:
            self.shift_from, self.shift_at = normal, start
        self.negatives = larger(
            share * (self.posts + p.prior_posts) - p.prior_share * p.prior_posts, 0.0
        )
        self.cusum = self.cusum_down = 0.0
        self.run.keep(None)
        self.rise_negatives = self.rise_posts = self.fall_negatives = self.fall_posts = 0.0
        self.held_up = self.held_down = 0

    def _rebase_hours(self) -> None:
        """While warming up (at each new hour, and at its end): the hours' expected
        negatives as if the usual share had always been the one learned by now, and their
        factors. The usual share moves most while it is first learned (from the prior,
        over the day's rhythm): against it as it moved, the hours read 1.2 where they were
        1.5, and on a quiet series the factors and the usual share fed each other up to 17
        and 0.4 (the share was 0.12) in the first day. Against the share of the whole
        warm-up instead, each hour's factor is its share over the share of all hours; from
        the warm-up's end, against the usual share of its time."""
        self.hour_expected = _at_one_share(self.hour_negatives, self.hour_posts)
        self.hour_factors = shrunk_factors(self.hour_negatives, self.hour_expected, self.hour_posts)

    def _learn_hour(self, hour: int, n: int, k: float, expected: float, warming_up: bool) -> None:
        """The hour's own negatives, posts and ``expected`` negatives (at a factor of 1)
        learn the bucket; at each new hour, the factors follow (``_rebase_hours`` while
        ``warming_up``)."""
        per_hour = max(1.0, 3600.0 / self.width_seconds)  # buckets of an hour a day
        decay = 0.5 ** (1.0 / (per_hour * self.params.hour_halflife_days))
        self.hour_negatives[hour] = self.hour_negatives[hour] * decay + k
        self.hour_posts[hour] = self.hour_posts[hour] * decay + n
        self.hour_expected[hour] = self.hour_expected[hour] * decay + expected
        if hour != self.last_hour:
            self.last_hour = hour
            if warming_up:
                self._rebase_hours()
            else:
                self.hour_factors = shrunk_factors(
                    self.hour_negatives, self.hour_expected, self.hour_posts
                )

    def _learn_day(self, day: int, n: int, k: float) -> None:
        """Sum the day's negatives and posts; when a day ends, its weekday learns it whole
        (a crisis in its last hours is not yet the rest of its day) and the weekdays'
        factors follow: each weekday's share against the share of all weekdays, whatever
        the usual share was when they were learned. Against the usual share, a change
        adopted on a Saturday morning (the first weekend is news) took the weekend's
        share for the new normal, and Saturday's factor stayed 1: every weekend was news,
        then adopted, then its Monday a fall."""
        if day != self.today:
            if self.today >= 0 and self.today_posts > 0.0:
                weekday = (self.today + 3) % 7  # 1970-01-01 was a Thursday
                decay = 0.5 ** (1.0 / self.params.weekday_halflife_weeks)
                self.weekday_negatives[weekday] = (
                    self.weekday_negatives[weekday] * decay + self.today_negatives
                )
                self.weekday_posts[weekday] = self.weekday_posts[weekday] * decay + self.today_posts
                self.weekday_factors = shrunk_factors(
                    self.weekday_negatives,
                    _at_one_share(self.weekday_negatives, self.weekday_posts),
                    self.weekday_posts,
                )
            self.today, self.today_negatives, self.today_posts = day, 0.0, 0.0
        self.today_negatives += k
        self.today_posts += n

    def _learn_drift(self, n: int, k: float, usual: float) -> None:
        """Add one bucket's squared Pearson residual less 1, and its posts less 1, to the
        drift's sums (both fading with the usual share's half-life)."""
        pearson = (k - n * usual) ** 2 / larger(n * usual * (1.0 - usual), 1e-9)
        decay = 0.5 ** (self.width_seconds / self.params.halflife_seconds)
        self.drift_excess = self.drift_excess * decay + pearson - 1.0
        self.drift_pairs = self.drift_pairs * decay + n - 1


def shrunk_factors(
    negatives: list[float], expected: list[float], posts: list[float]
) -> list[float]:
    """Each slot's (an hour of day's, a weekday's) negatives over its ``expected``
    negatives (at a factor of 1: its posts times the usual share of their time), against
    that ratio over all slots, shrunk towards it as far as it may be noise: empirical
    Bayes, as the volume detector trusts its hours. A slot's ratio has a binomial noise
    variance of ``(1 - share) / expected`` (``share``: all slots' negatives over their
    ``posts``), in units of the ratio over all slots; the slots' true factors spread by
    their variance beyond that noise (never below 0); each slot keeps the part of its
    difference that is signal. A slot not seen yet keeps the share of all (factor 1),
    and a factor is at least ``MIN_FACTOR`` (a slot without a negative post is quiet,
    not immune). When the usual share never moved, this is each slot's share against
    the share of all slots."""
    total, total_expected = math.fsum(negatives), math.fsum(expected)
    total_posts = math.fsum(posts)
    if total <= 0.0 or total_expected <= 0.0 or total_posts <= 0.0:
        return [1.0] * len(posts)
    share, ratio = total / total_posts, total / total_expected
    if share >= 1.0:
        return [1.0] * len(posts)
    seen = [i for i, e in enumerate(expected) if e > 0.0]
    ratios = {i: negatives[i] / expected[i] / ratio for i in seen}
    noise = {i: (1.0 - share) / (ratio * expected[i]) for i in seen}
    variance = math.fsum((ratios[i] - 1.0) ** 2 for i in seen) / len(seen)
    spread = max(0.0, variance - math.fsum(noise.values()) / len(seen))
    factors = [1.0] * len(posts)
    if spread > 0.0:
        for i in seen:
            trust = spread / (spread + noise[i])
            factors[i] = max(MIN_FACTOR, 1.0 + trust * (ratios[i] - 1.0))
    return factors


def _at_one_share(negatives: list[float], posts: list[float]) -> list[float]:
    """Each slot's expected negatives at the share of all slots."""
    total_posts = math.fsum(posts)
    share = math.fsum(negatives) / total_posts if total_posts > 0.0 else 0.0
    return [share * n for n in posts]


def _log_betabinom(k: int, n: int, p: float, concentration: float) -> float:
    """log P(K = k) for K ~ BetaBinomial(n, p * c, (1 - p) * c), without the binomial
    coefficient (the same for every p: it cancels in a likelihood ratio)."""
    a = larger(p, 1e-9) * concentration
    b = larger(1.0 - p, 1e-9) * concentration
    return _log_beta(k + a, n - k + b) - _log_beta(a, b)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
