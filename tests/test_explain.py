"""Signals that explain themselves: when consecutive buckets together made the likelihood
(a detector's CUSUM), the signal carries that run, and the alert text shows it."""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import timedelta

import pytest

from tests.factories import T0, alert, bucket, notice, share_detector_after
from xwatch.alerting.chart import incident_chart
from xwatch.alerting.codec import from_json, to_json
from xwatch.alerting.render import describe
from xwatch.detect.volume import CountDetector
from xwatch.model import Alert, Bucket, Measure, Run, SeriesKey, Signal


def test_a_share_alarm_from_its_cusum_carries_the_run_of_buckets_behind_it() -> None:
    detector = share_detector_after(1, 40, 0.1)
    rng = random.Random(16)
    seen: list[Bucket] = []
    usual: list[float] = []
    for i in range(24):  # two hours at twice the usual share, 40 posts a bucket
        k = sum(rng.random() < 0.2 for _ in range(40))
        b = bucket(T0 + timedelta(days=1, seconds=300 * i), 40, k)
        usual.append(detector.usual_share)
        signal = detector.score_one(b)
        seen.append(b)
        if signal.likelihood >= 0.9999 and signal.run is not None:
            break
        detector.learn_one(b)
    else:
        pytest.fail("the doubled share was never flagged by its CUSUM")
    run = signal.run
    assert run is not None and run.buckets >= 2
    mine = seen[-run.buckets :]
    assert run.start == mine[0].start
    assert run.observed == sum(b.negative for b in mine)
    assert run.posts == sum(b.count for b in mine)
    expected = sum(b.count * share for b, share in zip(mine, usual[-run.buckets :], strict=True))
    assert run.expected == pytest.approx(expected)
    assert run.observed > 1.5 * run.expected  # the doubling it stands on
    text = describe(signal)
    assert f"sustained since {run.start:%H:%M} UTC ({run.buckets} buckets of 5m)" in text
    assert f"{run.observed:.0f} of {run.posts} posts negative" in text


def test_a_single_extreme_bucket_explains_itself_without_a_run() -> None:
    detector = share_detector_after(1, 10, 0.1)
    signal = detector.score_one(bucket(T0 + timedelta(days=1), 40, 24))
    assert signal.likelihood > 0.99999
    assert signal.run is None
    assert "sustained" not in describe(signal)


def test_the_run_ends_when_the_cusum_is_back_at_zero() -> None:
    detector = share_detector_after(1, 40, 0.1)
    before = detector.run.buckets  # a run the noise may have started already
    for i in range(3):  # a few high buckets start (or go on with) a run...
        b = bucket(T0 + timedelta(days=1, seconds=300 * i), 40, 10)
        detector.score_one(b)
        detector.learn_one(b)
    assert detector.run.buckets == before + 3
    for i in range(3, 40):  # ...calm ones end it
        b = bucket(T0 + timedelta(days=1, seconds=300 * i), 40, 2)
        detector.score_one(b)
        detector.learn_one(b)
    assert detector.cusum == 0.0
    assert (detector.run.start, detector.run.buckets, detector.run.posts) == (None, 0, 0)


def test_a_volume_run_reads_as_a_total_against_its_expectation() -> None:
    start = T0 + timedelta(hours=13, minutes=5)
    signal = Signal(
        SeriesKey("acme", "", 300),
        Measure.VOLUME,
        start,
        start + timedelta(minutes=5),
        observed=15.0,
        expected=21.5,
        low=6.0,
        high=50.0,
        likelihood=0.99999,
        direction="down",
        run=Run(start - timedelta(minutes=25), 6, observed=60.0, expected=129.0),
    )
    assert describe(signal) == (
        "volume 15 (expected 21.5, band 6-50); sustained since 12:40 UTC "
        "(6 buckets of 5m): 60 against 129.0 expected"
    )


def test_alerts_stored_before_signals_had_runs_still_load() -> None:
    stored = to_json(alert())
    del stored["signal"]["run"]
    restored = from_json(Alert, stored)
    assert restored.signal.run is None
    assert dataclasses.replace(restored, signal=alert().signal) == alert()


def test_the_incident_chart_shades_the_run_behind_the_alert() -> None:
    fired = alert()
    run = Run(fired.signal.start - timedelta(minutes=25), 6, observed=60.0, expected=20.0)
    with_run = dataclasses.replace(fired, signal=dataclasses.replace(fired.signal, run=run))
    plain = incident_chart(notice(alert_=fired).incident)
    shaded = incident_chart(notice(alert_=with_run).incident)
    assert plain is not None and shaded is not None
    assert shaded.startswith(b"\x89PNG") and shaded != plain


def test_the_incident_chart_draws_a_bucket_still_open_as_its_posts_so_far() -> None:
    fired = alert()
    so_far = dataclasses.replace(
        fired.signal, end=fired.signal.start + timedelta(seconds=20), observed=300.0
    )
    early = dataclasses.replace(fired, signal=so_far)
    assert early.signal.so_far and not early.series.topic
    closed = incident_chart(notice(alert_=fired).incident)
    drawn = incident_chart(notice(alert_=early).incident)
    assert closed is not None and drawn is not None and drawn != closed


def test_a_sustained_volume_drop_carries_the_run_that_made_it() -> None:
    """Half the usual volume for a while: no bucket alone is extreme, their run is."""
    rng = random.Random(3)
    detector = CountDetector(Measure.VOLUME, 300)
    counts = [_poisson(rng, 40.0) for _ in range(3 * 288)]  # three calm days
    counts += [_poisson(rng, 20.0) for _ in range(24)]  # then two hours at half
    expected: list[float] = []
    found: Signal | None = None
    for i, count in enumerate(counts):
        b = bucket(T0 + timedelta(seconds=300 * i), count)
        signal = detector.score_one(b)
        expected.append(signal.expected)
        if i >= 3 * 288 and signal.direction == "down" and signal.likelihood >= 0.9999:
            found = signal
            break
        detector.learn_one(b)
    assert found is not None, "the halved volume was never flagged"
    run = found.run
    assert run is not None and run.buckets >= 2
    first = (run.start - T0) // timedelta(seconds=300)
    assert run.start + timedelta(seconds=300 * (run.buckets - 1)) == found.start
    assert run.observed == sum(counts[first : first + run.buckets])
    assert run.expected == pytest.approx(sum(expected[first : first + run.buckets]))
    assert run.observed < 0.75 * run.expected
    assert "sustained since" in describe(found)


def _poisson(rng: random.Random, rate: float) -> int:
    """A Poisson draw (Knuth's method: fine for these small rates)."""
    limit, k, p = math.exp(-rate), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def test_a_sparse_series_expected_count_is_not_rounded_to_silence() -> None:
    """A topic seen 15 times a day expects 0.05 posts in a 5-minute bucket: "expected 0.0"
    would say it is never mentioned."""
    sparse = Signal(
        series=SeriesKey("b", "defect"),
        measure=Measure.VOLUME,
        start=T0,
        end=T0 + timedelta(minutes=5),
        observed=8.0,
        expected=0.047,
        low=0.0,
        high=1.0,
        likelihood=1.0,
        direction="up",
        surprise=9.0,
    )
    assert describe(sparse).startswith("volume 8 (expected 0.047, band 0-1)")
    busy = dataclasses.replace(sparse, expected=31.44, high=47.0)
    assert "expected 31.4," in describe(busy)


def test_a_bucket_judged_while_still_open_says_so() -> None:
    """An early verdict counts the posts so far against the whole bucket's expectation."""
    closed = Signal(
        series=SeriesKey("b", "", 300),
        measure=Measure.NEGATIVE_VOLUME,
        start=T0,
        end=T0 + timedelta(minutes=5),
        observed=5.0,
        expected=0.023,
        low=0.0,
        high=1.0,
        likelihood=1.0,
        direction="up",
        surprise=9.0,
    )
    early = dataclasses.replace(closed, end=T0 + timedelta(seconds=110))
    assert not closed.so_far and early.so_far
    assert describe(closed).startswith("negative volume 5 (expected 0.023, band 0-1)")
    assert describe(early).startswith(
        "negative volume 5 in the first 1m50s of its 5m bucket (expected 0.023 in all of it"
    )
    mention = dataclasses.replace(early, measure=Measure.MENTION, end=T0)
    assert not mention.so_far  # one post: not a bucket
