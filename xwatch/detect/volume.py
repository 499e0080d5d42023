"""The count detector: mentions (or negative mentions) per bucket against a rhythmic baseline.

The expected count of a bucket is ``level x daily[hour] x weekly[weekday]``:

* ``level``  the recent mean rate, deseasonalised (half-life: hours), each bucket learned
  in proportion to what it says about the level (``_information``: on a small series a
  quiet hour's bucket says little, so one night post does not move the level as twenty);
* ``daily``  a factor per local hour of day: the hour's posts over the posts it would have
  had at a factor of 1, both summed with a half-life of a week of that hour and each
  bucket weighted as the negative binomial's likelihood weighs it (on a small series a
  ratio of sums, as a Poisson rate is estimated: an average of per-bucket ratios was
  ruled by the buckets whose level happened to be lowest, and one post after a quiet
  night made an hour's factor 20), first estimated from the whole warm-up day at once,
  and shrunk towards 1 as far as it rests on too few posts to stand out from its noise
  (``_hour_factor``: empirical Bayes, a gamma prior on Poisson rates);
* ``weekly`` a factor per day of week, learned from whole local days against the mean of
  the last seven (half-life: a month of that weekday), from weeks without a silent day (a
  day without a post is a gap in the feed, not a rhythm).

Local: the hours and days of the detector's ``timezone``, its brand's audience's
(``calendar``; UTC by default).

A bucket is judged by two pieces of evidence against a negative binomial around
that expectation (whose dispersion is learned online too, so "2 → 6" and
"2,000 → 6,000" get the weight they deserve):

* the bucket alone: the NB tail probability of its count (a spike, a drop),
  mid-p (half the probability of the count itself), as discrete tails are;
* the buckets so far: a CUSUM of the NB log-likelihood ratio of a mean
  ``shift_factor`` times (or ``1/shift_factor`` times) the expected one. The
  ratio has expectation 1 under the baseline, so by Ville's inequality the
  CUSUM exceeds ``h`` with probability at most ``exp(-h)``: ``exp(-cusum)`` is
  a valid tail probability, and it catches a sustained x2 that no single
  bucket's tail would. Each CUSUM keeps its run (``runs.RunTracker``: the buckets
  since it left 0, their counts against their expected counts), and a signal whose
  CUSUM outweighs the bucket's own tail carries it: the alert then says "sustained
  since 12:40 UTC (6 buckets): 60 against 129 expected", not just this bucket's count.

The two tests of a direction share its false-alarm budget (weighted Bonferroni:
``cusum_share`` for the CUSUM, the rest for the bucket's own tail): the smaller of
``tail / (1 - cusum_share)`` and ``exp(-cusum) / cusum_share`` is the bucket's tail.
The likelihood is ``1 - tail``: under normal behaviour, a likelihood of at least
0.999 happens in at most about one bucket in a thousand. Judging a bucket is done
once: ``score_one`` keeps its work (``judged``) for the ``learn_one`` that follows
on the same bucket.

Learning is robust: a bucket outside the expected band is learned as if it sat on
the band's edge, so a crisis does not teach the baseline that crises are normal. The
band's top is never below one post: a single post is never an outlier (where the
expected count is a small fraction of a post, the band's top is too; clipped to it,
posts taught the level almost nothing while empty buckets taught it all, and a small
series' level, once low, fell for good). Nor is an empty bucket, unless the band's
bottom is one post or more: the band is a gamma's, whose bottom is above 0 however
small the expected count, and a series of 0.02 posts a bucket (six a day: a topic, a
small brand's complaints) took every quiet three hours for an outage, a level of 0,
several times a day; each next post was then judged against the floor of 0.001 (4 in
1,000 buckets at 0.999, not 1).
A change that lasts is the new normal, and alerts once: when the buckets have
stayed outside the band on one side, or a CUSUM has stayed near its cap (beyond
``adopt_likelihood``, the strictest shipped rule), for ``adopt_after_seconds``, the level
jumps to their mean and the CUSUMs start again from zero. Known limit: the weekday
factors are learned against the last seven days, and the week after a lasting step mixes
two levels, so the days after it learn factors a little off, and a week later a busy
series can alarm again, the other way, for about three hours on that weekday (a x3 at
20 to 2,000 posts a bucket, in an audit's runs). Rescaling the stored days at each
adoption (NAB 57-59: real feeds adopt many short episodes, and the level drifts between
their ends), skipping the days of an episode (the alarm moved to the next day) and
emptying the week once a shift had held a day (a deep weekend holds two: never learned)
and learning each day against its own mean level after the first week (robust to a step
later on, but one in the first week then stayed in the factors for weeks; NAB 60.6)
each did worse; a fix needs to tell a weekly rhythm from a step, a week's horizon.

A change that is adopted is not forgotten at once: a crisis that lasts longer than
``adopt_after_seconds`` is the new normal, but its end, a return to the usual level, is
not news (nor is a feed's recovery after an outage of its source). So the detector
remembers the level it had before the shift (the last level at which neither CUSUM saw
any change), for ``shift_memory_seconds`` after the adoption (a week, while no weekday
factor is learned: the change may be the week's rhythm), and judges the tests
towards it against that level: after a rise, the down tests (the bucket's down tail, the
down CUSUM, and so the calibrated down steps) are judged against the lower of the
expected count and the one at the remembered level; after a fall, the up tests against
the higher. A collapse below the old normal too, or a spike above the pre-outage normal,
still alarms, and a signal says what it was judged against (its expected count and band).
The return itself is adopted as any lasting change is, silently: by the model's own
CUSUM towards the remembered level (``cusum_return``, against the expected count, as the
CUSUM of that direction is without the memory). The memory is the normal before the
whole episode, never a crisis level: an adoption back near it (within
``sqrt(shift_factor)``: nearer it than the change the CUSUMs look for) clears it, so the
next crisis of the same size alarms again. The calibration below still learns the
model's own surprise, as if nothing were remembered: how heavy-tailed the series is
does not change with what is news.

The first week is remembered the same way. Until a whole week has been seen there are
no weekday factors, and a quiet first weekend is learned by the level; the Monday
after, back at the weekdays' level, would read as a surge. So, until then, the detector
keeps the highest and lowest calm level at which a day ended (the warm-up's included),
and judges the tests towards the farther of the two against it, as it does a level
remembered before a shift (``_first_week_level``): a return to a level held this week is
not news, a first quiet Saturday still is (nothing so low has been seen), and so is
anything beyond the week's range. An adopted shift ends the range (the new level is the
normal one, as above).

Calibration on the series' own past. The tail probability above is exact only if the
series follows its negative binomial; real feeds are heavier-tailed, some far more than
others, so one likelihood threshold would buy many more false alarms on a spiky series
than on a calm one. The detector therefore also keeps how rare its own alarms have been
(``OnsetTail``, a peaks-over-threshold estimate in fixed memory), learned from its raw
surprise (before learning each bucket: no look-ahead):

* an episode is a run of surprising buckets; its bar is the highest raw surprise so far,
  halving every ``episode_halflife_seconds`` (2 h: the calm after which the shipped
  config resolves an alert). A bucket's onset is what its surprise adds above the bar,
  so an episode counts once however many buckets it lasts;
* a bucket's surprise is the smaller of the model's and ``-log10`` of the rate per
  bucket at which the series has started episodes at least that surprising. One
  monotone map for every bucket: the first bucket of a burst (the bar near 0) gets its
  onset's rarity, and a bucket in the middle of an episode gets the rarity of an
  episode reaching its height, not of what it adds (that would call a crisis calm after
  its first bucket, and resolve its alert while it lasts). On a series the model fits,
  episodes are no commoner than the model's tail says, and the model's word stands; on
  a heavier-tailed one a surprise that has often been seen is discounted.

* heights alone would throw away what a sustained change carries: its duration. The
  CUSUM's evidence is capped (so that it drains in time), and on a bursty feed a
  two-hour x5 surge gets no taller than the series' daily one-bucket bursts. So the
  CUSUM is calibrated too, by its buckets rather than its height: each bucket's own
  test is turned into a conformal p-value (the rate at which the series' buckets have
  been at least that surprising, a second ``OnsetTail`` fed every bucket, not
  declustered), and CUSUMs of those p-values (``CALIBRATORS``: power calibrators, whose
  exponential has expectation 1 while the p-values are uniform, as the model's
  likelihood ratios have under the model) gather how long the buckets have been unusual
  for this series. A burst is one such bucket; a surge is many in a row. Their test has
  the CUSUM's share of the budget, and stays below the model's CUSUM test.

A bucket's calibrated surprise is the larger of the two (episode height, calibrated
CUSUMs). The model's word counts as ``calibration_prior_seconds`` (a week) of the
series' own past, so that a short past (just after the warm-up, or a crisis's first
bucket counted in it) cannot overrule it alone. The series' own past fades, with a
half-life of ``calibration_halflife_seconds`` (4 weeks, as the weekday factors'), so a
series that was bursty last quarter and is calm now is judged by its calm, and one
that turned bursty learns it within weeks (``bench/regime.py``). Rates rarer than
that memory holds (0.9999 at 5 minutes: one bucket a month) come from the tail's
exponential above its threshold, which rests on the commoner onsets; the model's
word keeps its week of weight. Calibration only ever lowers a surprise.
Its price, on a heavy-tailed feed: a change that the series' own past makes look
ordinary alerts later (``bench/detection.py``, with and without ``--uncalibrated``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from datetime import datetime

from xwatch.detect.calendar import UTC_ZONE, day_number, local
from xwatch.detect.memo import Memo
from xwatch.detect.runs import RunTracker
from xwatch.detect.tails import (
    LN10,
    OnsetTail,
    larger,
    nbinom_band,
    nbinom_cdf,
    nbinom_pmf,
    nbinom_sf,
    smaller,
)
from xwatch.model import Bucket, Direction, Measure, Run, Signal

DAY = 86400.0
WEEK = 7 * DAY
BAND_Z = 2.576  # the expected band is the central 99 %
MIN_FACTOR = 0.05  # a seasonal factor never goes below this (a quiet hour is not a dead one)
MIN_EXPECTED = 1e-3  # the expected count never goes below this (a silent series sits on it)
MIN_LEVEL = 1e-100  # a level that decays below this is 0: a series silent for years would
# otherwise reach the subnormal floats, where level x factor rounds to 0 (a division by 0)


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
    adopt_likelihood: float = 0.99999  # a CUSUM holds a change while its own test says at
    # least this (the strictest shipped rule's): near its cap, not at it, which one bucket
    # a little below the shift takes it from (a x2 step then alarmed for 9-11 hours, not 3)
    factor_evidence_posts: float = 30.0  # a weekday factor resting on this many posts:
    # half-trusted (the hours' factors are trusted by their own spread: ``_hour_factor``)
    shift_factor: float = 2.0  # the sustained change the CUSUMs look for: x2 up, /2 down
    cusum_share: float = 0.2  # of the false-alarm budget, for the CUSUM (Bonferroni)
    cusum_cap: float = 20.0  # nats: a CUSUM saturates here (its tail, 1e-8 after the budget
    # share, is beyond the strictest shipped rule, 0.99999), so it drains in time
    episode_halflife_seconds: float = 2 * 3600.0  # an episode's bar halves in this time
    calibrate: bool = True  # surprise calibrated on the series' own past (see above)
    calibration_prior_seconds: float = WEEK  # the model's word counts as this much past
    calibration_halflife_seconds: float = 4 * WEEK  # the series' own past fades (as the
    # weekday rhythm does): a bursty quarter long gone does not mute today's alerts
    shift_memory_seconds: float = DAY  # after an adopted shift, a return to the level
    # before it is not news for this long; a level that has held a day is the normal one


CALIBRATORS: tuple[float, ...] = (1 / 2, 1 / 8)
"""The calibrated CUSUMs' alternatives, as power calibrators ``k p^(k - 1)`` of a
bucket's calibrated tail ``p`` (Vovk and Wang, "Combining p-values via averaging",
2021): each has expectation 1 when ``p`` is uniform, so each CUSUM's ``exp(-cusum)`` is
a valid tail, as the model's CUSUMs' is. ``k`` is the null's mean of ``-ln p`` (1) over
the alternative's: 1/2, buckets twice as surprising as usual (the CUSUMs' own x2); 1/8,
buckets each about as surprising as the shipped rules' 0.9999 alone (``-ln p`` of about
8 nats, ``p`` of about 3e-4): a surge. The test takes the larger, Bonferroni over both."""
LN_CALIBRATORS = math.log(len(CALIBRATORS))
BUCKET_TAIL_QUANTILE = 0.99  # every bucket is counted: its tail is its top 1 %
NO_STEPS: tuple[float, ...] = (0.0,) * len(CALIBRATORS)
CALIBRATOR_FLOORS = tuple(math.log(k) for k in CALIBRATORS)  # the steps at p = 1
CALIBRATOR_TERMS = tuple(zip(CALIBRATORS, CALIBRATOR_FLOORS, strict=True))


@functools.lru_cache(maxsize=64)
def _decay(width_seconds: float, halflife_seconds: float) -> float:
    """What is left of a value after one bucket, for a half-life."""
    return float(0.5 ** (width_seconds / halflife_seconds))


@functools.lru_cache(maxsize=256)
def _alpha(halflife_in_steps: float) -> float:
    """EWMA weight of a new value for a given half-life in update steps."""
    return float(1.0 - 0.5 ** (1.0 / max(halflife_in_steps, 1.0)))


@dataclass(frozen=True, slots=True)
class _Constants:
    """What a count detector's per-bucket work derives from its width and parameters
    alone, worked out once instead of at every bucket (each value is the expression the
    per-bucket code used, so the results are the same to the last bit), and shared by
    every detector of the same width and parameters (``of`` remembers them). Never part of
    the detector's state: ``CountDetector._constants`` looks it up again whenever the
    detector's ``width_seconds`` or ``params`` are not the ones it was made from (a
    detector restored from a checkpoint, or made by ``dataclasses.replace``)."""

    width_seconds: int
    params: CountParams
    hourly: bool  # buckets shorter than a day: each (local) hour of day has its factor
    per_day: int  # buckets in a day (1 for day-wide buckets)
    level_alpha: float  # EWMA weights of one bucket at each half-life's own pace
    dispersion_alpha: float
    daily_keep: float  # what is left of an hour's evidence after a bucket of it
    weekly_alpha: float  # (one step: a day)
    episode_decay: float  # what is left of the episode's bar after a bucket
    calibration_keep: float  # what is left of the calibration's counts after a bucket
    calibration_prior: float  # the model's word, in buckets of the series' own past
    adopt_after: float  # ``adopt_after_seconds`` in buckets
    held_nats: float  # a CUSUM at least this high holds its change (``adopt_likelihood``)
    bucket_budget: float  # the bucket's own test's share of the budget: 1 - cusum_share
    ln_cusum_share: float  # ln(cusum_share): the CUSUM's share, in log space
    near: float  # ln sqrt(shift_factor): a level nearer than this is no change (the CUSUMs
    # look for a change of shift_factor)

    @classmethod
    @functools.lru_cache(maxsize=64)  # one per (width, params): shared by every series
    def of(cls, width_seconds: int, params: CountParams) -> _Constants:
        width = float(width_seconds)
        return cls(
            width_seconds=width_seconds,
            params=params,
            hourly=width_seconds < DAY,
            per_day=max(1, round(DAY / width_seconds)),
            level_alpha=_alpha(params.level_halflife_seconds / width),
            dispersion_alpha=_alpha(params.dispersion_halflife_seconds / width),
            daily_keep=1.0 - _alpha(DAY / width / 24.0 * params.daily_halflife_days),
            weekly_alpha=_alpha(params.weekly_halflife_weeks),
            episode_decay=_decay(width_seconds, params.episode_halflife_seconds),
            calibration_keep=_decay(width_seconds, params.calibration_halflife_seconds),
            calibration_prior=params.calibration_prior_seconds / width_seconds,
            adopt_after=params.adopt_after_seconds / width_seconds,
            held_nats=-math.log((1.0 - params.adopt_likelihood) * params.cusum_share),
            bucket_budget=1.0 - params.cusum_share,
            ln_cusum_share=math.log(params.cusum_share),
            near=0.5 * math.log(params.shift_factor),
        )


@dataclass(slots=True)
class Judgement:
    """What judging one bucket found, kept until it is learned (saves doing it twice).
    Not frozen: it never leaves its detector, and is made for every bucket. Its field
    names are part of the checkpoint's fingerprint (``state.field_names``): a new one
    makes every saved checkpoint refused, as ``STATE_VERSION`` does."""

    start: float  # the bucket's start, epoch seconds
    observed: int
    expected: float
    low: float
    high: float
    llr_up: float  # the bucket's log-likelihood ratio, shifted up against the expected
    llr_down: float  # ... shifted down
    surprise_up: float  # -log10 of the tail upwards (bucket and CUSUM combined)
    surprise_down: float  # ... downwards
    bucket_up: float  # -log10 of the bucket's own test upwards (its share of the budget)
    bucket_down: float  # ... downwards
    cusum_surprise_up: float  # -log10 of the CUSUM's test upwards (its share of the budget)
    cusum_surprise_down: float  # ... downwards
    steps_up: tuple[float, ...]  # the bucket's step of each calibrated CUSUM upwards
    steps_down: tuple[float, ...]  # ... downwards
    # the expected count at the level remembered before an adopted shift, and its band:
    # what the tests towards it were judged against (expected, low, high if none)
    remembered: float
    remembered_low: float
    remembered_high: float
    llr_return: float  # the model's llr towards it, against the expected (adoption only)
    # -log10 of the tail, both ways, as if nothing were remembered (what calibration learns)
    raw_surprise: float  # bucket and CUSUM combined
    raw_bucket: float  # the bucket's own test

    @classmethod
    def unjudged(
        cls, start: float, observed: int, expected: float, low: float, high: float
    ) -> Judgement:
        """A bucket learned but not judged (``CountDetector._judge``: the warm-up's, not
        scored): its expected count and band, what learning it uses; no tests (NaN)."""
        nan = math.nan
        return cls(
            start=start,
            observed=observed,
            expected=expected,
            low=low,
            high=high,
            llr_up=nan,
            llr_down=nan,
            surprise_up=nan,
            surprise_down=nan,
            bucket_up=nan,
            bucket_down=nan,
            cusum_surprise_up=nan,
            cusum_surprise_down=nan,
            steps_up=NO_STEPS,
            steps_down=NO_STEPS,
            remembered=expected,
            remembered_low=low,
            remembered_high=high,
            llr_return=nan,
            raw_surprise=nan,
            raw_bucket=nan,
        )

    def against(self, direction: Direction) -> tuple[float, float, float]:
        """The expected count and band a direction's tests were judged against: the
        remembered level's if it lies that way (below the expected count for "down",
        above for "up"), else the model's."""
        if self.remembered == self.expected:  # the common case: nothing remembered
            return self.expected, self.low, self.high
        lies_that_way = (
            self.remembered < self.expected
            if direction == "down"
            else self.remembered > self.expected
        )
        if lies_that_way:
            return self.remembered, self.remembered_low, self.remembered_high
        return self.expected, self.low, self.high


@dataclass(slots=True)
class CountDetector(Memo[_Constants]):
    """Negative-binomial detector for one count series (volume or negative volume)."""

    measure: Measure
    width_seconds: int
    params: CountParams = CountParams()
    level: float = 0.0
    dispersion: float = 0.0
    daily: list[float] = field(default_factory=lambda: [1.0] * 24)
    weekly: list[float] = field(default_factory=lambda: [1.0] * 7)
    # each hour's evidence, fading with ``daily_halflife_days``: its posts (the buckets'
    # values, as learned), and the posts it would have had at a factor of 1 (the level
    # times the weekday's factor at each of those buckets), each bucket weighted by its
    # information (``_learn_baseline``); ``daily`` is their ratio, shrunk towards 1
    # (``_hour_factor``)
    hour_posts: list[float] = field(default_factory=lambda: [0.0] * 24)
    hour_expected: list[float] = field(default_factory=lambda: [0.0] * 24)
    rhythm_spread: float = 0.0  # the variance of the hours' true factors (the prior's)
    trusted_mean: float = 1.0  # the mean of the hours' factors (``_rhythm`` divides by it)
    weekly_seen: list[int] = field(default_factory=lambda: [0] * 7)  # days learned
    # the warm-up's buckets per hour of day: how many, and their sum (the rhythm's first
    # estimate, taken as a whole at the warm-up's end; emptied then)
    warmup_n: list[int] = field(default_factory=lambda: [0] * 24)
    warmup_sum: list[float] = field(default_factory=lambda: [0.0] * 24)
    # each weekday's last day: its values over the daily factors, summed, and its buckets
    # (the weekday factors are learned from whole days against the week's mean)
    day_sums: list[float] = field(default_factory=lambda: [0.0] * 7)
    day_buckets: list[int] = field(default_factory=lambda: [0] * 7)
    day: int = -1  # the local day being summed, in days since the epoch
    learned: int = 0
    first_start: float | None = None
    last_hour: int = -1
    outlier_side: int = 0  # -1, 0, 1: where the last value fell against the band
    outlier_run: int = 0  # how many buckets in a row fell on that side
    outlier_sum: float = 0.0  # their deseasonalised values, summed (the new level's mean)
    cusum_up: float = 0.0  # nats of evidence for a mean shift_factor x the expected one
    cusum_down: float = 0.0  # ... for 1 / shift_factor x
    held_up: int = 0  # buckets in a row with cusum_up at its cap (a change that holds)
    held_up_sum: float = 0.0  # ... their deseasonalised values, summed (its new level)
    held_down: int = 0
    held_down_sum: float = 0.0
    # the model's CUSUM towards a remembered level (against the expected count, as the
    # CUSUM of that direction is without the memory): a return is adopted when it holds
    cusum_return: float = 0.0
    calm_level: float = 0.0  # the level at the last bucket where neither CUSUM saw a change
    shift_from: float = 0.0  # the level before the last adopted shift (0: none remembered)
    shift_at: float = 0.0  # when that shift was adopted, epoch seconds
    # until a whole week has been seen (no weekday factors yet): the highest and lowest
    # calm level at the end of a day since the warm-up's (0: none), ``_first_week_level``
    week_high: float = 0.0
    week_low: float = 0.0
    # each CUSUM's run: its buckets' counts against their expected counts, since it left 0
    run_up: RunTracker = field(default_factory=RunTracker)
    run_down: RunTracker = field(default_factory=RunTracker)
    bucket_tails: OnsetTail = field(
        default_factory=lambda: OnsetTail(quantile=BUCKET_TAIL_QUANTILE)
    )
    # how rare each surprise of the bucket's own test has been (every bucket counted)
    calibrated_up: list[float] = field(default_factory=lambda: [0.0] * len(CALIBRATORS))
    calibrated_down: list[float] = field(default_factory=lambda: [0.0] * len(CALIBRATORS))
    # nats: CUSUMs of the buckets' calibrated tails, one per calibrator, each way
    judged: Judgement | None = None  # score_one's work, reused by learn_one on that bucket
    episode_bar: float = 0.0  # the highest raw surprise of the episode, decaying
    onsets: OnsetTail = field(default_factory=OnsetTail)  # how rare such episodes have been
    timezone: str = UTC_ZONE  # whose hours and days the rhythm is (``calendar``): the brand's

    def __post_init__(self) -> None:
        if self.dispersion == 0.0:
            self.dispersion = self.params.initial_dispersion
        self._set_memo(None)  # the constants: made at the first bucket (``_constants``)

    def _constants(self) -> _Constants:
        """What follows from ``width_seconds`` and ``params`` alone, shared by every
        detector of that width and parameters (looked up again if either is not the one it
        was made from: a restored checkpoint sets its fields after ``__init__``)."""
        constants = self._get_memo()
        if (
            constants is None
            or constants.width_seconds != self.width_seconds
            or (constants.params is not self.params and constants.params != self.params)
        ):
            constants = _Constants.of(self.width_seconds, self.params)
            self._set_memo(constants)
        return constants

    # -- the model ---------------------------------------------------------------

    def _slots(self, start: datetime) -> tuple[int, int, int]:
        """The bucket's local hour of day (0 for day-wide buckets), weekday and date (days
        since the epoch)."""
        at = local(start, self.timezone)
        hour = at.hour if self.width_seconds < DAY else 0
        return hour, at.weekday(), day_number(at)

    def expected(self, start: datetime, level: float | None = None) -> float:
        """The expected count of a bucket, at the current level or at ``level``."""
        hour, weekday, _ = self._slots(start)
        daily, weekly = self._rhythm(hour, weekday, self._constants())
        return max((self.level if level is None else level) * daily * weekly, MIN_EXPECTED)

    def _rhythm(self, hour: int, weekday: int, constants: _Constants) -> tuple[float, float]:
        """The trusted factors of an hour of day and a day of the week (``_hour_factor``,
        ``_trusted``): a bucket's expected count is ``level x daily x weekly``."""
        daily = self.daily[hour] / self.trusted_mean
        weekly = self._trusted(self.weekly[weekday], self.weekly_seen[weekday] * constants.per_day)
        return daily, weekly

    def band_top(self, start: datetime) -> float | None:
        """The top of the expected band of the bucket starting at ``start`` (None while
        warming up). Below it the bucket alone is no surprise: a bucket still open is
        judged early (``Pipeline``) only above it; a change that builds up over several
        buckets is judged as they close."""
        if self._warming_up(start.timestamp()) or self.learned == 0:
            return None
        return nbinom_band(self.expected(start), self.dispersion)[1]

    def _remembering(self, start: float) -> bool:
        """Whether a level from before an adopted shift is remembered at ``start``: for
        ``shift_memory_seconds``, or a week while no weekday factor is learned. Then a
        change may be the week's own rhythm: a first quiet weekend, adopted on Saturday,
        ends the first week's range, and the Monday after, back at the weekdays' level,
        was a surge once a day had passed (hours of alarms at 20 posts a bucket)."""
        if self.shift_from <= 0.0:
            return False
        memory = self.params.shift_memory_seconds
        if memory > 0.0 and max(self.weekly_seen) == 0:
            memory = max(memory, WEEK)
        return start - self.shift_at < memory

    def settled(self, at: datetime, since: datetime) -> float | None:
        """The level now over the level before the last adopted shift, if it was adopted
        at ``since`` or later and is remembered at ``at`` (else None): an alert that ends
        because its change became the normal says so, not "back to normal"."""
        if not self._remembering(at.timestamp()) or self.shift_at < since.timestamp():
            return None
        return self.level / self.shift_from

    def _trusted(self, factor: float, seen: int) -> float:
        """A seasonal factor shrunk towards 1 by how many posts it rests on.

        A factor learned from a handful of posts is mostly noise (Poisson noise of
        ``1/sqrt(posts)``); it counts fully only once it rests on many more than
        ``params.factor_evidence_posts`` posts.
        """
        posts = seen * self.level  # buckets learned in this slot x posts per bucket
        weight = posts / (posts + self.params.factor_evidence_posts)
        return 1.0 + (factor - 1.0) * weight

    def _hour_factor(self, hour: int) -> float:
        """An hour's factor: its posts over the posts it would have had at a factor of 1
        (``hour_posts / hour_expected``), shrunk towards 1 as a Poisson rate is under a
        gamma prior whose mean is 1 and variance ``rhythm_spread``: ``(posts + a) /
        (expected + a)``, with ``a = 1 / rhythm_spread`` posts. The plain ratio is noise
        where the posts are few: a night hour of a topic seen a few times a day has 0 posts
        one week and 1 the next, a factor of 0, then of 20. An hour resting on many more
        posts than ``a`` keeps its own ratio (a busy series' quiet night stays quiet);
        with no spread beyond the noise, every hour is 1."""
        expected = self.hour_expected[hour]
        spread = self.rhythm_spread
        if spread <= 0.0 or expected <= 0.0:
            return 1.0
        prior = 1.0 / spread
        return larger(MIN_FACTOR, (self.hour_posts[hour] + prior) / (expected + prior))

    def _summarise_hours(self) -> None:
        """Once an hour: how much the hours' true factors differ (``rhythm_spread``), the
        hours' factors that follow (``_hour_factor``), and the day's means that follow from
        those (``trusted_mean``).

        Empirical Bayes by moments (Clayton and Kaldor, 1987): an hour's ratio of posts to
        expected posts has a Poisson noise variance of about ``ratio / expected``; the
        true factors' variance is the ratios' variance around 1 less their mean noise
        (never below 0)."""
        posts, expected = self.hour_posts, self.hour_expected
        deviations: list[float] = []
        noises: list[float] = []
        for hour_posts, hour_expected in zip(posts, expected, strict=True):
            if hour_expected > 0.0:
                ratio = hour_posts / hour_expected
                deviations.append((ratio - 1.0) ** 2)
                noises.append(ratio / hour_expected)
        seen = len(deviations)
        self.rhythm_spread = (
            max(0.0, (math.fsum(deviations) - math.fsum(noises)) / seen) if seen else 0.0
        )
        daily = self.daily
        for hour in range(24):
            daily[hour] = self._hour_factor(hour)
        self.trusted_mean = math.fsum(daily) / 24.0

    def _value(self, bucket: Bucket) -> int:
        return bucket.negative if self.measure is Measure.NEGATIVE_VOLUME else bucket.count

    def _warming_up(self, start: float) -> bool:
        """Whether a bucket starting at ``start`` (epoch seconds) is in the warm-up."""
        if self.first_start is None:
            return True
        return start - self.first_start < self.params.warmup_seconds

    def _robust(
        self, value: float, season: float, judged: Judgement, warming_up: bool
    ) -> tuple[float, float]:
        """What to learn from a value: (for the level, for the rhythm).

        An outlier counts as if it sat on the band's edge, so a crisis does not teach
        the baseline that crises are normal. Not while warming up (there is no band to
        trust yet). Once the values have stayed on the same side outside the band for
        ``adopt_after_seconds``, the level takes them as they are (a lasting change is
        the new normal: the level jumps to the run's mean and the CUSUMs start again
        from it), while the hour-of-day and
        weekday factors still learn the clipped value: a long crisis must not become
        tomorrow's expected rhythm. A single post is never an outlier (see the module).
        """
        # an empty bucket is below the band only where the band expects a post at least
        low = judged.low if judged.low >= 1.0 else 0.0
        high = larger(judged.high, 1.0)
        side = 1 if value > high else -1 if value < low else 0
        if side == 0 or side != self.outlier_side:
            self.outlier_run = 0
            self.outlier_sum = 0.0
        self.outlier_side = side
        if side == 0 or warming_up:
            return value, value
        self.outlier_run += 1
        self.outlier_sum += value / season
        clipped = smaller(larger(value, low), high)
        if self.outlier_run * self.width_seconds > self.params.adopt_after_seconds:
            # the change point is the run's start: the level is the mean since then,
            # and the CUSUMs start again from it
            self._adopt(self.outlier_sum / self.outlier_run, judged.start)
            return value, clipped
        return clipped, clipped

    def _judge(self, bucket: Bucket, *, signal: bool = True) -> Judgement:
        """The model's view of a bucket (the same object for its score and its learning).

        ``signal`` False: for ``learn_one`` on a bucket that ``score_one`` did not judge
        (an empty topic bucket, learned only), just what learning uses is worked out, and
        the judgement is not kept: while warming up, or before any bucket is learned
        (when the tests teach nothing), the expected count and its band
        (``Judgement.unjudged``); after that, all but the band at a remembered level,
        which only a signal shows (NaN). The rest is the same to the last bit."""
        start, observed = bucket.start.timestamp(), self._value(bucket)
        judged = self.judged
        if judged is not None and judged.start == start and judged.observed == observed:
            return judged
        constants = self._constants()
        p = self.params
        hour, weekday, _ = self._slots(bucket.start)
        daily, weekly = self._rhythm(hour, weekday, constants)
        mu = larger(self.level * daily * weekly, MIN_EXPECTED)  # ``expected``
        alpha = self.dispersion
        if not signal and (self._warming_up(start) or self.learned == 0):
            return Judgement.unjudged(start, observed, mu, *_band(mu, alpha))
        low, high, up, down = _tails(observed, mu, alpha)
        llr_up = _nb_llr(observed, mu, mu * p.shift_factor, alpha)
        # at the floor, a series is silent: it has nowhere to fall (the floor is not its
        # rate, and months of silence would add up to a drop that is not news)
        llr_down = _nb_llr(observed, mu, mu / p.shift_factor, alpha) if mu > MIN_EXPECTED else 0.0
        remembered, remembered_low, remembered_high, llr_return = mu, low, high, 0.0
        raw: tuple[float, float] | None = None  # (surprise, bucket's): none remembered
        memory = self.shift_from if self._remembering(start) else self._first_week_level()
        if memory > 0.0:
            remembered = larger(memory * daily * weekly, MIN_EXPECTED)  # ``expected`` there
        if remembered != mu:  # the tests towards it are judged against it
            if signal:
                remembered_low, remembered_high, up_there, down_there = _tails(
                    observed, remembered, alpha
                )
            else:
                remembered_low = remembered_high = math.nan
                up_there, down_there = _mid_p(observed, remembered, alpha)
            raw = self._raw_surprise(smaller(up, down), llr_up, llr_down, remembered < mu)
            if remembered < mu:
                llr_return, down = llr_down, down_there
                llr_down = _nb_llr(observed, remembered, remembered / p.shift_factor, alpha)
            else:
                llr_return, up = llr_up, up_there
                llr_up = _nb_llr(observed, remembered, remembered * p.shift_factor, alpha)
        budget, ln_share, cap = constants.bucket_budget, constants.ln_cusum_share, p.cusum_cap
        bucket_up, bucket_down = _bucket_surprise(up, budget), _bucket_surprise(down, budget)
        cusum_up = _cusum_surprise(smaller(self.cusum_up + llr_up, cap), ln_share)
        cusum_down = _cusum_surprise(smaller(self.cusum_down + llr_down, cap), ln_share)
        if raw is None:  # max(bucket_up, bucket_down, cusum_up, cusum_down), and the bucket's
            bucket_surprise = larger(bucket_up, bucket_down)
            raw = larger(larger(bucket_surprise, cusum_up), cusum_down), bucket_surprise
        steps_up, steps_down = self._calibrated_steps(start, bucket_up, bucket_down, constants)
        judged = Judgement(
            start=start,
            observed=observed,
            expected=mu,
            low=low,
            high=high,
            llr_up=llr_up,
            llr_down=llr_down,
            surprise_up=larger(bucket_up, cusum_up),
            surprise_down=larger(bucket_down, cusum_down),
            bucket_up=bucket_up,
            bucket_down=bucket_down,
            cusum_surprise_up=cusum_up,
            cusum_surprise_down=cusum_down,
            steps_up=steps_up,
            steps_down=steps_down,
            remembered=remembered,
            remembered_low=remembered_low,
            remembered_high=remembered_high,
            llr_return=llr_return,
            raw_surprise=raw[0],
            raw_bucket=raw[1],
        )
        if signal:
            self.judged = judged
        return judged

    def _raw_surprise(
        self, tail: float, llr_up: float, llr_down: float, remembered_below: bool
    ) -> tuple[float, float]:
        """The model's own surprise (bucket and CUSUM combined, both ways) and its bucket's,
        as if no level were remembered: what the calibration learns, how heavy-tailed the
        series is not changing with what is news. ``tail``: the bucket's, on its side of
        the expected count; the CUSUM towards the remembered level is ``cusum_return``."""
        constants = self._constants()
        cusum_up = self.cusum_return if not remembered_below else self.cusum_up
        cusum_down = self.cusum_return if remembered_below else self.cusum_down
        evidence = smaller(larger(cusum_up + llr_up, cusum_down + llr_down), self.params.cusum_cap)
        bucket = _bucket_surprise(tail, constants.bucket_budget)
        return larger(bucket, _cusum_surprise(evidence, constants.ln_cusum_share)), bucket

    def _calibrated_steps(
        self, start: float, bucket_up: float, bucket_down: float, constants: _Constants
    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The calibrated CUSUMs' steps, each way: the log-likelihood ratio, under each of
        ``CALIBRATORS``, of the bucket's calibrated tail ``p`` (how often the series'
        buckets have been at least this surprising: a conformal p-value, uniform while
        the series behaves as it did). Zero while warming up or uncalibrated."""
        if not self.params.calibrate or self._warming_up(start) or self.learned == 0:
            return NO_STEPS, NO_STEPS
        prior = constants.calibration_prior
        return self._steps(bucket_up, prior), self._steps(bucket_down, prior)

    def _steps(self, surprise: float, prior: float) -> tuple[float, ...]:
        if surprise <= 0.0:  # the other side of the mean: p = 1 (half the buckets)
            return CALIBRATOR_FLOORS
        nats = self.bucket_tails.calibrated(surprise, prior) * LN10  # -ln p
        return tuple([floor + (1.0 - k) * nats for k, floor in CALIBRATOR_TERMS])

    def _calibrated_cusum_surprise(
        self, cusums: list[float], steps: tuple[float, ...], ln_share: float
    ) -> float:
        """-log10 of the calibrated CUSUMs' test: the largest after this bucket's steps,
        Bonferroni over the calibrators, with the CUSUM's share of the budget."""
        largest = 0.0
        for cusum, step in zip(cusums, steps, strict=True):
            largest = larger(largest, cusum + step)
        return _cusum_surprise(smaller(largest, self.params.cusum_cap) - LN_CALIBRATORS, ln_share)

    # -- river's contract ----------------------------------------------------------

    def score_one(self, bucket: Bucket) -> Signal:
        judged = self._judge(bucket)
        direction: Direction = "up"
        surprise = judged.surprise_up
        if judged.surprise_down > surprise or (
            judged.surprise_down == surprise and judged.observed < _midpoint(judged)
        ):
            direction, surprise = "down", judged.surprise_down
        warming_up = self._warming_up(judged.start) or self.learned == 0
        if self.params.calibrate and not warming_up:
            surprise = self._calibrated(judged, direction, surprise)
        expected, low, high = judged.against(direction)
        return Signal(
            series=bucket.series,
            measure=self.measure,
            start=bucket.start,
            end=bucket.end,
            observed=float(judged.observed),
            expected=expected,
            low=low,
            high=high,
            likelihood=smaller(1.0, larger(0.0, 1.0 - 10.0**-surprise)),
            direction=direction,
            surprise=surprise,
            warming_up=warming_up,
            run=None if warming_up else self._run(bucket, judged, direction),
        )

    def _run(self, bucket: Bucket, judged: Judgement, direction: Direction) -> Run | None:
        """The CUSUM's run through this bucket, when its evidence outweighs the bucket's
        own (the bucket alone does not explain the signal then)."""
        if direction == "up":
            if judged.cusum_surprise_up <= judged.bucket_up:
                return None
            tracker, ongoing = self.run_up, self.cusum_up > 0.0
        else:
            if judged.cusum_surprise_down <= judged.bucket_down:
                return None
            tracker, ongoing = self.run_down, self.cusum_down > 0.0
        expected = judged.against(direction)[0]
        return tracker.through(ongoing, bucket.start, judged.observed, expected)

    def _calibrated(self, judged: Judgement, direction: Direction, surprise: float) -> float:
        """A direction's surprise, calibrated on the series' own past: the rarity of an
        episode reaching its height, or the calibrated CUSUMs' evidence (how long the
        buckets have been unusual for this series), whichever is larger; never more
        than the model's own tests say."""
        constants = self._constants()
        if direction == "up":
            cusum, cusums, steps = judged.cusum_surprise_up, self.calibrated_up, judged.steps_up
        else:
            cusum, cusums = judged.cusum_surprise_down, self.calibrated_down
            steps = judged.steps_down
        calibrated_cusum = self._calibrated_cusum_surprise(cusums, steps, constants.ln_cusum_share)
        prior = constants.calibration_prior
        return larger(self.onsets.calibrated(surprise, prior), smaller(cusum, calibrated_cusum))

    def skip_hole(self, seconds: float) -> None:
        if self.first_start is not None:
            self.first_start += seconds

    def learn_one(self, bucket: Bucket) -> None:
        if self.first_start is None:
            self.first_start = bucket.start.timestamp()
        judged = self._judge(bucket, signal=False)  # score_one's, if it judged the bucket
        self.judged = None  # what is learned next changes the model
        constants = self._constants()
        hour, weekday, day = self._slots(bucket.start)
        # what learning the bucket does depends on whether it is in the warm-up, and
        # whether ``score_one`` judged it (after the warm-up, once a bucket is learned)
        warming_up = self._warming_up(judged.start)
        judging = not (warming_up or self.learned == 0)
        self._learn_onset(judged, judging, constants)
        adopt = self._learn_cusums(hour, weekday, judged, judging, constants)
        if self.cusum_up == 0.0 and self.cusum_down == 0.0:
            self.calm_level = self.level  # no sign of a change: the normal, so far
        self._learn_baseline(hour, weekday, day, judged, warming_up, constants)
        if adopt is not None:
            self._adopt(adopt, judged.start)
        if self.warmup_n and not self._warming_up(judged.start + self.width_seconds):
            self._initialise_rhythm()  # the next bucket is judged: start from the whole day

    def _learn_onset(self, judged: Judgement, judging: bool, constants: _Constants) -> None:
        """Step the episode's bar, count the bucket's onset, and its own test's surprise
        (only for a bucket judged: while warming up the model's surprise means little).
        The raw surprise, as ``score_one``'s would be if no level were remembered."""
        decay = constants.episode_decay
        if not judging:
            self.episode_bar *= decay
            return
        surprise = judged.raw_surprise
        keep = constants.calibration_keep
        self.onsets.learn(surprise - self.episode_bar, keep)
        self.episode_bar = larger(self.episode_bar * decay, surprise)
        self.bucket_tails.learn(judged.raw_bucket, keep)

    def _learn_cusums(
        self, hour: int, weekday: int, judged: Judgement, judging: bool, constants: _Constants
    ) -> float | None:
        """Step both CUSUMs; return a new level when a change has held long enough.

        A CUSUM near its cap has all the evidence any rule needs; one that stays there
        (at ``held_nats`` or more: its own test beyond ``adopt_likelihood``) for
        ``adopt_after_seconds`` sees a change that holds (a burst that fades lets it
        drain): the change is the new normal, and the level becomes the mean of the
        buckets that held it there. At the cap itself, one bucket a little below the
        shift broke the hold, and a x2 step alarmed for 9-11 hours instead of about 3.
        (Only for a bucket judged: else they stay at 0.)
        """
        if not judging:
            self._adopt(None, judged.start)
            return None
        value = judged.observed / (self.daily[hour] * self.weekly[weekday])
        cap = self.params.cusum_cap
        ongoing_up, ongoing_down = self.cusum_up > 0.0, self.cusum_down > 0.0
        self.cusum_up = _clamp(self.cusum_up + judged.llr_up, cap)
        self.cusum_down = _clamp(self.cusum_down + judged.llr_down, cap)
        # each run is against what its CUSUM was judged against; a return towards a
        # remembered level is adopted as any lasting change is (by the model's own
        # evidence, against the expected count), though it does not alarm
        expected_up = expected_down = judged.expected
        up_evidence, down_evidence = self.cusum_up, self.cusum_down
        if judged.remembered == judged.expected:  # nothing remembered (or no difference)
            self.cusum_return = 0.0
        else:
            self.cusum_return = _clamp(self.cusum_return + judged.llr_return, cap)
            if judged.remembered > judged.expected:
                expected_up, up_evidence = judged.remembered, self.cusum_return
            else:
                expected_down, down_evidence = judged.remembered, self.cusum_return
        observed = judged.observed
        self.run_up.advance(
            ongoing_up, judged.start, observed, expected_up, lasts=self.cusum_up > 0.0
        )
        self.run_down.advance(
            ongoing_down, judged.start, observed, expected_down, lasts=self.cusum_down > 0.0
        )
        for cusums, steps in (
            (self.calibrated_up, judged.steps_up),
            (self.calibrated_down, judged.steps_down),
        ):
            for i, step in enumerate(steps):
                cusums[i] = _clamp(cusums[i] + step, cap)
        held = up_evidence >= constants.held_nats
        self.held_up = self.held_up + 1 if held else 0
        self.held_up_sum = self.held_up_sum + value if held else 0.0
        held = down_evidence >= constants.held_nats
        self.held_down = self.held_down + 1 if held else 0
        self.held_down_sum = self.held_down_sum + value if held else 0.0
        if self.held_up > constants.adopt_after:
            return self.held_up_sum / self.held_up
        if self.held_down > constants.adopt_after:
            return self.held_down_sum / self.held_down
        return None

    def _adopt(self, level: float | None, start: float) -> None:
        """Start the CUSUMs again (from a new level adopted at ``start``, if one is given).

        A silence that lasts (a feed's outage) is adopted too, as a level of 0, and the
        normal before it is remembered: refused, the level still learned the zeros and
        fell, with no normal remembered, so the feed's recovery read as a 3-hour surge."""
        if level is not None:
            level = larger(level, 0.0)
            self._remember_shift(level, start)
            self.level = level
        self.cusum_up = self.cusum_down = self.cusum_return = 0.0
        self.run_up.keep(None)
        self.run_down.keep(None)
        self.calibrated_up[:] = NO_STEPS
        self.calibrated_down[:] = NO_STEPS
        self.held_up = self.held_down = 0
        self.held_up_sum = self.held_down_sum = 0.0

    def _remember_shift(self, level: float, start: float) -> None:
        """Remember the normal before a shift to ``level``: the level already remembered
        (the shift continues an episode), or the last calm one. A shift back near it
        (within ``sqrt(shift_factor)``: nearer it than the change the CUSUMs look for)
        ends the episode, and the memory: the crisis level is never the one remembered."""
        normal = self.shift_from if self._remembering(start) else self.calm_level
        self.week_high = self.week_low = 0.0  # an adopted change ends the first week's range
        near = self._constants().near
        if normal <= 0.0 or (level > 0.0 and abs(math.log(level / normal)) <= near):
            self.shift_from = self.shift_at = 0.0
        else:
            self.shift_from, self.shift_at = normal, start

    def _learn_baseline(
        self,
        hour: int,
        weekday: int,
        day: int,
        judged: Judgement,
        warming_up: bool,
        constants: _Constants,
    ) -> None:
        mu = judged.expected
        daily = self.daily
        season = daily[hour] * self.weekly[weekday]
        value, rhythm_value = self._robust(float(judged.observed), season, judged, warming_up)
        deseasonalised = value / season
        self.learned += 1
        if self.warmup_n and warming_up:
            self.warmup_n[hour] += 1
            self.warmup_sum[hour] += value
        else:  # the warm-up's days are judged against a rhythm still being learned
            self._learn_weekdays(day, daily[hour], rhythm_value)
        # Fast start: plain averages until the half-life's own weight takes over.
        a_level = larger(constants.level_alpha, 1.0 / self.learned)
        if self.learned > 1 and mu >= 1.0:
            raw = ((rhythm_value - mu) ** 2 - mu) / (mu * mu)
            a_disp = larger(constants.dispersion_alpha, 1.0 / self.learned)
            self.dispersion = smaller(
                1.0, larger(0.001, self.dispersion + a_disp * (raw - self.dispersion))
            )
        level_before = self.level
        if constants.hourly and not warming_up and level_before > 0.0:
            a_level = smaller(1.0, a_level * self._information(season) / self._day_information())
        self.level += a_level * (deseasonalised - self.level)
        if self.level < MIN_LEVEL:
            self.level = 0.0
        if self.level <= 0 or level_before <= 0:
            return

        if constants.hourly:
            # each bucket weighs as a negative binomial's likelihood weighs it (its score for
            # the factor, ``1 / (1 + dispersion x mu)``): where Poisson noise rules, by its
            # expected posts (the sums' ratio is the Poisson estimate: a night post at a
            # level that happened to be low is one post, not a factor of 20); where the
            # dispersion rules, each bucket alike (the ratios' mean: the buckets of a crisis
            # level, adopted then left, weigh no more than the others)
            keep = constants.daily_keep
            weight = 1.0 / (1.0 + self.dispersion * mu)
            self.hour_posts[hour] = self.hour_posts[hour] * keep + weight * rhythm_value
            self.hour_expected[hour] = (
                self.hour_expected[hour] * keep + weight * level_before * self.weekly[weekday]
            )
            daily[hour] = self._hour_factor(hour)
        # Once every slot has been seen, keep the factors averaging 1 (at each new hour),
        # so that ``level`` stays the mean rate.
        if hour != self.last_hour:
            self.last_hour = hour
            if min(self.hour_expected) > 0.0:  # every hour has been seen
                self._rescale(self._normalise_hours())
            if min(self.weekly_seen) > 0:
                self._rescale(_normalise(self.weekly))
            if constants.hourly:
                self._summarise_hours()

    def _normalise_hours(self) -> float:
        """Scale the hours' expected posts so that their ratios (posts over expected posts)
        average 1; return the scale, for the level to absorb."""
        ratios = [
            posts / expected
            for posts, expected in zip(self.hour_posts, self.hour_expected, strict=True)
            if expected > 0.0
        ]
        scale = math.fsum(ratios) / len(ratios) if ratios else 0.0
        if scale <= 0.0:
            return 1.0
        self.hour_expected = [value * scale for value in self.hour_expected]
        return scale

    def _rescale(self, scale: float) -> None:
        """The factors were divided by ``scale``: the levels, in their units, absorb it."""
        self.level *= scale
        self.calm_level *= scale
        self.shift_from *= scale
        self.week_high *= scale
        self.week_low *= scale

    def _information(self, season: float) -> float:
        """What a bucket at this seasonal factor says about the level: the Fisher
        information of a negative binomial count about its log mean, ``mu / (1 + dispersion
        x mu)``. The level learns each bucket in proportion to it (against the day's mean
        at the same level, ``_day_information``, so that the half-life holds over a day):
        where Poisson noise rules (a small series, a quiet hour) in proportion to the
        expected count, as a Poisson rate is estimated, so that one post in a night bucket
        expected to hold 0.05 is not read as twenty times the level; where the dispersion
        rules (a busy series), every bucket alike."""
        mu = self.level * season
        return mu / (1.0 + self.dispersion * mu)

    def _day_information(self) -> float:
        """The mean of ``_information`` over the day's hours, at the current level. (Worked
        out once an hour, at the level of then, it gave a small series whose level had
        since grown tenfold, its first posts after a quiet night, ten times the weight:
        one bucket could replace the level.)"""
        level = self.level
        saturation = self.dispersion * level
        return level * sum([f / (1.0 + saturation * f) for f in self.daily]) / 24.0

    def _initialise_rhythm(self) -> None:
        """At the warm-up's end: the level and the hour-of-day factors from the whole
        warm-up at once (each hour's mean against the day's mean), as Holt-Winters starts
        from its first season. Learned bucket by bucket, they were learned against a level
        that was itself still being learned from the first hours (the night, often): a
        quiet night's factors came out near 1, and the next night read as a collapse."""
        n, sums = self.warmup_n, self.warmup_sum
        self.warmup_n, self.warmup_sum = [], []
        total, buckets = math.fsum(sums), sum(n)
        if total <= 0.0 or buckets == 0:
            return  # nothing seen yet: the factors learn as they go
        mean = total / buckets
        self.hour_posts = list(sums)
        self.hour_expected = [seen * mean for seen in n]  # each ratio: its mean over the day's
        self.level = mean
        self.calm_level = self.week_high = self.week_low = self.level
        if self.width_seconds < DAY:
            self._summarise_hours()

    def _first_week_level(self) -> float:
        """Before any weekday factor is learned, the level of an earlier day that the tests
        towards it are judged against (0: none): a first week's days may differ (a quiet
        first weekend, and the Monday after it back at the weekdays' level), and a return
        to a level the series held at the end of a calm day this week is not news. The
        farthest of the highest and the lowest such level from the current one, if farther
        than ``sqrt(shift_factor)`` (the CUSUMs look for a change of ``shift_factor``)."""
        if self.week_low <= 0.0 or self.level <= 0.0:
            return 0.0
        above = math.log(self.week_high / self.level)
        below = math.log(self.level / self.week_low)
        if max(above, below) <= self._constants().near:
            return 0.0
        return self.week_high if above >= below else self.week_low

    def _remember_day_level(self) -> None:
        """A day has ended in the first week: its calm level widens the week's range (none
        once a week is learned, or after an adopted shift: ``week_low`` is 0 then)."""
        if self.week_low <= 0.0 or self.calm_level <= 0.0:
            return
        self.week_high = max(self.week_high, self.calm_level)
        self.week_low = min(self.week_low, self.calm_level)

    def _learn_weekdays(self, day: int, daily: float, value: float) -> None:
        """Sum the day's values over their hour's factor; when a day ends, its weekday's
        factor learns the day's mean against the mean of the last seven days (once seven
        have been seen). A factor learned bucket by bucket against ``level`` would learn
        nothing: the level follows a day within hours, so any factor fits its own day."""
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
        if day != self.day:
            if self.day >= 0:
                self._remember_day_level()
                self._learn_weekday((self.day + 3) % 7)
            self.day = day
            self.day_sums[weekday] = 0.0
            self.day_buckets[weekday] = 0
        self.day_sums[weekday] += value / daily
        self.day_buckets[weekday] += 1

    def _learn_weekday(self, weekday: int) -> None:
        """A day has ended: its weekday's factor learns it (the first whole week seen sets
        every weekday's at once, so that the first weekend is not news twice)."""
        if min(self.day_buckets) == 0:
            return  # not a whole week yet
        rates = [total / n for total, n in zip(self.day_sums, self.day_buckets, strict=True)]
        week = math.fsum(rates) / 7.0
        if min(rates) <= 0.0:
            return  # a day without a post is a gap (an outage, a silence), not a rhythm
        first_week = max(self.weekly_seen) == 0
        if first_week:
            self.week_high = self.week_low = 0.0  # the weekday factors say it from now on
        for day in range(7) if first_week else (weekday,):
            self.weekly_seen[day] += 1
            # the first week sets it as it is (its whole day of posts is evidence enough:
            # the factor is still shrunk by how many posts it rests on, see ``expected``)
            alpha = max(self._constants().weekly_alpha, 1.0 / self.weekly_seen[day])
            target = rates[day] / week
            self.weekly[day] = max(
                MIN_FACTOR, self.weekly[day] + alpha * (target - self.weekly[day])
            )


def _midpoint(judged: Judgement) -> float:
    """Where a bucket that neither direction finds surprising turns from up to down: the
    expected count, or, while a level is remembered, the geometric mean of the two (a
    return to the old level reads "down, against the old level"; the new level, "up")."""
    if judged.remembered == judged.expected:
        return judged.expected
    return math.sqrt(judged.remembered * judged.expected)


def _bucket_surprise(tail: float, budget: float) -> float:
    """-log10 of the bucket's own test: its tail, with its share of the budget (``budget``:
    ``1 - cusum_share``), as ``Signal.surprise_of`` gives it."""
    return -math.log10(larger(smaller(1.0, tail / budget), 1e-300))  # Signal.surprise_of


def _cusum_surprise(cusum: float, ln_share: float) -> float:
    """-log10 of the CUSUM's test: ``exp(-cusum) / cusum_share`` (weighted Bonferroni:
    the bucket's own test gets ``1 - cusum_share`` of the budget), in log space
    (``ln_share``: ``ln(cusum_share)``)."""
    return larger(0.0, (larger(cusum, 0.0) + ln_share) / LN10)


def _clamp(cusum: float, cap: float) -> float:
    """A CUSUM after its step: ``min(max(cusum, 0.0), cap)``, the same to the bit."""
    return 0.0 if cusum < 0.0 else cap if cusum > cap else cusum


def _general_tails(observed: int, mu: float, alpha: float) -> tuple[float, float, float, float]:
    """The expected band (low, high) and the mid-p tails (up, down) of a count.

    Mid-p (half the probability of the count itself): a discrete tail is otherwise
    conservative, and sharing the budget with the CUSUM makes it more so.
    """
    low, high = nbinom_band(mu, alpha)
    half = 0.5 * nbinom_pmf(observed, mu, alpha)
    if observed > mu:
        return low, high, nbinom_sf(observed, mu, alpha) - half, 1.0
    return low, high, 1.0, nbinom_cdf(observed, mu, alpha) - half


@functools.lru_cache(maxsize=64)
def _silent_band(alpha: float) -> tuple[float, float]:
    """``nbinom_band`` on the floor of the expected count, cached: a silent series sits
    there with a dispersion that no longer moves (it learns from means of 1 or more only),
    so the band of its empty buckets repeats, and is the same for many silent series."""
    return nbinom_band(MIN_EXPECTED, alpha)


def _tails(observed: int, mu: float, alpha: float) -> tuple[float, float, float, float]:
    """``_general_tails``, with a fast path for an empty bucket, the commonest bucket of a
    quiet series (topics, night hours, small brands), with the same results: 0 is never
    above the mean (at least ``MIN_EXPECTED``), its mid-p lower tail is ``P(0) - P(0) / 2``
    with ``P(0)`` in closed form (``nbinom_cdf`` at 0), and a silent series' band is cached."""
    low, high = _band(mu, alpha)
    up, down = _mid_p(observed, mu, alpha)
    return low, high, up, down


def _band(mu: float, alpha: float) -> tuple[float, float]:
    """``nbinom_band``, a silent series' cached (``_silent_band``)."""
    return _silent_band(alpha) if mu == MIN_EXPECTED else nbinom_band(mu, alpha)


def _mid_p(observed: int, mu: float, alpha: float) -> tuple[float, float]:
    """The mid-p tails (up, down) of ``_tails``, without the band."""
    if observed == 0:
        return 1.0, 0.5 * nbinom_cdf(0, mu, alpha)
    half = 0.5 * nbinom_pmf(observed, mu, alpha)
    if observed > mu:
        return nbinom_sf(observed, mu, alpha) - half, 1.0
    return 1.0, nbinom_cdf(observed, mu, alpha) - half


def _nb_llr(x: int, mu0: float, mu1: float, alpha: float) -> float:
    """log P(x | NB(mu1, alpha)) - log P(x | NB(mu0, alpha)); Poisson when alpha is 0.

    Its exponential has expectation 1 when x follows NB(mu0, alpha).
    """
    if alpha <= 0.0:
        return x * math.log(mu1 / mu0) - (mu1 - mu0)
    r = 1.0 / alpha
    return x * math.log(mu1 / mu0) + (r + x) * math.log((r + mu0) / (r + mu1))


def _normalise(factors: list[float]) -> float:
    """Scale seasonal factors to average 1; return the scale, for the level to absorb."""
    mean = math.fsum(factors) / len(factors)
    if mean <= 0:
        return 1.0
    for i, value in enumerate(factors):
        factors[i] = value / mean
    return mean
