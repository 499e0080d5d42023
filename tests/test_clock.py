"""Event time: the watermark, and holding it while a live source owes posts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from tests.factories import T0, mention
from xwatch.clock import EventClock, LiveCompleteness, WallSteps
from xwatch.metrics import Metrics
from xwatch.pipeline import Pipeline
from xwatch.sentiment.router import default_router
from xwatch.settings import load_settings

LATE = timedelta(seconds=60)


def _pipeline(project: Path) -> tuple[Pipeline, CollectorRegistry]:
    """The shipped config's pipeline, and the registry its metrics go to."""
    settings = load_settings(project / "config.yaml")
    registry = CollectorRegistry()
    pipeline = Pipeline(
        settings.config, settings.rules, settings.playbooks, default_router("en"), Metrics(registry)
    )
    return pipeline, registry


def test_watermark_is_the_newest_event_less_the_lateness_and_never_past_a_hold() -> None:
    clock = EventClock(LATE)
    assert clock.watermark is None
    clock.observe(T0 + timedelta(minutes=10))
    clock.observe(T0 + timedelta(minutes=5))  # older posts do not move it back
    assert clock.watermark == T0 + timedelta(minutes=9)
    clock.hold = T0 + timedelta(minutes=3)
    assert clock.watermark == T0 + timedelta(minutes=3)


def test_a_source_that_is_down_holds_event_time_at_the_start_of_its_gap() -> None:
    live = LiveCompleteness(LATE, catch_up=timedelta(minutes=5))
    live.started("mqtt", T0)
    assert live.hold(T0) == T0 - LATE  # nothing delivered yet
    live.connected("mqtt", True, T0)
    live.delivered("mqtt", T0 + timedelta(seconds=1))  # a fresh post: caught up
    assert live.hold(T0 + timedelta(seconds=1)) == T0 + timedelta(seconds=1) - LATE  # wall time

    gap = T0 + timedelta(minutes=10)
    live.connected("mqtt", False, gap)
    assert live.hold(gap + timedelta(minutes=30)) == gap - LATE  # held while down
    back = gap + timedelta(minutes=30)
    live.connected("mqtt", True, back)
    live.delivered("mqtt", gap + timedelta(minutes=1))  # the backlog: still owed
    assert live.hold(back + timedelta(seconds=5)) == gap - LATE
    live.delivered("mqtt", back + timedelta(seconds=2))  # fresh again
    assert live.hold(back + timedelta(seconds=5)) == back + timedelta(seconds=5) - LATE


def test_a_quiet_source_is_released_after_the_catch_up_time() -> None:
    live = LiveCompleteness(LATE, catch_up=timedelta(minutes=5))
    live.started("x", T0)
    live.connected("x", True, T0)
    assert live.hold(T0 + timedelta(minutes=4)) == T0 - LATE
    assert live.hold(T0 + timedelta(minutes=5)) == T0 + timedelta(minutes=5) - LATE


def test_without_live_sources_nothing_is_held() -> None:
    live = LiveCompleteness(LATE, catch_up=timedelta(minutes=5))  # a replay, a backtest
    assert live.hold(T0) is None


def test_a_post_from_a_fast_clock_does_not_close_the_buckets_of_the_next_minutes(
    project: Path,
) -> None:
    pipeline, registry = _pipeline(project)
    live = LiveCompleteness(LATE, catch_up=timedelta(minutes=5))
    live.started("mqtt", T0)
    live.connected("mqtt", True, T0)
    live.delivered("mqtt", T0)
    for minute in range(10):  # the stream so far
        pipeline.clock.hold = live.hold(T0 + timedelta(minutes=minute, seconds=30))
        pipeline.ingest([mention("kettlebird", at=60 * minute + 20, id=f"before-{minute}")])
    now = T0 + timedelta(minutes=10)
    pipeline.clock.hold = live.hold(now)
    # a producer whose clock is 4 minutes fast, then the posts of the next minutes
    pipeline.ingest([mention("kettlebird", at=14 * 60, id="ahead")])
    for minute in range(10, 14):
        now = T0 + timedelta(minutes=minute, seconds=30)
        pipeline.clock.hold = live.hold(now)
        pipeline.ingest([mention("kettlebird", at=60 * minute + 20, id=f"on-time-{minute}")])
    assert registry.get_sample_value("xwatch_mentions_late_total") == 0


def test_a_first_post_from_a_fast_clock_does_not_start_the_series_in_the_future(
    project: Path,
) -> None:
    pipeline, registry = _pipeline(project)
    live = LiveCompleteness(LATE, catch_up=timedelta(minutes=5))
    live.started("mqtt", T0)
    pipeline.clock.hold = live.hold(T0)
    pipeline.ingest([mention("kettlebird", at=4 * 60, id="ahead")])  # the daemon's first post
    pipeline.tick(T0 + timedelta(seconds=30))
    for second in range(30, 240, 30):
        pipeline.clock.hold = live.hold(T0 + timedelta(seconds=second))
        pipeline.ingest([mention("kettlebird", at=second, id=f"on-time-{second}")])
    pipeline.clock.hold = None
    pipeline.flush()
    assert registry.get_sample_value("xwatch_mentions_late_total") == 0
    closed = registry.get_sample_value("xwatch_buckets_closed_total", {"scale": "1m"})
    assert closed is not None and closed >= 5  # the minutes from the first on-time post on


def test_a_straggler_from_days_ago_does_not_move_the_start_back(project: Path) -> None:
    """Only as far as a fast clock may be ahead: not days of empty buckets to learn."""
    pipeline, registry = _pipeline(project)
    pipeline.ingest([mention("kettlebird", at=2 * 86400, id="now")])
    pipeline.ingest([mention("kettlebird", at=0, id="two days before")])
    assert registry.get_sample_value("xwatch_mentions_late_total") == 1
    assert pipeline.aggregator.start == (T0 + timedelta(days=2)).timestamp()


def test_the_earliest_gap_of_several_sources_wins() -> None:
    live = LiveCompleteness(LATE, catch_up=timedelta(minutes=5))
    live.connected("a", False, T0 + timedelta(minutes=20))
    live.connected("b", False, T0 + timedelta(minutes=10))
    assert live.hold(T0 + timedelta(hours=1)) == T0 + timedelta(minutes=10) - LATE


def test_posts_backfilled_after_a_gap_are_counted_not_late(project: Path) -> None:
    """While a source is down the ticks do not close its gap; the backfill fills it."""
    pipeline, registry = _pipeline(project)
    live = LiveCompleteness(LATE, catch_up=timedelta(minutes=5))
    live.started("x", T0)
    live.connected("x", True, T0)
    pipeline.ingest([mention("kettlebird", at=0, id="1")])
    live.delivered("x", T0)
    gap = T0 + timedelta(minutes=2)
    live.connected("x", False, gap)
    for minute in range(3, 30):  # wall time passes while the stream is down
        now = T0 + timedelta(minutes=minute)
        pipeline.clock.hold = live.hold(now)
        pipeline.tick(now)
    back = T0 + timedelta(minutes=30)
    live.connected("x", True, back)
    backfill = [mention("kettlebird", at=60 * m, id=f"b{m}") for m in range(3, 30)]
    pipeline.clock.hold = live.hold(back)
    pipeline.ingest(backfill)
    assert registry.get_sample_value("xwatch_mentions_late_total") == 0
    assert registry.get_sample_value(
        "xwatch_mentions_processed_total", {"brand": "kettlebird"}
    ) == 1 + len(backfill)


def test_a_wall_clock_step_ahead_ticks_by_the_time_that_passed() -> None:
    """An NTP step or a resumed VM: a tick hours ahead would close those hours' buckets
    as empty (a false volume drop) and make every post after it late."""
    mono = [0.0]
    steps = WallSteps(lambda: mono[0])
    wall = datetime(2026, 11, 16, 9, tzinfo=UTC)

    def tick(seconds_passed: float, wall_now: datetime) -> tuple[datetime, float | None]:
        mono[0] += seconds_passed
        return steps.at(wall_now)

    assert tick(0, wall) == (wall, None)
    assert tick(1, wall + timedelta(seconds=1)) == (wall + timedelta(seconds=1), None)
    # a glitch of 6 hours for one tick: ticked by the time that passed, and said once
    at, step = tick(1, wall + timedelta(hours=6, seconds=2))
    assert (at, step) == (wall + timedelta(seconds=2), 6 * 3600.0)
    assert tick(1, wall + timedelta(seconds=3)) == (wall + timedelta(seconds=3), None)
    # a step that stays: the time that passed, however long, and said once
    assert tick(1, wall + timedelta(hours=3, seconds=4))[1] == 3 * 3600.0
    assert tick(1, wall + timedelta(hours=3, seconds=5)) == (wall + timedelta(seconds=5), None)
    # a step back: the wall clock again (the event clock never goes back anyway)
    back = wall - timedelta(hours=1)
    assert tick(1, back) == (back, None)
    assert tick(1, back + timedelta(seconds=1)) == (back + timedelta(seconds=1), None)
