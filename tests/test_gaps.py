"""Holes in a replayed stream's event time, and posts with a wrong date.

A replay's clock is driven by its posts alone. A day without one post about any brand
is a hole in the data: the series go on after it rather than judging each of its
empty buckets (a post from years ahead used to make the pipeline close a bucket per
minute per series until then: hours, then out of memory). A post that jumps that far
ahead of the others without the next post following it is a stray and is refused.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.factories import T0, mention
from tests.test_pipeline import make_pipeline
from xwatch.detect.share import NegativeShareDetector
from xwatch.detect.terms import TermModel
from xwatch.detect.volume import CountDetector
from xwatch.model import Author, Bucket, Measure, Mention, SeriesKey
from xwatch.pipeline import MAX_GAP, Pipeline
from xwatch.settings import Settings, load_settings

YEARS = timedelta(days=3 * 365)


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(project / "config.yaml")


def posts(start: datetime, count: int, prefix: str, every: float = 30.0) -> list[Mention]:
    return [
        mention("kettlebird is fine", at=start + timedelta(seconds=every * i), id=f"{prefix}{i}")
        for i in range(count)
    ]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def closed_at_finest(registry: CollectorRegistry) -> float:
    return sample(registry, "xwatch_buckets_closed_total", scale="1m")


def run(pipeline: Pipeline, batches: list[list[Mention]]) -> None:
    for batch in batches:
        pipeline.ingest(batch)
    pipeline.flush()


def test_a_hole_of_years_is_skipped_not_judged_bucket_by_bucket(settings: Settings) -> None:
    before, after = posts(T0, 20, "a"), posts(T0 + YEARS, 20, "b")
    pipeline, registry = make_pipeline(settings)
    run(pipeline, [before, after])
    assert sample(registry, "xwatch_event_time_gaps_total") == 1
    assert sample(registry, "xwatch_mentions_late_total") == 0
    processed = sample(registry, "xwatch_mentions_processed_total", brand="kettlebird")
    assert processed == 40
    # 10 minutes of posts on each side, and the lateness after each: not 3 years of minutes
    assert closed_at_finest(registry) < 60


def test_a_hole_just_under_a_day_is_data_every_empty_bucket_judged(settings: Settings) -> None:
    quiet = MAX_GAP - timedelta(minutes=10)
    pipeline, registry = make_pipeline(settings)
    run(pipeline, [posts(T0, 2, "a"), posts(T0 + quiet, 2, "b")])
    assert sample(registry, "xwatch_event_time_gaps_total") == 0
    assert closed_at_finest(registry) >= quiet.total_seconds() // 60


def test_a_stray_post_dated_years_ahead_is_refused_and_the_stream_goes_on(
    settings: Settings,
) -> None:
    stray = mention("kettlebird from the future", at=T0 + YEARS, id="stray")
    stream = [*posts(T0, 10, "a"), stray, *posts(T0 + timedelta(minutes=5), 10, "b")]
    pipeline, registry = make_pipeline(settings)
    run(pipeline, [stream])
    assert (
        sample(registry, "xwatch_mentions_rejected_total", source="test", reason="bad_timestamp")
        == 1
    )
    assert sample(registry, "xwatch_event_time_gaps_total") == 0
    assert sample(registry, "xwatch_mentions_late_total") == 0  # the posts after it are on time
    assert sample(registry, "xwatch_mentions_processed_total", brand="kettlebird") == 20


@pytest.mark.parametrize("split", [0, 1, 10, 11, 12, 21])
def test_the_verdict_on_a_jump_does_not_depend_on_the_batches(
    settings: Settings, split: int
) -> None:
    """The post after a jump may come in the next batch: the jumping post waits for it."""
    stray = mention("kettlebird from the future", at=T0 + YEARS, id="stray")
    hole = posts(T0 + YEARS + timedelta(minutes=1), 10, "c")
    for stream, refused, gaps in (
        ([*posts(T0, 10, "a"), stray, *posts(T0 + timedelta(minutes=5), 10, "b")], 1, 0),
        ([*posts(T0, 10, "a"), stray, *hole], 0, 1),
    ):
        pipeline, registry = make_pipeline(settings)
        run(pipeline, [stream[:split], stream[split:]])
        rejected = sample(
            registry, "xwatch_mentions_rejected_total", source="test", reason="bad_timestamp"
        )
        assert (rejected, sample(registry, "xwatch_event_time_gaps_total")) == (refused, gaps)
        assert sample(registry, "xwatch_mentions_late_total") == 0


def test_a_jumping_last_post_has_nothing_to_refute_it_and_goes_in(settings: Settings) -> None:
    last = mention("kettlebird, much later", at=T0 + YEARS, id="last")
    pipeline, registry = make_pipeline(settings)
    run(pipeline, [[*posts(T0, 5, "a"), last]])
    assert sample(registry, "xwatch_mentions_processed_total", brand="kettlebird") == 6
    assert sample(registry, "xwatch_event_time_gaps_total") == 1


def test_a_first_post_from_years_before_does_not_end_the_warm_up(settings: Settings) -> None:
    """A stray first post, years before the rest: the rest goes on after the hole, and the
    hole is no time watched, so the detectors are still warming up after it."""
    old = mention("kettlebird, long ago", at=T0 - YEARS, id="old")
    surge = [
        dataclasses.replace(
            mention("kettlebird is broken", at=T0 + timedelta(seconds=i), id=f"s{i}"),
            author=Author(id=f"author-{i}"),
        )
        for i in range(300)
    ]
    pipeline, registry = make_pipeline(settings)
    events = [*pipeline.ingest([old, *posts(T0 - timedelta(hours=1), 1, "x")])]
    events += pipeline.ingest([*posts(T0 - timedelta(minutes=30), 30, "a"), *surge])
    events += pipeline.flush()
    assert sample(registry, "xwatch_event_time_gaps_total") == 1
    assert events == []  # a surge in the warm-up: no baseline yet, no alert


def skip_then_warming_up(detector: CountDetector | NegativeShareDetector) -> bool:
    start = datetime(2026, 11, 16, tzinfo=UTC)
    width = timedelta(seconds=300)
    key = SeriesKey("b", "", 300)
    detector.learn_one(Bucket(key, start, start + width, 10, 2, 0))
    detector.skip_hole(YEARS.total_seconds())
    later = start + YEARS + width
    return detector.score_one(Bucket(key, later, later + width, 10, 2, 0)).warming_up


@pytest.mark.parametrize(
    "detector",
    [
        CountDetector(Measure.VOLUME, 300),
        CountDetector(Measure.NEGATIVE_VOLUME, 300),
        NegativeShareDetector(300),
    ],
    ids=lambda d: f"{type(d).__name__}-{d.measure.value}",
)
def test_a_hole_is_no_time_watched_for_every_detector(
    detector: CountDetector | NegativeShareDetector,
) -> None:
    assert skip_then_warming_up(detector)


def test_a_hole_is_no_history_for_the_term_model() -> None:
    model = TermModel(300)
    model.learn(0.0, 10, {"kettle": 3})
    model.skip_hole(YEARS.total_seconds())
    assert model.history_seconds(YEARS.total_seconds() + 300.0) == 300.0
