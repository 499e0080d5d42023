"""Buckets in event time, count tails, and the detectors' contract."""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy
import pytest
from scipy import stats
from scipy.special import betaln

from tests.factories import T0, bucket, mention, rhythmic_share, share_detector_after
from xwatch.backtest import nab_scores
from xwatch.detect import volume
from xwatch.detect.buckets import Aggregator
from xwatch.detect.share import NegativeShareDetector, shrunk_factors
from xwatch.detect.state import to_state
from xwatch.detect.tails import (
    ONSET_EDGES,
    RESCALE_WEIGHT,
    OnsetTail,
    betabinom_mid_p,
    betabinom_sf,
    nbinom_band,
    nbinom_cdf,
    nbinom_pmf,
    nbinom_sf,
)
from xwatch.detect.volume import CountDetector, CountParams
from xwatch.model import Measure, Signal

# --- tails --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "mu", "alpha"),
    [(0, 3, 0.1), (5, 3, 0.1), (40, 10, 0.5), (3, 0.2, 0.0), (15, 5.0, 0.0), (2, 2, 2.0)],
)
def test_nbinom_tails_match_scipy(x: int, mu: float, alpha: float) -> None:
    if alpha == 0:
        sf, cdf = stats.poisson.sf(x - 1, mu), stats.poisson.cdf(x, mu)
    else:
        r = 1 / alpha
        sf, cdf = stats.nbinom.sf(x - 1, r, r / (r + mu)), stats.nbinom.cdf(x, r, r / (r + mu))
    assert nbinom_sf(x, mu, alpha) == pytest.approx(sf, rel=1e-9, abs=1e-15)
    assert nbinom_cdf(x, mu, alpha) == pytest.approx(cdf, rel=1e-9, abs=1e-15)
    pmf = stats.poisson.pmf(x, mu) if alpha == 0 else stats.nbinom.pmf(x, r, r / (r + mu))
    assert nbinom_pmf(x, mu, alpha) == pytest.approx(pmf, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(
    ("k", "n", "p", "c"),
    [(1, 2, 0.1, 100), (30, 100, 0.2, 50), (0, 10, 0.3, 10), (10, 10, 0.5, 5), (5, 40, 0.3, 20)],
)
def test_betabinom_tail_matches_scipy(k: int, n: int, p: float, c: float) -> None:
    expected = stats.betabinom.sf(k - 1, n, p * c, (1 - p) * c)
    assert betabinom_sf(k, n, p, c) == pytest.approx(expected, rel=1e-6, abs=1e-12)
    half = stats.betabinom.pmf(k, n, p * c, (1 - p) * c) / 2
    up, down = betabinom_mid_p(k, n, p, c)
    assert up == pytest.approx(expected - half, rel=1e-6, abs=1e-12)
    assert down == pytest.approx(1 - expected + half, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize(
    ("k", "n", "p", "c"),
    [
        (49, 100, 0.128, 300),
        (1405, 5000, 0.2145, 10_000),
        (600, 5000, 0.12, 10),
        (3, 5000, 0.1, 50),
    ],
)
def test_betabinom_tail_of_a_busy_bucket_matches_the_sum_of_its_terms(
    k: int, n: int, p: float, c: float
) -> None:
    """Thousands of posts, and upper tails far below 1e-12, where ``1 - cdf`` (and scipy's
    ``sf`` at (49, 100)) lose every digit: the tail is summed term by term, on the side
    of k away from the mean."""
    a, b = p * c, (1 - p) * c

    def pmf(j: int) -> float:
        log_choose = math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1)
        return math.exp(log_choose + betaln(j + a, n - j + b) - betaln(a, b))

    if k > n * p:
        expected = math.fsum(pmf(j) for j in range(k, n + 1))
    else:
        expected = 1.0 - math.fsum(pmf(j) for j in range(k))
    assert betabinom_sf(k, n, p, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("alpha", [0.0, 0.1, 2.0])
def test_count_tails_at_their_edges(alpha: float) -> None:
    """The edges a detector meets: a count of 0 or below (certain to be reached), a series
    whose expected count is 0 (only 0 can happen), an empty bucket's Poisson probability in
    closed form: exact values, not a scipy NaN or a log of 0."""
    assert nbinom_sf(0, 3.0, alpha) == 1.0 and nbinom_sf(-1, 0.0, alpha) == 1.0
    assert nbinom_sf(0, 0.0, alpha) == 1.0 and nbinom_sf(1, 0.0, alpha) == 0.0
    assert nbinom_cdf(-1, 3.0, alpha) == 0.0 and nbinom_cdf(-1, 0.0, alpha) == 0.0
    assert nbinom_cdf(2, 0.0, alpha) == 1.0
    assert nbinom_pmf(-1, 3.0, alpha) == 0.0
    assert nbinom_pmf(0, 0.0, alpha) == 1.0 and nbinom_pmf(3, 0.0, alpha) == 0.0
    empty = math.exp(-3.0) if alpha == 0.0 else (1 + alpha * 3.0) ** (-1 / alpha)
    assert nbinom_cdf(0, 3.0, alpha) == pytest.approx(empty, rel=1e-12)
    assert nbinom_band(0.0, alpha) == (0.0, 0.0)


def test_a_share_tail_beyond_the_bucket_is_zero() -> None:
    """More negatives than posts cannot happen: its tail is 0, not an error."""
    assert betabinom_sf(6, 5, 0.1, 100.0) == 0.0 and betabinom_sf(0, 5, 0.1, 100.0) == 1.0


# --- buckets ------------------------------------------------------------------


def test_buckets_close_by_event_time_including_empty_ones() -> None:
    agg = Aggregator((60,))
    agg.declare("b")
    for seconds in (5, 10, 70):
        assert agg.add(mention(at=seconds), "b")
    assert agg.close_until(T0 + timedelta(seconds=59)) == []  # the first minute is still open
    closed = agg.close_until(T0 + timedelta(seconds=240))
    assert [(b.start - T0).seconds for b in closed] == [0, 60, 120, 180]
    assert [b.count for b in closed] == [2, 1, 0, 0]


def test_a_post_for_a_closed_bucket_is_late_and_not_counted() -> None:
    agg = Aggregator((60, 300))
    agg.declare("b")
    agg.add(mention(at=0), "b")
    agg.close_until(T0 + timedelta(seconds=120))
    assert not agg.add(mention(at=30), "b")  # its minute closed
    later = agg.close_until(T0 + timedelta(seconds=600))
    five_minute = [b for b in later if b.series.scale_seconds == 300]
    assert five_minute[0].count == 2  # still open at the 5-minute scale, so counted there


def test_bucket_samples_put_negative_high_reach_posts_first() -> None:
    agg = Aggregator((60,), samples=2)
    agg.declare("b")
    agg.add(mention("calm big", at=1, followers=10_000, negative=False, id="a"), "b")
    agg.add(mention("angry small", at=2, followers=10, negative=True, id="b"), "b")
    agg.add(mention("angry big", at=3, followers=5_000, negative=True, id="c"), "b")
    [closed] = agg.close_until(T0 + timedelta(seconds=60))
    assert [m.id for m in closed.samples] == ["c", "b"]
    assert closed.negative == 2 and closed.count == 3


def test_a_post_for_a_bucket_due_to_close_is_late_before_the_close() -> None:
    """The watermark before a post (``add``'s ``watermark``) makes a post late exactly as if
    the posts had come one at a time: a bucket that ends at or before it is closed."""
    agg = Aggregator((60,))
    agg.declare("b")
    agg.add(mention(at=0), "b")
    end = (T0 + timedelta(seconds=60)).timestamp()
    assert not agg.add(mention(at=59), "b", watermark=end)
    assert agg.add(mention(at=59), "b", watermark=end - 1)
    assert agg.add(mention(at=60), "b", watermark=end)  # the next minute's


def test_a_post_that_beats_the_weakest_sample_takes_its_place() -> None:
    agg = Aggregator((60,), samples=2)
    agg.declare("b")
    for i, followers in enumerate((100, 300, 200, 50)):
        agg.add(mention(f"post {i}", at=i, followers=followers, id=f"p{followers}"), "b")
    [closed] = agg.close_until(T0 + timedelta(seconds=60))
    assert [m.id for m in closed.samples] == ["p300", "p200"]


def test_a_bucket_s_reach_is_the_sum_of_its_posts_and_a_quiet_bucket_s_is_zero() -> None:
    agg = Aggregator((60,))
    agg.declare("b")
    agg.add(mention("one", at=5, followers=100), "b")
    agg.add(mention("two", at=10, followers=250), "b")
    closed = agg.close_until(T0 + timedelta(seconds=120))
    assert [(b.count, b.reach) for b in closed] == [(2, 350), (0, 0)]


def test_an_open_bucket_is_seen_as_it_stands_and_a_closed_one_not_at_all() -> None:
    """What an early judgement scores (``SeriesBuckets.peek``): the posts so far, their
    samples ranked as a closed bucket's, ending at the post that is judged."""
    agg = Aggregator((60,), samples=2)
    agg.declare("b")
    agg.add(mention("calm big", at=1, followers=10_000, negative=False, id="a"), "b")
    agg.add(mention("angry small", at=2, followers=10, negative=True, id="b"), "b")
    agg.add(mention("angry big", at=3, followers=5_000, negative=True, id="c"), "b")
    [series] = agg.scales_of("b")
    first = int(T0.timestamp()) // 60
    partial = series.peek(first, T0 + timedelta(seconds=3))
    assert partial is not None
    assert (partial.start, partial.end) == (T0, T0 + timedelta(seconds=3))
    assert (partial.count, partial.negative, partial.reach) == (3, 2, 15_010)
    assert [m.id for m in partial.samples] == ["c", "b"]
    assert series.peek(first + 1, T0 + timedelta(seconds=61)) is None  # no post in it
    agg.close_until(T0 + timedelta(seconds=60))
    assert series.peek(first, T0 + timedelta(seconds=60)) is None  # closed


def test_a_topic_is_counted_at_the_scales_declared_for_it_and_a_reload_adds_none_twice() -> None:
    """A topic's rules may judge 5 minutes only: its posts go in no other scale's series;
    declaring it again (a reload) adds the new scales and counts each post once."""
    agg = Aggregator((60, 300, 900))
    agg.declare("b", "refunds", (900,))
    agg.declare("b", "refunds", (300, 900))  # the rules changed: 5 minutes too
    assert agg.add(mention(at=5), "b", "refunds")
    assert [s.key.scale_seconds for s in agg.scales_of("b", "refunds")] == [300, 900]
    assert {key.scale_seconds for key in agg.series if key.topic == "refunds"} == {300, 900}
    closed = agg.close_until(T0 + timedelta(seconds=900))
    assert [(b.series.scale_seconds, b.count) for b in closed if b.count] == [(300, 1), (900, 1)]


def test_a_topic_added_after_buckets_closed_starts_at_the_bucket_the_watermark_is_in() -> None:
    """A topic rule added by a reload, after an hour: its series started at the first
    post's bucket, so the next round closed an hour of empty buckets for it (three days
    at one minute: 4,300), which its detectors learned as a silence it never had."""
    agg = Aggregator((60, 900))
    agg.declare("b")
    agg.add(mention(at=0), "b")
    agg.close_until(T0 + timedelta(hours=1, seconds=30))
    agg.declare("b", "refunds")
    assert agg.add(mention(at=3600 + 40), "b", "refunds")  # the open minute: on time
    assert not agg.add(mention(at=3500), "b", "refunds")  # a closed minute: late
    closed = agg.close_until(T0 + timedelta(hours=1, minutes=15))
    refunds = [b for b in closed if b.series.topic == "refunds"]
    assert [b.start for b in refunds if b.series.scale_seconds == 60] == [
        T0 + timedelta(hours=1, minutes=m) for m in range(15)
    ]
    # the quarter the watermark was in (not the four before it), with the post
    assert [(b.start, b.count) for b in refunds if b.series.scale_seconds == 900] == [
        (T0 + timedelta(hours=1), 1)
    ]


def test_an_earlier_post_moves_the_start_back_only_within_the_rewind_and_before_a_close() -> None:
    """A first post from a fast clock must not make the next minutes' posts late; a
    straggler from further back, or one after a bucket closed, must not move the start
    (the detectors would learn empty buckets, or buckets would close twice)."""
    agg = Aggregator((60,), rewind_seconds=120)
    agg.declare("b")
    assert not agg.due_by(T0)  # no post yet: nothing to close
    agg.add(mention(at=130), "b")  # fast: the first post
    agg.add(mention(at=-600), "b")  # ten minutes before it: not a rewind
    assert agg.start == (T0 + timedelta(seconds=130)).timestamp()
    agg.add(mention(at=30), "b")  # within the rewind: the series start at its minute
    assert agg.start == (T0 + timedelta(seconds=30)).timestamp()
    assert not agg.due_by(T0 + timedelta(seconds=59))
    assert agg.due_by(T0 + timedelta(seconds=60))
    [first] = agg.close_until(T0 + timedelta(seconds=60))
    assert (first.start, first.count) == (T0, 1)
    assert not agg.add(mention(at=15), "b")  # in the rewind, but a bucket closed: late
    agg.begin((T0 + timedelta(seconds=15)).timestamp())  # (an own post's, or another shard's)
    agg.begin((T0 + timedelta(seconds=600)).timestamp())  # nor does a jump ahead move it
    closed = agg.close_until(T0 + timedelta(seconds=180))
    assert [(b.start - T0, b.count) for b in closed] == [
        (timedelta(seconds=60), 0),
        (timedelta(seconds=120), 1),
    ]


def test_buckets_close_oldest_first_then_finest_scale_then_brand() -> None:
    """The pipeline judges the buckets that end at one instant as one round, in the order
    they come: a round out of order would move the alerts' time backwards."""
    agg = Aggregator((60, 300))
    agg.declare("zeta")
    agg.declare("alpha")
    agg.add(mention(at=5), "zeta")
    closed = agg.close_until(T0 + timedelta(seconds=600))
    order = [(b.end - T0, b.series.scale_seconds, b.series.brand) for b in closed]
    assert order == sorted(order) and len(order) == 2 * (10 + 2)
    assert order[8:12] == [
        (timedelta(seconds=300), 60, "alpha"),
        (timedelta(seconds=300), 60, "zeta"),
        (timedelta(seconds=300), 300, "alpha"),
        (timedelta(seconds=300), 300, "zeta"),
    ]


# --- count detector -------------------------------------------------------------


def poisson_series(rate: float, n: int, seed: int = 1) -> list[int]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        # Knuth's Poisson sampler: fine for the small rates used here
        limit, k, p = pow(2.718281828459045, -rate), 0, 1.0
        while True:
            p *= rng.random()
            if p <= limit:
                break
            k += 1
        out.append(k)
    return out


def run_counts(
    counts: list[int], scale: int = 300
) -> tuple[CountDetector, list[float], list[bool]]:
    detector = CountDetector(Measure.VOLUME, scale)
    likelihoods, warming = [], []
    for i, count in enumerate(counts):
        b = bucket(T0 + timedelta(seconds=i * scale), count, scale=scale)
        signal = detector.score_one(b)
        likelihoods.append(signal.likelihood if signal.direction == "up" else 0.0)
        warming.append(signal.warming_up)
        detector.learn_one(b)
    return detector, likelihoods, warming


def test_no_alarm_during_warm_up() -> None:
    _, _, warming = run_counts([5] * 10 + [500] + [5] * 400)
    assert warming[10]  # the huge value comes before a day of history
    assert all(warming[: 24 * 12]) and not any(warming[24 * 12 :])


def test_a_10x_spike_is_flagged_in_its_first_bucket() -> None:
    counts = poisson_series(20, 2 * 288, seed=3)
    counts[-1] = 200
    _, likelihoods, warming = run_counts(counts)
    assert not warming[-1]
    assert likelihoods[-1] > 0.99999
    assert max(likelihoods[300:-1]) < 0.9999  # and the calm part before it stays calm


def test_small_counts_are_judged_by_their_tail_not_a_z_score() -> None:
    detector, _, _ = run_counts(poisson_series(2, 2 * 288, seed=4))
    b6 = bucket(T0 + timedelta(days=2), 6)
    b15 = bucket(T0 + timedelta(days=2), 15)
    assert detector.score_one(b6).likelihood < 0.999  # 2 → 6 happens
    assert detector.score_one(b15).likelihood > 0.99999  # 2 → 15 does not


def test_likelihood_is_calibrated_on_a_stationary_poisson_stream() -> None:
    counts = poisson_series(30, 12 * 288, seed=5)
    _, likelihoods, warming = run_counts(counts)
    judged = [lk for lk, w in zip(likelihoods, warming, strict=True) if not w]
    rate = sum(lk >= 0.99 for lk in judged) / len(judged)
    assert 0.005 <= rate <= 0.02  # nominal 1 % upward tail, within a factor 2


@pytest.mark.parametrize(("per_bucket", "seed"), [(0.02, 3), (0.1, 2)])
def test_likelihood_is_calibrated_on_a_small_poisson_stream(per_bucket: float, seed: int) -> None:
    """Six and thirty posts a day (a topic, a small brand's complaints): its quiet hours
    are no outage. They were: the band's bottom, a gamma's, is above 0 however small
    the expected count, so an empty bucket was below it; three hours of them (as likely
    as not at six posts a day) were adopted as a silence, a level of 0, and the next
    post was judged against the floor of 0.001 posts: 7.6 and 3.1 buckets in 1,000 at
    0.999 on these streams, upwards alone (now 0.3 and 0.3)."""
    counts = poisson_series(per_bucket, 28 * 288, seed=seed)
    _, likelihoods, warming = run_counts(counts)
    judged = [lk for lk, w in zip(likelihoods, warming, strict=True) if not w]
    rate = sum(lk >= 0.999 for lk in judged) / len(judged)
    assert rate <= 0.002  # nominal 0.1 % upwards, within a factor 2


def test_three_quiet_hours_of_a_small_series_are_no_outage() -> None:
    counts = poisson_series(0.1, 3 * 288, seed=3)
    counts += [0] * 48  # four hours without a post: P = 0.7 % at this rate, a few a month
    detector, _, _ = run_counts(counts)
    assert detector.level > 0.05  # not adopted as a level of 0
    assert detector.shift_from == 0.0  # no change remembered either


def rhythmic_poisson(per_bucket: float, days: int, *, weekend: float = 1.0, seed: int) -> list[int]:
    """A stationary Poisson stream of 5-minute buckets from T0 (a Monday) with a strong daily
    rhythm (19x from the night's trough to the afternoon's peak) and, if asked, quieter
    weekends."""
    rng = numpy.random.default_rng(seed)
    counts = []
    for i in range(days * 288):
        at = T0 + timedelta(seconds=300 * i)
        rate = per_bucket * (1 + 0.9 * math.cos((at.hour + at.minute / 60 - 14) / 24 * 2 * math.pi))
        counts.append(int(rng.poisson(rate * (weekend if at.weekday() >= 5 else 1.0))))
    return counts


def judge_all(counts: list[int]) -> tuple[CountDetector, list[Signal]]:
    detector, signals = CountDetector(Measure.VOLUME, 300), []
    for i, count in enumerate(counts):
        b = bucket(T0 + timedelta(seconds=300 * i), count)
        signals.append(detector.score_one(b))
        detector.learn_one(b)
    return detector, signals


@pytest.mark.parametrize(("per_bucket", "seed"), [(0.5, 2), (2.0, 7), (20.0, 7)])
def test_likelihood_is_calibrated_on_a_poisson_stream_with_a_daily_rhythm(
    per_bucket: float, seed: int
) -> None:
    """Either way, up or down. It was not: the night's factors, learned in the warm-up
    against a level still learning from the night itself, came out near 1, and were pulled
    towards 1 while few posts backed them; the weekday factors learned nothing (see below).
    Every night of the first week read as a collapse: 34-56 buckets in 1,000 at 0.999 at 2
    posts a bucket, 7-17 at 20. At 0.5 (150 posts a day) the level itself wandered: each
    night post, divided by a night factor of 0.1, moved it as ten day posts do, and the
    morning after expected half as much again as came (42 buckets in 1,000 on this
    stream, 0-9 on others, mostly down)."""
    _, signals = judge_all(rhythmic_poisson(per_bucket, 21, seed=seed))
    judged = [s for s in signals if not s.warming_up]
    rate = sum(s.likelihood >= 0.999 for s in judged) / len(judged)
    assert rate <= 0.002  # nominal 0.1 % each way


def test_weekday_factors_are_learned_from_whole_days() -> None:
    """A stream without a weekly rhythm learns none, and quiet weekends are learned. They
    were learned bucket by bucket against the level, which follows a day within hours: any
    factor fitted its own day, and a flat stream ended with factors from 0.6 to 1.8 (a
    "collapse" every week on the day set highest)."""
    flat, _ = judge_all(rhythmic_poisson(20.0, 28, seed=8))
    assert max(abs(factor - 1.0) for factor in flat.weekly) < 0.1
    quiet_weekends, _ = judge_all(rhythmic_poisson(20.0, 28, weekend=0.6, seed=8))
    weekdays = sum(quiet_weekends.weekly[:5]) / 5
    assert quiet_weekends.weekly[5] / weekdays == pytest.approx(0.6, abs=0.1)
    assert quiet_weekends.weekly[6] / weekdays == pytest.approx(0.6, abs=0.1)


def level_step(detector: CountDetector, at: datetime, count: int) -> float:
    """How far the level moves, relative to itself, on learning one bucket."""
    before = detector.level
    detector.score_one(bucket(at, count))
    detector.learn_one(bucket(at, count))
    return detector.level / before - 1.0


def test_a_quiet_night_post_moves_the_level_as_little_as_it_says() -> None:
    """The level learns each bucket by its information: on a small series, in proportion
    to the bucket's expected count, as a Poisson rate is estimated. One post in a night
    bucket expected to hold 0.05 is a small surprise in posts, not twenty times the level
    (it moved the level as much as 10 posts above the expected count at the peak did).
    Three days: on a day's posts alone, the night's factor is still shrunk towards 1 (an
    hour resting on 6 posts at a factor of 1 is mostly noise)."""
    detector, _ = judge_all(rhythmic_poisson(0.5, 3, seed=5))
    night = T0 + timedelta(days=3, hours=3)  # a 03:00 bucket: 0.06 expected, truly
    assert detector.expected(night) < 0.2
    night_post = level_step(detector, night, 1)
    peak = T0 + timedelta(days=3, hours=14)
    peak_post = level_step(detector, peak, round(detector.expected(peak)) + 1)
    assert 0 < night_post < 2 * peak_post


def test_on_a_busy_series_every_hour_teaches_the_level_alike() -> None:
    """Where the dispersion, not Poisson noise, rules, a night bucket 20 % up says as much
    about the level as a peak bucket 20 % up."""
    detector, _ = judge_all(rhythmic_poisson(2000.0, 2, seed=6))
    night, peak = T0 + timedelta(days=2, hours=3), T0 + timedelta(days=2, hours=14)
    night_step = level_step(detector, night, round(1.2 * detector.expected(night)))
    peak_step = level_step(detector, peak, round(1.2 * detector.expected(peak)))
    assert night_step == pytest.approx(peak_step, rel=0.5)


@pytest.mark.parametrize(("per_bucket", "seed"), [(200.0, 3), (200.0, 6), (20.0, 6), (20.0, 8)])
def test_the_monday_after_a_big_brand_s_first_quiet_weekend_is_not_news(
    per_bucket: float, seed: int
) -> None:
    """Until a week has been seen there are no weekday factors: the level learned the
    first weekend's 0.6x, and the Monday after, back at the weekdays' level, read as a
    surge (at 200 posts a bucket, hours of buckets at 0.9999). A return to a level held
    at the end of a calm day this week is not news; the first quiet Saturday still is
    (nothing so low has been seen). Where Saturday's fall was adopted as a shift (seeds
    6 and 8), the level before it is remembered until the weekday factors are learned,
    not a day only: the Monday after read as a surge (46-47 buckets at 0.999)."""
    detector, signals = judge_all(rhythmic_poisson(per_bucket, 9, weekend=0.6, seed=seed))
    monday = signals[7 * 288 : 7 * 288 + 144]  # the Monday after, to noon
    assert not [s for s in monday if s.likelihood >= 0.999]
    assert detector.week_high == detector.week_low == 0.0  # a week learned: factors say it
    assert detector.weekly[5] < 0.7 < detector.weekly[1]


def test_the_warm_up_day_sets_the_rhythm_as_a_whole() -> None:
    """The first night after the warm-up is expected as quiet as the warm-up's was."""
    detector, signals = judge_all(rhythmic_poisson(2.0, 2, seed=9))
    expected = true = 0.0
    for signal in signals[288 : 288 + 72]:  # 00:00-06:00: 0.2-0.7 posts a bucket
        hour = signal.start.hour + signal.start.minute / 60
        true += 2.0 * (1 + 0.9 * math.cos((hour - 14) / 24 * 2 * math.pi))
        expected += signal.expected
    assert expected / true < 1.5  # it was 3.1
    assert not [s for s in signals if not s.warming_up and s.likelihood >= 0.999]
    assert detector.warmup_n == []  # taken once, then let go


def test_likelihood_is_calibrated_on_a_bursty_negative_binomial_stream() -> None:
    """Counts like real mentions: a daily rhythm and more spread than Poisson."""
    rng = random.Random(12)
    counts = []
    for i in range(12 * 288):
        mean = 20.0 * (1.0 + 0.6 * math.sin(2 * math.pi * i / 288))
        rate = rng.gammavariate(1 / 0.3, 0.3 * mean)  # NB(mean, dispersion 0.3)
        counts.append(poisson_series(rate, 1, seed=i)[0])
    _, likelihoods, warming = run_counts(counts)
    judged = [lk for lk, w in zip(likelihoods, warming, strict=True) if not w]
    rate = sum(lk >= 0.99 for lk in judged) / len(judged)
    assert 0.005 <= rate <= 0.02  # nominal 1 % upward tail, within a factor 2


def test_a_sustained_doubling_is_flagged_though_no_bucket_alone_is_extreme() -> None:
    before, after = poisson_series(5, 2 * 288, seed=17), poisson_series(10, 24, seed=18)
    step = len(before)

    def first_alarm(params: CountParams) -> int | None:
        detector = CountDetector(Measure.VOLUME, 300, params)
        for i, count in enumerate(before + after):
            b = bucket(T0 + timedelta(seconds=i * 300), count, scale=300)
            signal = detector.score_one(b)
            detector.learn_one(b)
            if i >= step and signal.direction == "up" and signal.likelihood >= 0.9999:
                return i - step
        return None

    found = first_alarm(CountParams())
    assert found is not None and found < 24  # within the two hours
    assert first_alarm(CountParams(cusum_cap=0.0)) is None  # the buckets' own tails: missed


def test_learning_without_scoring_learns_the_same() -> None:
    """score_one keeps its work for learn_one: that must not change what is learned."""
    counts = poisson_series(10, 2 * 288, seed=15)
    scored, _, _ = run_counts(counts)
    unscored = CountDetector(Measure.VOLUME, 300)
    for i, count in enumerate(counts):
        unscored.learn_one(bucket(T0 + timedelta(seconds=i * 300), count, scale=300))
    assert unscored == scored


def quiet_stream(seed: int) -> list[tuple[int, int]]:
    """(mentions, negatives) of a quiet series: mostly empty buckets (small Poisson means
    around a daily rhythm), bursts, and silent days (the expected count on its floor)."""
    rng = numpy.random.default_rng(seed)
    out = []
    for i in range(14 * 288):
        day = i // 288
        mean = 0.4 * (1.0 + 0.9 * math.sin(2 * math.pi * (i % 288) / 288))
        if day in (5, 6, 7) or (day == 11 and i % 288 < 144):
            mean = 0.0  # a silent stretch
        elif rng.random() < 0.01:
            mean *= 40.0  # a burst
        count = int(rng.poisson(mean))
        out.append((count, int(rng.binomial(count, 0.2))))
    return out


@pytest.mark.parametrize(
    ("measure", "scale"), [(Measure.VOLUME, 300), (Measure.NEGATIVE_VOLUME, 900)]
)
def test_the_empty_bucket_fast_path_judges_and_learns_as_the_general_one(
    measure: Measure, scale: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, general = CountDetector(measure, scale), CountDetector(measure, scale)
    empty = 0
    for i, (count, negative) in enumerate(quiet_stream(seed=scale)):
        b = bucket(T0 + timedelta(seconds=i * scale), count, negative, scale=scale)
        fast_signal = fast.score_one(b)
        fast.learn_one(b)
        with monkeypatch.context() as patched:
            patched.setattr(volume, "_tails", volume._general_tails)
            general_signal = general.score_one(b)
            general.learn_one(b)
        learned_fast, learned_general = dataclasses.asdict(fast), dataclasses.asdict(general)
        # the model learned: identical; the calibration learns the surprise, which the
        # two paths compute alike to the last bits
        bar = learned_fast.pop("episode_bar"), learned_general.pop("episode_bar")
        assert bar[0] == pytest.approx(bar[1], rel=1e-12, abs=1e-12)
        for name in ("onsets", "bucket_tails"):
            tails = learned_fast.pop(name), learned_general.pop(name)
            assert tails[0]["reached"] == tails[1]["reached"]
            assert tails[0]["excess"] == pytest.approx(tails[1]["excess"], rel=1e-9, abs=1e-12)
        for name in ("calibrated_up", "calibrated_down"):
            cusums = learned_fast.pop(name), learned_general.pop(name)
            assert cusums[0] == pytest.approx(cusums[1], rel=1e-9, abs=1e-12)
        assert learned_fast == learned_general
        for field in dataclasses.fields(general_signal):
            value = getattr(general_signal, field.name)
            if isinstance(value, float):
                assert getattr(fast_signal, field.name) == pytest.approx(value, rel=1e-12, abs=0)
            else:
                assert getattr(fast_signal, field.name) == value
        empty += fast_signal.observed == 0
    assert empty > len(quiet_stream(seed=scale)) // 2  # the fast path was the common one


def test_robust_learning_a_spike_does_not_become_the_baseline() -> None:
    counts = poisson_series(20, 2 * 288, seed=6)
    detector, _, _ = run_counts(counts)
    before = detector.level
    for i in range(6):  # half an hour of a 10x crisis
        b = bucket(T0 + timedelta(days=2, seconds=300 * i), 200)
        detector.score_one(b)
        detector.learn_one(b)
    assert detector.level < before * 1.5


# --- negative share detector -------------------------------------------------------


def test_one_negative_out_of_two_is_not_a_crisis() -> None:
    detector = share_detector_after(1, 10, 0.1)
    signal = detector.score_one(bucket(T0 + timedelta(days=1), 2, 1))
    assert not signal.warming_up
    assert signal.likelihood < 0.9


def test_a_negative_wave_is_flagged() -> None:
    detector = share_detector_after(1, 10, 0.1)
    signal = detector.score_one(bucket(T0 + timedelta(days=1), 40, 24))
    assert signal.direction == "up"
    assert signal.likelihood > 0.99999
    assert signal.expected == pytest.approx(0.1, abs=0.03)


def test_a_step_change_alerts_at_once_then_becomes_the_new_normal() -> None:
    before, after = poisson_series(20, 2 * 288, seed=8), poisson_series(60, 2 * 288, seed=9)
    _, likelihoods, _ = run_counts(before + after)
    step = len(before)
    alarming = [i for i, lk in enumerate(likelihoods[step:], start=step) if lk >= 0.9999]
    assert alarming[0] == step  # the first bucket of the new level
    # one episode: within a few hours the new level is adopted and the alarms stop
    assert alarming[-1] - step < 6 * 12
    assert max(likelihoods[step + 6 * 12 :]) < 0.9999


@pytest.mark.parametrize("per_bucket", [20.0, 200.0])
def test_a_doubling_is_the_new_normal_about_three_hours_after_it_starts(
    per_bucket: float,
) -> None:
    """A lasting x2 on a busy series with the daily rhythm: adopted once its CUSUM has
    held the change for ``adopt_after_seconds`` (3 hours), so the alarms stop by about
    then. Held meant at the cap itself: any bucket a little below the doubling took the
    CUSUM from it, and the alarms went on for 9 to 11 hours."""
    rng = numpy.random.default_rng(4)
    detector, step, last = CountDetector(Measure.VOLUME, 300), 8 * 288, 0
    for i in range(step + 12 * 12):
        at = T0 + timedelta(seconds=300 * i)
        rate = per_bucket * (1 + 0.9 * math.cos((at.hour + at.minute / 60 - 14) / 24 * 2 * math.pi))
        b = bucket(at, int(rng.poisson(rate * (2.0 if i >= step else 1.0))))
        if detector.score_one(b).likelihood >= 0.9999 and i >= step:
            last = i
        detector.learn_one(b)
    assert step < last < step + 6 * 12


HOUR = 12  # buckets of 5 minutes


def run_signals(
    counts: list[int], params: CountParams | None = None
) -> tuple[CountDetector, list[Signal]]:
    """Every bucket's signal, 5-minute buckets from T0, each learned after it is judged."""
    detector = CountDetector(Measure.VOLUME, 300, params or CountParams())
    signals = []
    for i, count in enumerate(counts):
        b = bucket(T0 + timedelta(seconds=i * 300), count)
        signals.append(detector.score_one(b))
        detector.learn_one(b)
    return detector, signals


def alarms(signals: list[Signal], direction: str) -> list[int]:
    """The buckets that alarm that way (as the shipped rules' 0.9999 do)."""
    return [
        i
        for i, s in enumerate(signals)
        if s.direction == direction and s.likelihood >= 0.9999 and not s.warming_up
    ]


def calm_crisis_calm(
    crisis_hours: int, after_hours: int, calm_days: int = 2
) -> tuple[list[int], int, int]:
    """Two calm days (or ``calm_days``) at 20 a bucket, a crisis at x5, then 20 again: the
    counts, and where the crisis starts and ends."""
    calm = poisson_series(20, calm_days * 288, seed=30)
    crisis = poisson_series(100, crisis_hours * HOUR, seed=31)
    after = poisson_series(20, after_hours * HOUR, seed=32)
    return calm + crisis + after, len(calm), len(calm) + len(crisis)


def test_the_end_of_a_crisis_adopted_as_the_new_normal_is_not_a_collapse() -> None:
    """Five hours at x5: adopted after three, but the return to the usual level is not
    news; it is adopted in turn (silently), which ends the memory of the old level."""
    counts, start, end = calm_crisis_calm(crisis_hours=5, after_hours=12)
    detector, signals = run_signals(counts)
    assert alarms(signals, "up")[0] == start
    assert alarms(signals, "down") == []
    back = signals[end + HOUR]  # said against the level it was judged against
    assert back.direction == "down"
    assert back.low <= back.observed <= back.high and back.expected < 30
    assert detector.shift_from == 0.0  # the old level came back: nothing remembered
    assert detector.level == pytest.approx(20, rel=0.2)


@pytest.mark.parametrize("calibrate", [True, False])
def test_the_end_of_an_adopted_crisis_is_no_news_to_the_model_itself(calibrate: bool) -> None:
    """The return to the remembered level is judged against it by the bucket's own down
    test too, not only by the CUSUM: it is no surprise to the model (uncalibrated), and
    not merely discounted by the crisis in the series' own past (calibrated, where it
    read 0.9998 when the bucket's test was judged against the crisis level)."""
    counts, _, end = calm_crisis_calm(crisis_hours=5, after_hours=12)
    _, signals = run_signals(counts, CountParams(calibrate=calibrate))
    assert max(s.likelihood for s in signals[end:] if s.direction == "down") < 0.99


def test_the_end_of_an_adopted_fall_is_adopted_in_turn() -> None:
    """Five hours at 0.4x (adopted after three), then the usual level again: the return
    is no news (no up alarm) and is adopted by the model's own evidence against the
    expected count (``cusum_return``), as the end of an adopted crisis is; the memory of
    the old level ends and the level is the usual one again. Held by the up CUSUM, which
    is judged against the remembered level and sees nothing, it was not: eight hours
    later the level was still 15, not 20, and the old level still remembered."""
    calm = poisson_series(20, 2 * 288, seed=33)
    fall = poisson_series(8, 5 * HOUR, seed=43)
    back = poisson_series(20, 8 * HOUR, seed=44)
    detector, signals = run_signals(calm + fall + back)
    assert alarms(signals, "up") == []
    assert detector.shift_from == 0.0
    assert detector.level == pytest.approx(20, rel=0.1)


def test_a_collapse_below_the_old_normal_still_alarms_after_an_adopted_crisis() -> None:
    """An hour after the crisis (the old level still remembered), mentions all but stop:
    that is news (within the hour: the crisis, in the series' own past, makes its first
    buckets less rare than on a calm series)."""
    counts, _, end = calm_crisis_calm(crisis_hours=5, after_hours=1)
    counts += poisson_series(1, 2 * HOUR, seed=33)
    _, signals = run_signals(counts)
    down = alarms(signals, "down")
    assert down and end + HOUR <= down[0] < end + 2 * HOUR
    collapse = signals[down[0]]  # against the old level, not the crisis level
    assert collapse.expected == pytest.approx(20, rel=0.3) and collapse.observed < collapse.low


def test_a_new_crisis_after_the_old_level_came_back_alarms_again() -> None:
    """Calm, a crisis adopted, back to calm (adopted again), then the same crisis: the
    memory is the calm level, never the crisis level, so the second crisis is news."""
    counts, start, _ = calm_crisis_calm(crisis_hours=5, after_hours=6)
    counts += poisson_series(100, HOUR, seed=34)
    _, signals = run_signals(counts)
    assert alarms(signals, "down") == []
    assert alarms(signals, "up")[0] == start
    assert len(counts) - HOUR in alarms(signals, "up")  # the second one's first bucket


def test_a_series_silent_for_a_year_is_still_judged() -> None:
    """A brand or a topic that goes silent: its level halves every few hours of silence
    and, after about 217 days of hourly buckets, reached the subnormal floats, where
    level x weekday factor rounds to 0: learning the next empty bucket divided by zero,
    and the daemon's pipeline raised on every batch (on every restart too: the
    checkpoint held the level). The level now drops to 0 first, and a post after the
    silence is news."""
    detector = CountDetector(Measure.VOLUME, 3600)
    for i in range(365 * 24):
        b = bucket(T0 + timedelta(hours=i), 20 if i < 3 * 24 else 0, scale=3600)
        detector.score_one(b)
        detector.learn_one(b)
    assert detector.level == 0.0
    back = bucket(T0 + timedelta(days=365), 20, scale=3600)
    signal = detector.score_one(back)
    assert signal.direction == "up" and signal.likelihood >= 0.9999


def test_a_series_silent_for_weeks_is_not_a_drop_for_ever() -> None:
    """A series that has gone silent sits on the floor of the expected count (0.001 a
    bucket). Each empty bucket there is a tiny piece of evidence that the rate is below
    the floor (it is: it is 0), and the down CUSUM added them up: after about two weeks of
    1-minute buckets, a series silent for days alarmed "down", and went on alarming. At
    the floor the down tests see nothing: a silent series has nowhere to fall."""
    detector = CountDetector(Measure.VOLUME, 60)
    rng = numpy.random.default_rng(1)
    down = []
    for i in range(18 * 1440):
        b = bucket(T0 + timedelta(minutes=i), int(rng.poisson(1.0)) if i < 1440 else 0, scale=60)
        signal = detector.score_one(b)
        if i >= 3 * 1440 and signal.direction == "down" and signal.likelihood >= 0.9999:
            down.append(i)
        detector.learn_one(b)
    assert down == []


@pytest.mark.parametrize(("per_day", "seed"), [(10, 1), (10, 2), (3, 1), (3, 2), (3, 3)])
def test_a_series_of_a_few_posts_a_day_is_calibrated(per_day: int, seed: int) -> None:
    """A small series (3 or 10 posts a day with the daily rhythm, 0.01 or 0.035 a 5-minute
    bucket) is judged as fairly as a busy one: a likelihood of 0.9999 either way in at most
    about 2 buckets in 10,000 (here at most 3 of 5,760). It was in half of them. Three
    faults fed each other: an hour's factor learned as the mean of per-bucket ratios to a
    level that happened to be low (one post after a quiet night made it 20); a bucket's
    weight for the level, against the day's mean worked out an hour earlier at a level ten
    times lower (one bucket could replace the level); and a post learned as if it sat on
    a band whose top was a fraction of a post, so a level once low fell for good."""
    _, signals = judge_all(rhythmic_poisson(per_day / 288, 21, seed=seed))
    judged = [s for s in signals if not s.warming_up]
    assert sum(s.likelihood >= 0.9999 for s in judged) <= 3


def test_a_week_of_silence_teaches_no_weekday_rhythm() -> None:
    """Three weeks with no weekly rhythm, a week without a post (the feed's outage), then
    three weeks again: the weekday factors stay near 1. The first day back was learned
    against a week of silence, a Monday factor of 2 (and every Monday after it a drop)."""
    detector = CountDetector(Measure.VOLUME, 3600)
    rng = numpy.random.default_rng(2)
    for i in range(24 * 42):
        at = T0 + timedelta(hours=i)
        rate = 20 * (1 + 0.9 * math.cos((at.hour - 14) / 24 * 2 * math.pi))
        count = 0 if 21 * 24 <= i < 28 * 24 else int(rng.poisson(rate))
        b = bucket(at, count, scale=3600)
        detector.score_one(b)
        detector.learn_one(b)
    assert max(abs(factor - 1.0) for factor in detector.weekly) < 0.3


@pytest.mark.parametrize("silence_rate", [0.2, 0.0])
def test_a_feed_s_recovery_after_an_outage_is_not_a_spike_but_a_real_one_is(
    silence_rate: float,
) -> None:
    """Four hours of near or total silence (the source's outage, adopted as the new
    normal), then the usual level: no up alarm; a x10 spike after it still alarms. A
    total silence was not adopted (a level of 0 was refused), the level fell all the
    same, and the recovery read as a 3-hour surge."""
    calm = poisson_series(20, 2 * 288, seed=35)
    silence = poisson_series(silence_rate, 4 * HOUR, seed=36)
    recovery = poisson_series(20, 2 * HOUR, seed=37)
    counts = calm + silence + recovery + [200]
    _, signals = run_signals(counts)
    end = len(calm) + len(silence)
    assert alarms(signals, "down")[0] == len(calm)  # the outage itself is news
    assert [i for i in alarms(signals, "up") if i < len(counts) - 1] == []
    assert signals[end].direction == "up" and signals[end].expected > 10  # the old level
    spike = signals[-1]
    assert spike.direction == "up" and spike.likelihood >= 0.9999


@pytest.mark.parametrize(("crisis_hours", "alarmed"), [(5, False), (30, True)])
def test_a_level_that_has_held_a_day_is_the_normal_one_for_good(
    crisis_hours: int, alarmed: bool
) -> None:
    """A crisis that lasts more than a day after its adoption is remembered no longer:
    the drop at its end is judged against it, as any change from the normal is. (After
    the first week: until its weekday factors are learned, a week, see
    ``test_the_monday_after_a_big_brand_s_first_quiet_weekend_is_not_news``.)"""
    counts, _, end = calm_crisis_calm(crisis_hours, after_hours=2, calm_days=8)
    _, signals = run_signals(counts)
    assert bool([i for i in alarms(signals, "down") if i >= end]) is alarmed
    _, forgetful = run_signals(counts, CountParams(shift_memory_seconds=0.0))
    assert [i for i in alarms(forgetful, "down") if i >= end]  # without the memory


def test_a_bucket_a_little_below_an_adopted_crisis_level_reads_up_against_it() -> None:
    """While the level before an adopted crisis is remembered, a bucket that neither
    direction finds surprising reads "down" only nearer the old level than the new one
    (``_midpoint``, their geometric mean): one a little below the crisis level is "up",
    against the crisis level, not a return "down" against the old one."""
    counts, _, _ = calm_crisis_calm(crisis_hours=4, after_hours=0)
    detector, _ = run_signals(counts)
    assert detector.shift_from == pytest.approx(20, rel=0.2)  # the calm level remembered
    at = T0 + timedelta(seconds=300 * len(counts))
    near_crisis = detector.score_one(bucket(at, round(0.9 * detector.level)))
    assert near_crisis.direction == "up" and near_crisis.expected > 80
    near_calm = detector.score_one(bucket(at, 30))
    assert near_calm.direction == "down" and near_calm.expected < 30


@pytest.mark.parametrize(("before", "after"), [(20, 10), (100, 40)])
def test_a_fall_adopted_as_the_new_normal_is_expected_at_its_own_level(
    before: int, after: int
) -> None:
    """A lasting fall is adopted at the mean of the buckets that held the down CUSUM (at
    20 to 10 a bucket, most of them inside the band: the CUSUM's hold, not a run of
    outliers, adopts it): an hour later the expected count is the new level, within 10 %
    of the mean since the fall, not a level the series no longer has."""
    calm = poisson_series(before, 2 * 288, seed=33)
    fall = poisson_series(after, 5 * HOUR, seed=43)
    detector, signals = run_signals(calm + fall)
    assert detector.shift_from == pytest.approx(before, rel=0.2)  # adopted: the old level kept
    assert alarms(signals, "down")[-1] < len(calm) + 4 * HOUR
    for signal in signals[len(calm) + 4 * HOUR :]:
        assert signal.direction == "up" or signal.expected == pytest.approx(
            sum(fall) / len(fall), rel=0.1
        )
    at = T0 + timedelta(seconds=300 * len(calm + fall))
    assert detector.expected(at) == pytest.approx(sum(fall) / len(fall), rel=0.1)


@pytest.mark.parametrize("factor", [2.0, 0.5])
def test_a_shift_on_a_quiet_saturday_is_adopted_at_the_level_it_says(factor: float) -> None:
    """Quiet weekends learned (0.6x), then, on the third Saturday at 8:00, a lasting x2 or
    /2: the buckets that held the CUSUM are counted against Saturday's factor as well as
    the hour's, so the level adopted is the weekdays' equivalent, and five hours later the
    expected count is the new rate (within 12 %), not a Saturday's 0.6x of it."""
    rng = numpy.random.default_rng(4)
    detector, step = CountDetector(Measure.VOLUME, 300), 19 * 288 + 8 * HOUR
    assert (T0 + timedelta(seconds=300 * step)).weekday() == 5
    for i in range(step + 5 * HOUR + 1):
        at = T0 + timedelta(seconds=300 * i)
        rate = 20 * (1 + 0.9 * math.cos((at.hour + at.minute / 60 - 14) / 24 * 2 * math.pi))
        rate *= (0.6 if at.weekday() >= 5 else 1.0) * (factor if i >= step else 1.0)
        b = bucket(at, int(rng.poisson(rate)))
        detector.score_one(b)
        detector.learn_one(b)
    assert detector.weekly[5] < 0.75 < detector.weekly[2]  # a quiet Saturday, learned
    assert detector.expected(at) / rate == pytest.approx(1.0, abs=0.12)
    assert detector.shift_from > 0.0  # adopted as a shift: the weekdays' old level kept


def test_a_saturated_count_cusum_reads_no_rarer_than_its_cap() -> None:
    """An hour of a doubling holds the up CUSUM at its cap (before the change is
    adopted): a further high bucket's evidence is the cap's, as the CUSUM learns it, not
    the cap plus that bucket's, which would read rarer at every bucket of a long surge
    than the detector ever stores."""
    params = CountParams(calibrate=False)  # the model's own surprise
    detector, _ = run_signals(poisson_series(20, 2 * 288, seed=5) + [40] * HOUR, params)
    cap, share = params.cusum_cap, params.cusum_share
    assert detector.cusum_up == cap and detector.shift_from == 0.0
    signal = detector.score_one(bucket(T0 + timedelta(seconds=300 * (2 * 288 + HOUR)), 40))
    assert signal.direction == "up" and signal.run is not None
    assert signal.surprise == pytest.approx(-math.log10(math.exp(-cap) / share))


def test_only_an_alert_that_began_before_an_adopted_shift_ends_as_settled() -> None:
    """``settled`` tells an alert that ends because its change became the normal: only
    one that began at or before the adoption, and only while the old level is still
    remembered."""
    counts, start, end = calm_crisis_calm(crisis_hours=4, after_hours=0)
    detector, _ = run_signals(counts)
    crisis_start, now = T0 + timedelta(seconds=300 * start), T0 + timedelta(seconds=300 * end)
    assert detector.settled(now, crisis_start) == pytest.approx(5, rel=0.2)
    assert detector.settled(now, now - timedelta(minutes=5)) is None  # began after it
    # forgotten: after a day once the weekday factors are learned, a week before that
    assert detector.settled(now + timedelta(days=2), crisis_start) is not None
    assert detector.settled(now + timedelta(days=8), crisis_start) is None


def test_the_band_top_is_none_while_warming_up_then_the_band_s() -> None:
    """A bucket still open is judged early only above the band's top (``Pipeline``):
    there is none to judge it by during the warm-up."""
    detector = CountDetector(Measure.VOLUME, 300)
    for i in range(24 * HOUR):
        if i == 12 * HOUR:
            assert detector.band_top(T0 + timedelta(hours=12)) is None
        b = bucket(T0 + timedelta(seconds=300 * i), 20)
        detector.score_one(b)
        detector.learn_one(b)
    top = detector.band_top(T0 + timedelta(days=1))
    assert top is not None and 20 < top < 40


def test_a_quiet_weekend_once_learned_is_expected_quiet() -> None:
    """The weekday factors are trusted by the posts they rest on (a day at 20 posts a
    bucket is thousands): after two weeks a quiet Saturday is expected as quiet as it
    is, not pulled back towards the weekdays."""
    detector, _ = judge_all(rhythmic_poisson(20.0, 15, weekend=0.6, seed=8))
    saturday, wednesday = T0 + timedelta(days=19, hours=12), T0 + timedelta(days=16, hours=12)
    assert detector.expected(saturday) / detector.expected(wednesday) == pytest.approx(0.6, abs=0.1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_small_series_weekday_factors_resting_on_few_posts_barely_move_it(seed: int) -> None:
    """Ten posts a day without a weekly rhythm: each weekday's factor rests on a day or
    two of ten posts, mostly Poisson noise (a factor of 2 between the highest and the
    lowest), and is shrunk towards 1 by how few they are (``_trusted``)."""
    detector, _ = judge_all(rhythmic_poisson(10 / 288, 14, seed=seed))
    assert max(detector.weekly) / min(detector.weekly) > 1.8
    afternoons = [detector.expected(T0 + timedelta(days=14 + d, hours=14)) for d in range(7)]
    assert max(afternoons) / min(afternoons) < 1.5


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_small_series_without_a_daily_rhythm_learns_none(seed: int) -> None:
    """Ten posts a day, none likelier at any hour: an hour's posts over two weeks are a
    handful, whose spread is the Poisson noise's alone, so the hours' factors stay near 1
    (``_summarise_hours``: the true factors' variance is the ratios' less the noise's)."""
    detector, _, _ = run_counts(poisson_series(10 / 288, 14 * 288, seed=seed))
    assert max(abs(factor - 1.0) for factor in detector.daily) < 0.3


def test_a_sustained_doubling_of_the_negative_share_is_flagged() -> None:
    detector = share_detector_after(1, 40, 0.1)
    rng = random.Random(16)
    first = None
    for i in range(24):  # two hours at twice the share, 40 posts a bucket
        k = sum(rng.random() < 0.2 for _ in range(40))
        b = bucket(T0 + timedelta(days=1, seconds=300 * i), 40, k)
        signal = detector.score_one(b)
        detector.learn_one(b)
        assert signal.likelihood < 0.9999 or signal.direction == "up"
        if first is None and signal.direction == "up" and signal.likelihood >= 0.9999:
            first = i
    # a binomial CUSUM that knew both shares would need about 6 buckets on average
    assert first is not None and first < 12


def test_the_share_detector_learns_how_much_the_share_drifts() -> None:
    steady = share_detector_after(3, 40, 0.1)  # binomial: no drift between buckets
    assert steady.concentration > 500
    wandering = NegativeShareDetector(300)
    rng = random.Random(3)
    for i in range(3 * 288):
        share = rng.choice([0.02, 0.1, 0.3])  # the share itself moves from bucket to bucket
        k = sum(rng.random() < share for _ in range(40))
        b = bucket(T0 + timedelta(seconds=300 * i), 40, k)
        wandering.score_one(b)
        wandering.learn_one(b)
    assert wandering.concentration < 30
    # the same bucket is far more surprising where the share is steady
    probe = bucket(T0 + timedelta(days=3), 40, 10)
    assert steady.score_one(probe).surprise > 2 * wandering.score_one(probe).surprise


def share_alarm_rate(counts: list[tuple[int, int]]) -> tuple[NegativeShareDetector, float]:
    """The detector after the stream, and its rate of buckets at 0.999 after warming up."""
    detector = NegativeShareDetector(300)
    judged = alarmed = 0
    for i, (n, k) in enumerate(counts):
        b = bucket(T0 + timedelta(seconds=300 * i), n, k)
        signal = detector.score_one(b)
        detector.learn_one(b)
        if not signal.warming_up:
            judged += 1
            alarmed += signal.likelihood >= 0.999
    return detector, alarmed / judged


@pytest.mark.parametrize("per_bucket", [20, 50, 200])
def test_the_share_s_likelihood_is_calibrated_on_a_steady_binomial_share(per_bucket: int) -> None:
    """A steady share of 0.12 at a fixed number of posts a bucket: about 1 bucket in 100
    reads 0.99 upwards (within a factor 2, over four seeds; the bucket test has 80 % of
    the false-alarm budget, the CUSUM the rest). With the whole of P(K >= k) as the tail,
    a discrete test is conservative: over four seeds at 20, 50 and 200 posts it was 0.35 %
    to 0.73 %; with mid-p tails, 0.46 % to 0.85 % (means 0.68, 0.57 and 0.70 %). One seed
    alone is not the rate: over 12 seeds at 50 posts, 0.35 % to 0.73 %."""
    judged = alarmed = 0
    for seed in range(1, 5):
        rng = numpy.random.default_rng(seed)
        detector = NegativeShareDetector(300)
        for i, k in enumerate(rng.binomial(per_bucket, 0.12, 10 * 288)):
            b = bucket(T0 + timedelta(seconds=300 * i), per_bucket, int(k))
            signal = detector.score_one(b)
            detector.learn_one(b)
            if not signal.warming_up:
                judged += 1
                alarmed += signal.direction == "up" and signal.likelihood >= 0.99
    assert 0.005 <= alarmed / judged <= 0.02


def test_the_share_is_judged_against_its_hour_of_day() -> None:
    """The share has a daily rhythm too (0.06 to 0.18 here). Judged against the day's
    share alone, 250-450 buckets in 1,000 read 0.999, every night a "complaint wave";
    each hour of day now has its own usual share (its factor learned as the volume's
    are: trusted as far as it stands out from its binomial noise)."""
    detector, rate = share_alarm_rate(rhythmic_share(14, amplitude=0.5, seed=11))
    assert rate <= 0.002  # nominal 0.1 %
    night, afternoon = detector.hour_factors[3], detector.hour_factors[15]
    assert night / afternoon == pytest.approx(0.18 / 0.06, rel=0.2)
    flat = NegativeShareDetector(300)
    for i, (n, k) in enumerate(rhythmic_share(4, amplitude=0.0, seed=12)):
        flat.learn_one(bucket(T0 + timedelta(seconds=300 * i), n, k))
    assert max(abs(f - 1.0) for f in flat.hour_factors) < 0.1  # no rhythm: none learned


def test_a_wandering_share_is_learned_from_its_whole_spread() -> None:
    """A share that wanders from bucket to bucket (beta-binomial, concentration 30) was
    read as steadier than it is: the drift was learned from buckets clipped to the usual
    band, and at a few posts a bucket that cut much of the spread (2 negatives of 2 is
    outside the band). It learned a concentration of 48 to 80, and up to 3 buckets in
    1,000 reached 0.999; now 30 to 37 (the buckets pooled by their posts)."""
    detector, rate = share_alarm_rate(rhythmic_share(21, amplitude=0.0, seed=0, concentration=30.0))
    assert rate <= 0.002
    assert 20 < detector.concentration < 40


def test_a_steady_share_is_not_read_as_wandering_on_a_quiet_series() -> None:
    """At 4 posts a bucket a steady (binomial) share's residuals are mostly a little below
    their mean and now and then far above it. Averaged bucket by bucket and floored at 0
    at each step, the dips were cut and the jumps kept: a share that never drifts read as
    one of concentration 20 to 80, and the test of a doubled share lost its edge. Pooled
    by posts, unfloored, it reads steady."""
    rng = numpy.random.default_rng(5)
    detector = NegativeShareDetector(300)
    for i in range(7 * 288):
        n = int(rng.poisson(4.0))
        detector.learn_one(bucket(T0 + timedelta(seconds=300 * i), n, int(rng.binomial(n, 0.12))))
    assert detector.concentration > 500


def test_an_hour_that_never_had_a_negative_post_is_quiet_not_immune() -> None:
    """Its factor has a floor: the day's share learns each bucket over its hour's factor,
    and a share of 0 learned from a million posts would make that a division by almost 0
    (a factor of 1e-7)."""
    posts, negatives = [1000.0] * 24, [200.0] * 24
    posts[4], negatives[4] = 1e6, 0.0
    expected = [0.2 * n for n in posts]  # at a usual share of 0.2 all along
    assert shrunk_factors(negatives, expected, posts)[4] == volume.MIN_FACTOR


def test_a_share_that_runs_higher_at_weekends_is_not_news_every_saturday() -> None:
    """A busy brand (about 200 posts a bucket) whose share is 0.12 on weekdays and 0.18 at
    weekends: judged against the day's share alone, every Saturday morning read as a
    complaint wave until the day's share caught up (52, 43 and 18 buckets at 0.999 in
    three weeks). Each weekday learns its share from its whole days; the first weekend is
    still news (it has not been seen)."""
    rng = numpy.random.default_rng(21)
    detector = NegativeShareDetector(300)
    alarms_by_week = [0, 0, 0]
    for i in range(21 * 288):
        at = T0 + timedelta(seconds=300 * i)
        n = int(rng.poisson(200.0))
        k = int(rng.binomial(n, 0.18 if at.weekday() >= 5 else 0.12))
        b = bucket(at, n, k)
        signal = detector.score_one(b)
        detector.learn_one(b)
        alarms_by_week[i // (7 * 288)] += not signal.warming_up and signal.likelihood >= 0.999
    assert alarms_by_week[1] + alarms_by_week[2] <= 0.002 * 14 * 288
    weekdays = sum(detector.weekday_factors[:5]) / 5
    assert detector.weekday_factors[5] / weekdays == pytest.approx(18 / 12, rel=0.05)


# --- calibration on the series' own past: how rare an episode's onset has been -------


def calibrated_onsets(count: int, seed: int, scale: float = 1.0) -> list[float]:
    """Onsets as -log10 of uniform tails (a calibrated model), times ``scale``."""
    rng = random.Random(seed)
    return [-scale * math.log10(1.0 - rng.random()) for _ in range(count)]


def test_onset_tail_keeps_the_model_s_word_on_a_calibrated_series() -> None:
    tail = OnsetTail()
    for onset in calibrated_onsets(20_000, seed=21):
        tail.learn(onset)
    # a one-in-a-million onset stays about one in a million, give or take a factor 10
    assert tail.surprise(6.0) == pytest.approx(6.0, abs=1.0)
    assert tail.surprise(2.0) == pytest.approx(2.0, abs=0.3)
    assert tail.surprise(0.3) == pytest.approx(0.3, abs=0.1)  # the empirical part


def test_onset_tail_discounts_a_series_whose_model_is_often_wrong() -> None:
    """Onsets ten times the calibrated ones (a tail far heavier than the model's): an
    onset of 30 is as common there as one of 3 on a calibrated series."""
    tail = OnsetTail()
    for onset in calibrated_onsets(20_000, seed=22, scale=10.0):
        tail.learn(onset)
    assert tail.surprise(30.0) == pytest.approx(3.0, abs=0.5)
    assert tail.surprise(0.0) == 0.0


def test_onset_tail_trusts_the_model_until_it_has_seen_onsets() -> None:
    tail = OnsetTail()
    assert tail.surprise(4.0) == pytest.approx(4.0)
    for _ in range(999):
        tail.learn(0.0)  # calm buckets: no onset
    assert tail.surprise(4.0) == pytest.approx(3.0 + 4.0)  # rarer than the model says


def test_onset_tail_s_shortcut_calibrates_as_the_full_tail_does() -> None:
    """``calibrated`` skips the tail below the rarity of any onset: it must not matter."""
    rng = random.Random(28)
    for scale, calm in ((1.0, 0), (10.0, 0), (3.0, 5_000)):
        tail = OnsetTail()
        for onset in calibrated_onsets(3_000, seed=29, scale=scale):
            tail.learn(onset - 0.5)  # about a third of the buckets: no onset
        for _ in range(calm):
            tail.learn(0.0)
        for _ in range(500):
            surprise = rng.uniform(0.0, 20.0) ** 2 / 20.0
            for prior in (0.0, 2016.0):
                expected = min(surprise, tail.surprise(surprise, prior))
                assert tail.calibrated(surprise, prior) == expected


def onset_tail_of_a_bursty_series() -> OnsetTail:
    """1,000 buckets: an onset of 2 every tenth, one of 0.5 every fiftieth, else none."""
    tail = OnsetTail()
    for i in range(1000):
        tail.learn(2.0 if i % 10 == 0 else 0.5 if i % 50 == 1 else 0.0)
    return tail


def test_onset_tail_below_its_threshold_counts_the_series_own_onsets() -> None:
    """Below the threshold of the tail (here near 1.9: the highest edge a fifth of the
    onsets reach) an onset's rarity is the conformal count, not the exponential tail's
    extrapolation downwards: an onset of 1 has been reached by 100 onsets in 1,000
    buckets, so its rate is 101 in 1,001."""
    tail = onset_tail_of_a_bursty_series()
    assert tail.surprise(1.0) == pytest.approx(math.log10(1001 / 101), rel=1e-12)


def test_onset_tail_interpolates_between_its_edges_log_linearly() -> None:
    """An onset of 0.5 falls between two edges, one reached by the 120 onsets of 0.5 and
    2, the next by the 100 of 2 alone: its rate is read between theirs, log-linearly by
    where it lies between the edges (a rarity between those of 121 and 101 in 1,001)."""
    tail = onset_tail_of_a_bursty_series()
    i = bisect.bisect_right(ONSET_EDGES, 0.5) - 1
    low, high = ONSET_EDGES[i], ONSET_EDGES[i + 1]
    step = (0.5 - low) / (high - low)
    assert 0.0 < step < 1.0
    log_at_least = (1 - step) * math.log10(121) + step * math.log10(101)
    assert tail.surprise(0.5) == pytest.approx(math.log10(1001) - log_at_least, rel=1e-12)


def test_onset_tail_says_nothing_of_an_onset_of_zero_or_less() -> None:
    """No onset (0, or a surprise that fell) has no rarity: 0, however many onsets the
    series has had."""
    tail = onset_tail_of_a_bursty_series()
    assert tail.surprise(0.0) == 0.0 and tail.surprise(-1.0) == 0.0
    assert tail.calibrated(0.0) == 0.0


def test_onset_tail_state_stays_bounded_after_a_long_stream() -> None:
    tail = OnsetTail()
    for onset in calibrated_onsets(100_000, seed=24, scale=5.0):
        tail.learn(onset)
    assert len(tail.reached) == len(tail.excess) == len(ONSET_EDGES)
    assert tail.buckets == 100_000 and tail.reached[0] == 100_000


def test_onset_tail_forgets_a_bursty_past() -> None:
    """Onsets ten times the calibrated ones, then calm for ten half-lives: a tail that
    fades judges by the calm (as one that saw only the calm does); one that never fades
    still finds one-in-a-million onsets routine."""
    keep = 0.5 ** (1 / 2000)  # a half-life of 2,000 buckets
    fading, never, calm_only = OnsetTail(), OnsetTail(), OnsetTail()
    for onset in calibrated_onsets(5_000, seed=30, scale=10.0):
        fading.learn(onset, keep)
        never.learn(onset)
    assert fading.surprise(30.0) == pytest.approx(never.surprise(30.0), abs=0.1)  # bursty
    for onset in calibrated_onsets(20_000, seed=31):
        fading.learn(onset, keep)
        never.learn(onset)
        calm_only.learn(onset)
    assert fading.surprise(6.0) == pytest.approx(calm_only.surprise(6.0), abs=0.3)
    assert fading.surprise(2.0) == pytest.approx(calm_only.surprise(2.0), abs=0.1)
    assert never.surprise(6.0) < 2.0
    # the faded count of buckets: about the half-life over ln 2, not the 25,000 seen
    assert fading.buckets / fading.weight == pytest.approx(2000 / math.log(2), rel=0.01)


def test_onset_tail_says_the_same_after_rescaling_its_counts() -> None:
    keep = 0.5  # the weight doubles every bucket: it reaches the rescaling point quickly
    tail, rescaled = OnsetTail(), OnsetTail()
    for onset in calibrated_onsets(300, seed=32, scale=3.0):
        tail.learn(onset, keep)
        rescaled.learn(onset, keep)
    rescaled._rescale()
    assert rescaled.weight == 1.0 and tail.weight > 1e80
    for onset in (0.3, 2.0, 6.0, 30.0):
        assert rescaled.surprise(onset, 100.0) == pytest.approx(tail.surprise(onset, 100.0))
    for onset in calibrated_onsets(1_000, seed=33):
        tail.learn(onset, keep)
    assert 1.0 <= tail.weight <= RESCALE_WEIGHT
    assert math.isfinite(tail.buckets) and all(map(math.isfinite, tail.reached + tail.excess))


def test_a_series_calm_for_months_is_judged_by_its_calm_not_by_an_old_bursty_quarter() -> None:
    """Hourly: a 4x hour every 6 hours for a quarter, then three quarters calm. The
    detector's calibration fades (half-life ``calibration_halflife_seconds``): a doubled
    hour alarms at 0.9999 as on a series that was always calm; with a memory that never
    fades, the old bursts would still mute it."""
    hour = 3600
    counts = poisson_series(20, 52 * 168, seed=40)
    calm_only = list(counts)
    for i in range(30, 13 * 168, 6):
        counts[i] *= 4

    def after(counts: list[int], params: CountParams) -> CountDetector:
        detector = CountDetector(Measure.VOLUME, hour, params)
        for i, count in enumerate(counts):
            detector.learn_one(bucket(T0 + timedelta(hours=i), count, scale=hour))
        return detector

    probe = bucket(T0 + timedelta(hours=len(counts)), 40, scale=hour)  # twice the usual
    fading = after(counts, CountParams()).score_one(probe)
    never = after(counts, CountParams(calibration_halflife_seconds=math.inf)).score_one(probe)
    calm = after(calm_only, CountParams()).score_one(probe)
    assert fading.surprise == pytest.approx(calm.surprise, abs=0.2)
    assert fading.likelihood >= 0.9999 > never.likelihood


def calm_or_bursty(days: int, seed: int, burst_every: int | None) -> list[int]:
    """Poisson at 20 per 5 minutes; every ``burst_every`` buckets, one bucket at 4x."""
    counts = poisson_series(20, days * 288, seed=seed)
    if burst_every is not None:
        for i in range(288 + burst_every // 2, len(counts), burst_every):
            counts[i] = 4 * counts[i]
    return counts


def surprises(counts: list[int], params: CountParams) -> tuple[CountDetector, list[float]]:
    detector = CountDetector(Measure.VOLUME, 300, params)
    out = []
    for i, count in enumerate(counts):
        b = bucket(T0 + timedelta(seconds=i * 300), count)
        out.append(detector.score_one(b).surprise)
        detector.learn_one(b)
    return detector, out


def test_calibration_leaves_a_well_specified_series_as_the_model_judges_it() -> None:
    counts = poisson_series(20, 20 * 288, seed=25)
    _, raw = surprises(counts, CountParams(calibrate=False))
    _, calibrated = surprises(counts, CountParams())
    # the model's word stands, bucket by bucket: every tail within 12 % of the model's
    assert max(r - c for r, c in zip(raw, calibrated, strict=True)) < 0.05
    assert sum(s >= 3.0 for s in calibrated) == sum(s >= 3.0 for s in raw)  # alarms at 0.999


def test_calibration_discounts_a_surprise_the_series_has_often_shown() -> None:
    """A 4x burst every 6 hours: the model calls each one extreme, the series' own past
    says it is routine. On a calm series the same burst keeps the model's word."""
    probe = 4 * 20
    bursty, _ = surprises(calm_or_bursty(20, seed=26, burst_every=72), CountParams())
    calm, _ = surprises(calm_or_bursty(20, seed=26, burst_every=None), CountParams())
    at = bucket(T0 + timedelta(days=20, hours=1), probe)  # the rhythm is flat: any hour
    raw_bursty = CountParams(calibrate=False)
    assert dataclasses.replace(bursty, params=raw_bursty).score_one(at).likelihood > 0.9999
    assert bursty.score_one(at).likelihood < 0.999  # seen 80 times in 20 days: routine
    assert calm.score_one(at).likelihood > 0.99999


def test_calibration_keeps_a_surge_as_tall_as_the_routine_bursts_but_sustained() -> None:
    """The same series (a 4x bucket every 6 hours), now 4x for an hour: each bucket is
    no taller than the routine bursts, and the model's CUSUM is at its cap (its height
    is a burst's), but so many unusual buckets in a row have never been seen: the
    calibrated CUSUMs alarm within half an hour."""
    counts = calm_or_bursty(20, seed=27, burst_every=72)
    bursty, _ = surprises(counts, CountParams())
    prior = bursty.params.calibration_prior_seconds / bursty.width_seconds
    alarms = []
    for i in range(12):
        at = bucket(T0 + timedelta(seconds=(len(counts) + i) * 300), 4 * 20)
        signal = bursty.score_one(at)
        assert bursty.judged is not None
        height_only = bursty.onsets.calibrated(bursty.judged.surprise_up, prior)
        alarms.append(signal.likelihood >= 0.9999)
        assert height_only < 3.5  # the episode's height alone: routine
        bursty.learn_one(at)
    assert not alarms[0]  # one bucket: a burst like the others
    assert alarms.index(True) < 6 and all(alarms[alarms.index(True) :])


def test_calibration_never_raises_a_surprise_above_the_model_s() -> None:
    counts = calm_or_bursty(10, seed=28, burst_every=72)
    counts[6 * 288 : 6 * 288 + 12] = [4 * c for c in counts[6 * 288 : 6 * 288 + 12]]  # a surge
    _, raw = surprises(counts, CountParams(calibrate=False))
    _, calibrated = surprises(counts, CountParams())
    assert all(c <= r for c, r in zip(calibrated, raw, strict=True))
    assert max(calibrated[6 * 288 : 6 * 288 + 12]) >= 4.0  # and the surge still alarms


def test_a_detector_s_state_stays_bounded_after_a_long_stream() -> None:
    def state_size(days: int) -> int:
        detector, _ = surprises(calm_or_bursty(days, seed=27, burst_every=72), CountParams())
        return len(json.dumps(to_state(detector)))

    assert state_size(40) < 1.1 * state_size(10)  # the digits of counts grow, nothing else


def test_nab_scores_rank_a_burst_s_first_bucket_first_and_the_rest_low() -> None:
    start = T0
    counts = poisson_series(20, 3 * 288, seed=23)
    counts[700:703] = [200, 200, 200]
    rows = [(start + timedelta(seconds=300 * i), float(c)) for i, c in enumerate(counts)]
    scores = nab_scores(rows)
    assert max(scores) == scores[700]  # the burst's first bucket starts the alert
    assert max(scores[701:703]) < scores[700] / 2  # its next buckets add little


def test_a_share_tail_far_beyond_the_doubles_ends_at_once() -> None:
    """A first term that underflows to 0 summed the pmf to the end of the range: 0.1 s
    for a bucket of a million posts, minutes for a billion (the test's timeout)."""
    assert betabinom_mid_p(6 * 10**8, 10**9, 0.1, 1e4) == (0.0, 1.0)
    assert betabinom_mid_p(60_000, 100_000, 0.1, 1e4) == (0.0, 1.0)


# -- the rhythm in the brand's time zone ------------------------------------------------


def local_rhythm(
    per_bucket: float, starts: list[datetime], zone: str, seed: int, weekend: float = 1.0
) -> list[tuple[int, int]]:
    """Posts and negatives per 5-minute bucket from ``starts``, with a daily rhythm and
    quieter weekends on the clock and calendar of ``zone`` (its audience's)."""
    rng = numpy.random.default_rng(seed)
    out = []
    for start in starts:
        at = start.astimezone(ZoneInfo(zone))
        rate = per_bucket * (1 + 0.9 * math.cos((at.hour + at.minute / 60 - 14) / 24 * 2 * math.pi))
        n = int(rng.poisson(rate * (weekend if at.weekday() >= 5 else 1.0)))
        out.append((n, int(rng.binomial(n, 0.1))))
    return out


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/New_York"])
def test_a_series_in_its_own_time_zone_is_judged_as_the_same_series_in_utc(zone: str) -> None:
    """The hour of the day and the day of the week are the brand's: a series whose local
    times are those of a UTC series (the same counts, hours earlier or later in UTC) is
    judged exactly as that one, by every detector."""
    utc_starts = [T0 + timedelta(minutes=5 * i) for i in range(9 * 288)]  # no DST change
    offset = T0.astimezone(ZoneInfo(zone)).utcoffset()
    assert offset is not None
    counts = local_rhythm(40.0, utc_starts, "UTC", seed=5, weekend=0.6)
    pairs = []
    for timezone, shift in (("UTC", timedelta(0)), (zone, offset)):
        detectors: list[CountDetector | NegativeShareDetector] = [
            CountDetector(Measure.VOLUME, 300, timezone=timezone),
            NegativeShareDetector(300, timezone=timezone),
            CountDetector(Measure.NEGATIVE_VOLUME, 300, timezone=timezone),
        ]
        figures = []
        for start, (n, k) in zip(utc_starts, counts, strict=True):
            b = bucket(start - shift, n, k)  # the same local time in ``timezone``
            for detector in detectors:
                signal = detector.score_one(b)
                figures.append((signal.likelihood, signal.expected, signal.warming_up))
                detector.learn_one(b)
        pairs.append(figures)
    assert pairs[0] == pairs[1]


def alarms_after_a_dst_change(timezone: str) -> int:
    """Buckets a volume detector alarms on (0.9999, as the shipped rules) in the week
    after the spring change of a New York brand, busy (300 posts per 5 minutes at the
    mean), whose rhythm follows its local time; 5 weeks learned before the change."""
    change = datetime(2026, 3, 8, 7, tzinfo=UTC)  # 02:00 in New York: clocks go to 03:00
    starts = [change - timedelta(weeks=5) + timedelta(minutes=5 * i) for i in range(6 * 2016)]
    counts = local_rhythm(300.0, starts, "America/New_York", seed=11, weekend=0.6)
    detector = CountDetector(Measure.VOLUME, 300, timezone=timezone)
    alarms = 0
    for start, (n, _) in zip(starts, counts, strict=True):
        b = bucket(start, n)
        signal = detector.score_one(b)
        alarms += start >= change and not signal.warming_up and signal.likelihood >= 0.9999
        detector.learn_one(b)
    return alarms


def test_a_daylight_saving_change_is_not_news_in_the_brand_s_time_zone() -> None:
    """Learned in UTC, the whole rhythm of a New York brand moved an hour on the night
    of the change, and its weekend began and ended at 19:00 local: false alarms. In the
    brand's zone, the week after the change is quiet."""
    assert alarms_after_a_dst_change("America/New_York") == 0
    assert alarms_after_a_dst_change("UTC") > 10


# -- the negative share's signal: what it says, and when it may speak ---------------------


def share_probe(detector: NegativeShareDetector, at: datetime, n: int, k: int) -> Signal:
    """The signal of a bucket of ``n`` posts, ``k`` negative, at ``at`` (learned after)."""
    b = bucket(at, n, k)
    signal = detector.score_one(b)
    detector.learn_one(b)
    return signal


def test_a_negative_share_wave_s_signal_explains_itself() -> None:
    """A wave, 240 negative posts of 400 where about 10 % is usual: the alert must say the
    share it saw, the hour's usual share, and a band around it that the wave is well
    outside; a wrong figure there (the band of a 2-sd test, or 0 to 1) misleads whoever
    reads the alert. The bucket alone decides: no CUSUM run is claimed."""
    detector = share_detector_after(1, 40, 0.1)
    at = T0 + timedelta(days=1)
    usual, concentration = detector.usual_at(bucket(at, 400, 240)), detector.concentration
    signal = share_probe(detector, at, 400, 240)
    assert signal.direction == "up" and signal.likelihood > 0.99999
    assert signal.observed == 0.6
    assert signal.expected == usual
    sd = math.sqrt(usual * (1 - usual) / 400 * (1 + 399 / (concentration + 1)))
    assert signal.low == pytest.approx(usual - volume.BAND_Z * sd)
    assert signal.high == pytest.approx(usual + volume.BAND_Z * sd)
    assert 0.0 < signal.low < signal.expected < signal.high < signal.observed
    assert signal.run is None


def test_a_negative_share_band_never_leaves_zero_to_one() -> None:
    """On a bucket of 2 posts the band of a share of 10 % is wider than the share: its
    low edge is 0, never a negative share, and its high edge at most 1."""
    detector = share_detector_after(1, 10, 0.1)
    signal = detector.score_one(bucket(T0 + timedelta(days=1), 2, 1))
    assert signal.low == 0.0 and 0.0 < signal.high <= 1.0


def test_a_drop_in_the_negative_share_reads_down_with_its_own_tail() -> None:
    """No negative post of 40 where 10 % is usual: a "down" signal whose likelihood is
    the lower tail's (about 0.99), not the upper one's (which would read 0: "nothing to
    see"), with the Bonferroni share of the bucket test not taken from it; no run."""
    detector = share_detector_after(1, 40, 0.1)
    at = T0 + timedelta(days=1)
    usual, concentration = detector.usual_at(bucket(at, 40, 0)), detector.concentration
    signal = share_probe(detector, at, 40, 0)
    _, down = betabinom_mid_p(0, 40, usual, concentration)
    assert signal.direction == "down" and signal.observed == 0.0 < signal.expected
    assert signal.likelihood == pytest.approx(1.0 - down)
    assert signal.run is None


def test_a_share_bucket_test_keeps_only_its_part_of_the_false_alarm_budget() -> None:
    """A lone high bucket (CUSUM at 0) is judged by its tail over the bucket test's 80 %
    of the budget: with the whole budget, its likelihood reads higher than it is and the
    rule's 0.9999 is met more often than it says."""
    detector = share_detector_after(1, 40, 0.1)
    at = T0 + timedelta(days=1)
    usual, concentration = detector.usual_at(bucket(at, 40, 9)), detector.concentration
    signal = share_probe(detector, at, 40, 9)
    up, _ = betabinom_mid_p(9, 40, usual, concentration)
    assert signal.direction == "up" and signal.run is None
    assert signal.likelihood == pytest.approx(1.0 - up / (1.0 - detector.params.cusum_share))


def rising_share(buckets: int) -> tuple[NegativeShareDetector, list[Signal], list[float]]:
    """A day at 10 % negative (40 posts a bucket), then ``buckets`` buckets of 9 negative
    posts of 40: none extreme alone. The signals of those, and their usual shares."""
    detector = share_detector_after(1, 40, 0.1)
    signals, usuals = [], []
    for i in range(buckets):
        at = T0 + timedelta(days=1, minutes=5 * i)
        usuals.append(detector.usual_at(bucket(at, 40, 9)))
        signals.append(share_probe(detector, at, 40, 9))
    return detector, signals, usuals


def test_a_sustained_rise_in_the_negative_share_alerts_with_its_run() -> None:
    """22 % negative where 10 % is usual, bucket after bucket: the CUSUM alerts within
    the hour, and the alert carries its run (since the rise began: the negatives of those
    buckets against the usual share's expectation), without which "9 of 40 negative"
    does not explain it. Its likelihood is the CUSUM's with this bucket counted in."""
    detector, signals, usuals = rising_share(5)
    alert = signals[-1]
    assert [s.likelihood >= 0.9999 for s in signals] == [False] * 4 + [True]
    assert alert.direction == "up" and alert.run is not None
    assert alert.run.start == T0 + timedelta(days=1)
    assert (alert.run.buckets, alert.run.observed, alert.run.posts) == (5, 45.0, 200)
    assert alert.run.expected == pytest.approx(40 * sum(usuals))
    sustained = math.exp(-detector.cusum) / detector.params.cusum_share
    assert alert.likelihood == pytest.approx(1.0 - sustained)


def test_a_quiet_bucket_inside_a_rising_negative_share_run_still_reads_up() -> None:
    """Three buckets of 22 % negative, then one without a negative post: the CUSUM still
    stands above its threshold, so the signal stays "up" on the run's evidence (with the
    run), rather than reading as a drop of the share, or as up with nothing to show."""
    detector, _, _ = rising_share(3)
    signal = share_probe(detector, T0 + timedelta(days=1, minutes=15), 40, 0)
    assert signal.observed == 0.0 < detector.cusum
    assert signal.direction == "up" and signal.run is not None
    assert (signal.run.buckets, signal.run.observed, signal.run.posts) == (4, 27.0, 160)
    sustained = math.exp(-detector.cusum) / detector.params.cusum_share
    assert signal.likelihood == pytest.approx(1.0 - sustained)


def test_a_new_share_series_is_warming_up_until_it_has_seen_a_day() -> None:
    """23 hours of busy buckets (11,000 posts): the hours of the day have not all been
    seen, so a wave is not yet judged; a day later it is."""
    detector = NegativeShareDetector(300)
    for i in range(23 * 12):
        share_probe(detector, T0 + timedelta(minutes=5 * i), 40, 4)
    assert detector.seen_posts > 10 * detector.params.warmup_posts
    assert share_probe(detector, T0 + timedelta(hours=23), 40, 24).warming_up
    assert not share_probe(detector, T0 + timedelta(days=1), 40, 24).warming_up


def test_a_new_share_series_is_warming_up_until_it_has_seen_enough_posts() -> None:
    """A day and more of a quiet series (a post every 20 minutes, under 200 in all): its
    usual share is still mostly the prior's, so a bucket of many negatives is not judged."""
    detector = NegativeShareDetector(300)
    for i in range(26 * 12):
        share_probe(detector, T0 + timedelta(minutes=5 * i), 1 if i % 4 == 0 else 0, 0)
    assert detector.seen_posts < detector.params.warmup_posts
    assert share_probe(detector, T0 + timedelta(hours=26), 40, 24).warming_up


def test_a_rise_in_the_negative_share_after_calm_days_is_flagged_as_fast() -> None:
    """Calm days leave the CUSUM at 0, not below it: evidence against a rise that never
    came must not be banked, or a real rise after a long calm would be missed for hours."""
    detector = share_detector_after(3, 40, 0.1)
    likelihoods = [
        share_probe(detector, T0 + timedelta(days=3, minutes=5 * i), 40, 9).likelihood
        for i in range(6)
    ]
    assert max(likelihoods) >= 0.9999


def test_a_share_that_flips_between_none_and_all_keeps_a_usable_concentration() -> None:
    """Buckets all negative or none negative: the share wanders as far as it can. The
    learned concentration stays at its floor (not near 0, where the beta-binomial test
    means nothing), and a steady share's is a hundred times higher (nearly binomial)."""
    detector = NegativeShareDetector(300)
    for i in range(2 * 288):
        share_probe(detector, T0 + timedelta(minutes=5 * i), 20, 20 * (i % 2))
    low, high = detector.params.concentration_range
    assert detector.concentration == low
    assert 100 * low < share_detector_after(3, 40, 0.1).concentration <= high


def test_a_mostly_negative_share_series_is_judged_against_its_own_share() -> None:
    """A complaints channel, 70 % negative as a rule: its usual share is 70 %, so a
    bucket at 70 % is not a wave."""
    detector = share_detector_after(1, 40, 0.7)
    signal = share_probe(detector, T0 + timedelta(days=1), 40, 28)
    assert signal.expected == pytest.approx(0.7, abs=0.05)
    assert signal.likelihood < 0.99


def test_a_negative_share_wave_is_not_learned_as_the_usual_share() -> None:
    """An hour at 80 % negative where 10 % is usual: each of its buckets is learned as if
    it sat on the usual band's edge. Learned as it was, the wave lifted the usual share
    the next alert is judged against (and states) by nearly 30 %; robust, by under 10 %."""
    detector = share_detector_after(1, 40, 0.1)
    before = detector.usual_share
    for i in range(12):
        share_probe(detector, T0 + timedelta(days=1, minutes=5 * i), 40, 32)
    after = detector.score_one(bucket(T0 + timedelta(days=1, hours=1), 40, 4))
    assert before < after.expected < 1.15 * before


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_share_wave_s_alarm_ends_soon_after_the_wave(seed: int) -> None:
    """Three hours at 80 % negative where 10 % is usual, then calm again. Each bucket of
    the wave was learned as the share wandering (clipped, yet far out): the concentration
    fell to its floor, the calm buckets weighed almost nothing against the CUSUM held at
    its cap, and the alarm went on for 1 to 3 hours of calm (its last alarm 14 to 35
    buckets in, 12 seeds), where the volume detector's ends within a bucket. A change the
    CUSUM holds at its cap teaches the drift nothing now: 1 to 6 buckets."""
    detector = share_detector_after(2, 40, 0.1)
    rng = random.Random(seed)
    at = T0 + timedelta(days=2)

    def negatives(share: float) -> int:
        return sum(rng.random() < share for _ in range(40))

    for _ in range(36):
        assert share_probe(detector, at, 40, negatives(0.8)).likelihood >= 0.9999
        at += timedelta(minutes=5)
    alarming = []
    for i in range(36):
        if share_probe(detector, at, 40, negatives(0.1)).likelihood >= 0.9999:
            alarming.append(i)
        at += timedelta(minutes=5)
    assert max(alarming, default=-1) < 8  # 40 minutes


def test_a_share_series_whose_first_buckets_are_empty_is_judged() -> None:
    """A brand added at a quiet hour: its first buckets have no post, so no hour has a
    share yet. Every hour keeps the factor 1 (not a division by the no posts seen)."""
    detector = NegativeShareDetector(300)
    for i in range(3):
        signal = share_probe(detector, T0 + timedelta(minutes=5 * i), 0, 0)
        assert signal.warming_up and signal.observed == 0.0 and signal.likelihood == 0.0
    assert detector.hour_factors == [1.0] * 24 and detector.weekday_factors == [1.0] * 7


def test_a_share_wave_after_a_silent_week_is_judged_by_the_drift_learned_before() -> None:
    """An empty bucket says nothing about how the share drifts: after a week without a
    post the concentration is the one learned before, and a wave of 30 % negative in 200
    posts where 10 % is usual alarms. Had each empty bucket counted as a pair of posts
    less, the silence read as a share at its wildest (the concentration's floor) and the
    wave as 0.93."""
    detector = share_detector_after(1, 40, 0.1)
    concentration = detector.concentration
    start = T0 + timedelta(days=1)
    for i in range(7 * 288):
        share_probe(detector, start + timedelta(minutes=5 * i), 0, 0)
    assert detector.concentration == concentration
    signal = detector.score_one(bucket(start + timedelta(days=7), 200, 60))
    assert signal.direction == "up" and signal.likelihood >= 0.9999


def test_a_saturated_share_cusum_reads_no_rarer_than_its_cap() -> None:
    """Hours of a doubled share hold the CUSUM at its cap: a further high bucket's
    evidence is the cap's (as learned), not the cap plus that bucket's, which would read
    rarer at every bucket of a long wave than the detector will ever have stored."""
    detector = share_detector_after(1, 40, 0.1)
    start = T0 + timedelta(days=1)
    for i in range(30):
        share_probe(detector, start + timedelta(minutes=5 * i), 40, 16)
    cap, share = detector.params.cusum_cap, detector.params.cusum_share
    assert detector.cusum == cap
    signal = detector.score_one(bucket(start + timedelta(minutes=150), 40, 9))
    assert signal.direction == "up" and signal.run is not None
    assert signal.surprise == pytest.approx(-math.log10(math.exp(-cap) / share))


def test_a_sustained_rise_of_a_mostly_negative_share_is_caught_by_its_cusum() -> None:
    """Half the posts negative as a rule, then 70 % bucket after bucket: no bucket alone
    reaches 0.9999, the CUSUM does within the half hour, with its run. It looks for the
    share halfway to 1 (75 %) where doubling it would pass 1: a shifted share of 1 or
    more, or one below the usual, would never see the rise."""
    detector = share_detector_after(1, 40, 0.5)
    start = T0 + timedelta(days=1)
    signals = [share_probe(detector, start + timedelta(minutes=5 * i), 40, 28) for i in range(8)]
    alerts = [i for i, s in enumerate(signals) if s.likelihood >= 0.9999]
    assert alerts and alerts[0] <= 6
    first = signals[alerts[0]]
    assert first.direction == "up" and first.run is not None
    assert first.run.buckets == alerts[0] + 1 and first.run.start == start


def test_a_share_whose_usual_level_reaches_all_posts_at_some_hours_is_still_judged() -> None:
    """Every post negative in the mornings, half of them in the afternoons: a morning's
    usual share (the day's times the hour's factor) would pass 1, where the band's
    variance is negative. It stops at 0.99, and a morning bucket is judged."""
    detector = NegativeShareDetector(300)
    for i in range(3 * 288):
        at = T0 + timedelta(minutes=5 * i)
        share_probe(detector, at, 40, 40 if at.hour < 12 else 20)
    signal = detector.score_one(bucket(T0 + timedelta(days=3, hours=3), 40, 39))
    assert signal.expected == 0.99
    assert 0.0 <= signal.low <= signal.high <= 1.0 and 0.0 <= signal.likelihood < 0.99


def test_a_share_that_never_wanders_keeps_the_concentration_s_ceiling() -> None:
    """A share exactly 10 % in every bucket: its residuals say it never drifts (an
    infinite concentration), but a share may still; at the ceiling, 10,000, the band of
    a bucket of 5,000 posts stays wider than the binomial one by its 1.5 in variance."""
    detector = NegativeShareDetector(300)
    for i in range(2 * 288):
        share_probe(detector, T0 + timedelta(minutes=5 * i), 40, 4)
    assert detector.concentration == 10_000.0
    signal = detector.score_one(bucket(T0 + timedelta(days=2), 5000, 500))
    usual = signal.expected
    sd = math.sqrt(usual * (1 - usual) / 5000 * (1 + 4999 / 10_001))
    assert signal.high == pytest.approx(usual + volume.BAND_Z * sd)


def test_a_hole_in_a_share_series_first_day_is_no_time_watched() -> None:
    """Twelve hours watched, a twelve-hour outage (``skip_hole``), then a wave: the hours
    of the day have not all been seen, so the series is still warming up, as if the
    outage had not happened. A hole before the first bucket is nothing to skip."""
    detector = NegativeShareDetector(300)
    detector.skip_hole(3600.0)
    for i in range(12 * 12):
        share_probe(detector, T0 + timedelta(minutes=5 * i), 40, 4)
    detector.skip_hole(12 * 3600.0)
    assert share_probe(detector, T0 + timedelta(hours=24), 40, 24).warming_up
    assert not share_probe(detector, T0 + timedelta(hours=36), 40, 24).warming_up


def test_a_quiet_share_series_is_judged_once_it_has_seen_two_hundred_posts() -> None:
    """A post a bucket for 26 hours (312 posts): past the day and the 200 posts of its
    warm-up, a wave is judged. A bucket of one post says nothing of how the share drifts
    between buckets, so the drift is still the prior's (a concentration of 100), not a
    share that never drifts nor one that wanders without bound."""
    detector = NegativeShareDetector(300)
    for i in range(26 * 12):
        share_probe(detector, T0 + timedelta(minutes=5 * i), 1, int(i % 10 == 0))
    assert detector.params.warmup_posts < detector.seen_posts < 2 * detector.params.warmup_posts
    assert detector.concentration == pytest.approx(100.0)
    assert not share_probe(detector, T0 + timedelta(hours=26), 40, 24).warming_up


def test_a_one_post_share_bucket_has_the_band_of_one_post() -> None:
    """One post, negative or not: its band is a single post's (the share's binomial sd,
    no drift term), not that of a bucket of two."""
    detector = share_detector_after(1, 40, 0.1)
    signal = detector.score_one(bucket(T0 + timedelta(days=1), 1, 1))
    usual = signal.expected
    assert signal.low == 0.0
    assert signal.high == pytest.approx(usual + volume.BAND_Z * math.sqrt(usual * (1 - usual)))


def test_the_share_s_drift_learns_a_wave_clipped_and_forgets_it() -> None:
    """An hour at 80 % negative where 10 % is usual: the drift learns each bucket at the
    edge of 4 sd, so the concentration falls (the share did move) but not to the floor
    of a share that wanders as far as it can; three days of calm later it has mostly
    forgotten the wave (the drift fades with a day's half-life)."""
    detector = share_detector_after(1, 40, 0.1)
    start = T0 + timedelta(days=1)
    for i in range(12):
        share_probe(detector, start + timedelta(minutes=5 * i), 40, 32)
    low, _ = detector.params.concentration_range
    assert detector.concentration > 2 * low
    rng = random.Random(8)
    for i in range(12, 4 * 288):
        k = sum(rng.random() < 0.1 for _ in range(40))
        share_probe(detector, start + timedelta(minutes=5 * i), 40, k)
    assert detector.concentration > 200


def test_a_wave_at_nine_is_not_the_next_morning_s_rhythm() -> None:
    """A week at 10 %, then an hour at 80 % from 09:00: the 09:00 hour's share is learned
    over weeks of that hour (a half-life of 7 days), so the next morning's usual share at
    09:00 is barely higher. Had the hour remembered only its last buckets, the wave would
    be the next morning's rhythm (a factor of 1.4, and the next wave less surprising)."""
    detector = share_detector_after(7, 40, 0.1)
    start = T0 + timedelta(days=7, hours=9)
    before = detector.score_one(bucket(start, 40, 4)).expected
    for i in range(12):
        share_probe(detector, start + timedelta(minutes=5 * i), 40, 32)
    rng = random.Random(9)
    for i in range(12, 288):
        k = sum(rng.random() < 0.1 for _ in range(40))
        share_probe(detector, start + timedelta(minutes=5 * i), 40, k)
    after = detector.score_one(bucket(start + timedelta(days=1), 40, 4)).expected
    assert after < 1.1 * before


def share_stream(
    detector: NegativeShareDetector, at: datetime, phases: list[tuple[float, float]], n: int
) -> list[tuple[float, Signal]]:
    """``phases`` of (hours, share) of 5-minute buckets of ``n`` posts, binomial (seeded):
    each bucket's hours since the first phase began, and its signal (learned after)."""
    rng = random.Random(5)
    out = []
    i = 0
    for hours, share in phases:
        for _ in range(round(hours * 12)):
            k = sum(rng.random() < share for _ in range(n))
            out.append((i / 12, share_probe(detector, at + timedelta(minutes=5 * i), n, k)))
            i += 1
    return out


def alarm_hours(signals: list[tuple[float, Signal]]) -> list[float]:
    """When the signals read 0.9999 upwards (what the shipped rules fire on)."""
    return [h for h, s in signals if s.direction == "up" and s.likelihood >= 0.9999]


@pytest.mark.parametrize(("n", "high"), [(200, 0.3), (40, 0.3), (10, 0.4)])
def test_a_lasting_rise_of_the_negative_share_alerts_once_then_is_the_new_normal(
    n: int, high: float
) -> None:
    """The share goes from 10 % to ``high`` for good. It is news for about 3 hours
    (``adopt_after_seconds``, as a lasting step of the volume), then the normal: the
    usual share is the new one and the next day raises no alarm. Before, the usual share
    learned it clipped at the band's edge (as a wave must be), and it alarmed for 25 to
    33 hours (6 seeds each at 200 posts a bucket, 0.1 -> 0.3 or 0.2; 40; 10)."""
    detector = share_detector_after(3, n, 0.1)
    signals = share_stream(detector, T0 + timedelta(days=3), [(30.0, high)], n)
    alarms = alarm_hours(signals)
    assert alarms and alarms[0] < 0.5
    assert 2.5 < max(alarms) < 4.0
    assert detector.usual_share == pytest.approx(high, rel=0.15)


def test_the_end_of_a_long_negative_share_crisis_is_adopted_as_fast() -> None:
    """Six hours at 30 % where 10 % was usual (adopted 3 hours in), then calm: the return
    to the share before the crisis is adopted as soon as a CUSUM holds it at its cap, so
    a new wave an hour after the crisis is news at once. Not adopted, the crisis alarmed
    through its 6 hours and the calm after it; adopted after 3 hours as any change is,
    the calm was judged against the crisis's share and the new wave passed unseen (4 of
    4 streams of ``bench/shifts.py``)."""
    detector = share_detector_after(3, 40, 0.1)
    phases = [(6.0, 0.3), (1.0, 0.1), (1.0, 0.4)]
    signals = share_stream(detector, T0 + timedelta(days=3), phases, 40)
    alarms = alarm_hours(signals)
    assert [h for h in alarms if 4.0 <= h < 7.0] == []  # adopted, and calm is no news
    assert any(7.0 <= h < 7.5 for h in alarms)  # the new wave, within half an hour
    assert detector.shift_from == 0.0  # the episode is over: nothing remembered


def test_a_return_is_adopted_at_once_only_within_the_memory_and_near_the_old_share() -> None:
    """A lasting rise from 10 % to 30 %, adopted: the share before it is remembered for a
    day. A fall to 20 % is no return (not nearer 10 % than the doubling the CUSUMs look
    for): adopted after its 3 hours, as any change."""
    detector = share_detector_after(3, 200, 0.1)
    signals = share_stream(detector, T0 + timedelta(days=3), [(5.0, 0.3)], 200)
    assert detector.shift_from == pytest.approx(0.1, rel=0.1)
    assert detector.usual_share == pytest.approx(0.3, rel=0.1)
    share_stream(detector, T0 + timedelta(days=3, hours=5), [(2.0, 0.17)], 200)
    assert detector.usual_share == pytest.approx(0.3, rel=0.1)  # not yet
    share_stream(detector, T0 + timedelta(days=3, hours=7), [(2.0, 0.17)], 200)
    assert detector.usual_share == pytest.approx(0.17, rel=0.1)
    assert alarm_hours(signals)


def test_a_share_change_is_adopted_at_its_own_share_on_a_small_series() -> None:
    """Ten posts a bucket: a fall from 40 % to 10 % held for 3 hours. The share adopted is
    the change's since its CUSUM left 0 (0.1, near enough); the buckets of the hold
    alone are those that kept the CUSUM high (the fewest negatives): adopted, they read
    5 %, and 10 % then alarmed as a doubling for hours."""
    detector = share_detector_after(3, 10, 0.4)
    signals = share_stream(detector, T0 + timedelta(days=3), [(8.0, 0.1)], 10)
    assert detector.usual_share == pytest.approx(0.1, rel=0.35)
    assert alarm_hours(signals) == []


def test_an_hour_s_share_factor_keeps_when_the_usual_share_moves() -> None:
    """A share with a daily rhythm (0.06 to 0.18) doubles for good at 06:00 on day 7. Once
    the change is adopted, each hour of the day keeps its factor: the hours not yet seen
    at the new share are judged against it too. Against their own share over their
    posts, the hours seen since the change read higher and the others as quiet ones (0.7
    of the new share), for a day: stray alarms at noon and at night."""
    detector = NegativeShareDetector(300)
    calm = rhythmic_share(7, amplitude=0.5, seed=11)
    doubled = rhythmic_share(10, amplitude=0.5, seed=12, scale=2.0)
    counts = calm + doubled[7 * 288 :]
    start = 7 * 288 + 72  # 06:00
    counts[7 * 288 : start] = rhythmic_share(10, amplitude=0.5, seed=12)[7 * 288 : start]
    before, usual = [], 0.0
    alarms = 0
    for i, (n, k) in enumerate(counts):
        if i == start:
            before, usual = list(detector.hour_factors), detector.usual_share
        signal = share_probe(detector, T0 + timedelta(seconds=300 * i), n, k)
        if i >= start + 5 * 12:  # 2 hours after the change is adopted
            alarms += signal.direction == "up" and signal.likelihood >= 0.9999
    assert detector.usual_share == pytest.approx(2 * usual, rel=0.2)
    assert detector.hour_factors == pytest.approx(before, rel=0.25)
    assert alarms <= 1


def test_a_weekend_adopted_as_a_change_is_still_learned_as_the_weekend() -> None:
    """Twice the share at weekends (0.24 where weekdays are 0.12), 200 posts a bucket:
    the first Saturday is news (no weekend has been seen), then adopted as a lasting
    change, and its Monday adopted back. The weekdays' factors are each weekday's share
    against all weekdays', so Saturday still learns that it runs at twice the week: the
    next weekends are not news. Against the usual share of their time, as the hours are,
    the adoption took the weekend for the normal (factors of about 1) and every weekend
    was news (38 to 41 buckets at 0.999 each week)."""
    rng = numpy.random.default_rng(21)
    detector = NegativeShareDetector(300)
    alarms_by_week = [0, 0, 0, 0]
    for i in range(28 * 288):
        at = T0 + timedelta(seconds=300 * i)
        n = int(rng.poisson(200.0))
        k = int(rng.binomial(n, 0.24 if at.weekday() >= 5 else 0.12))
        signal = share_probe(detector, at, n, k)
        up = signal.direction == "up" and signal.likelihood >= 0.999
        alarms_by_week[i // (7 * 288)] += not signal.warming_up and up
    assert alarms_by_week[0] > 10  # the first weekend
    assert sum(alarms_by_week[1:]) <= 6
    weekdays = sum(detector.weekday_factors[:5]) / 5
    assert detector.weekday_factors[5] / weekdays == pytest.approx(2.0, rel=0.1)


def test_the_share_s_fall_cusum_step_is_negative_from_the_usual_share_up() -> None:
    """``learn_one`` skips the fall's CUSUM step when the CUSUM stands at 0 and the bucket
    is at or above the usual share: the beta-binomial likelihood ratio of half the share
    falls with k (a ratio of Pólya urns), and is below 0 from k = n x usual on."""
    detector = NegativeShareDetector(300)
    for n in (*range(1, 40), 100, 200, 1000, 3000):
        for usual in (0.001, 0.01, 0.05, 0.1, 0.2, 0.45, 0.8, 0.99):
            for c in (10.0, 30.0, 100.0, 1000.0, 10_000.0):
                k = math.ceil(n * usual)
                if k <= n:
                    assert detector._llr(k, n, usual, c, down=True) < 0.0
