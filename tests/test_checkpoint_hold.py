"""A checkpoint holds bucket closes while it takes the detectors' states
(``Pipeline.closes_held``): whatever was due must close once it is over."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.factories import T0, GatedSource, mention
from tests.test_pipeline import make_pipeline
from xwatch.daemon import Daemon
from xwatch.detect.state import Checkpoint
from xwatch.model import Bucket
from xwatch.settings import load_settings


@pytest.mark.asyncio
async def test_the_end_of_a_finite_stream_during_a_checkpoint_still_closes_every_bucket(
    project: Path,
) -> None:
    """The last buckets of a replay close at its end (``flush_rounds``): nothing moves
    time on after it. A checkpoint under way then held those closes, and they never
    came: the replay's last alerts were never judged."""
    config = project / "config.yaml"
    text = config.read_text("utf-8").replace("port: 9464", "port: 0")
    config.write_text(text.replace("store:\n  enabled: false", "store:\n  enabled: true"))
    source = GatedSource([mention("kettlebird kettle", at=s, id=str(s)) for s in range(0, 600, 5)])
    daemon = Daemon(load_settings(config), sources=[source])
    taken = asyncio.Event()

    def slow_chunks(size: int = 0) -> Iterator[list[Checkpoint]]:
        for _ in range(200):  # a checkpoint of many series: the loop turns in between
            taken.set()
            yield []

    task = asyncio.create_task(daemon.run())
    try:
        await source.sent.wait()
        await asyncio.wait_for(daemon.queue.join(), 10)
        daemon.pipeline.checkpoint_chunks = slow_chunks  # type: ignore[method-assign]
        checkpoint = asyncio.create_task(daemon._checkpoint())
        await taken.wait()
        assert daemon.pipeline.aggregator.held
        source.finish.set()  # the stream ends while the checkpoint holds the closes
        await asyncio.wait_for(daemon.sources_done.wait(), 10)
        await checkpoint
        assert not daemon.pipeline.aggregator.held
        still_open = {
            str(key): len(series.open)
            for key, series in daemon.pipeline.aggregator.series.items()
            if series.open
        }
        assert still_open == {}
    finally:
        daemon.stop.set()
        await asyncio.wait_for(task, 10)


def test_a_hole_in_the_data_during_a_checkpoint_closes_what_it_must_and_says_so(
    project: Path,
) -> None:
    """Posts that jump a day ahead close every bucket holding a post, then the series go
    on after the hole: held, those buckets were skipped, their posts never counted."""
    settings = load_settings(project / "config.yaml")
    pipeline, _ = make_pipeline(settings)
    closed: list[Bucket] = []
    close_until = pipeline.aggregator.close_until

    def spy(watermark: datetime) -> list[Bucket]:
        buckets = close_until(watermark)
        closed.extend(buckets)
        return buckets

    pipeline.aggregator.close_until = spy  # type: ignore[method-assign]
    pipeline.ingest([mention("kettlebird kettle", at=s, id=str(s)) for s in range(0, 300, 5)])
    later = 3 * 86400
    with pipeline.closes_held():
        pipeline.ingest([mention("kettlebird", at=later + s, id=f"x{s}") for s in (0, 1)])
        counted = {
            scale: sum(b.count for b in closed if b.series.scale_seconds == scale)
            for scale in (60, 300, 900)
        }
        assert counted == {60: 60, 300: 60, 900: 60}  # the first day's posts, every one
        assert pipeline.hold_broken  # the checkpoint being taken is not saved
        assert pipeline.aggregator.held  # held again once the hole's closes are done
    assert sum(len(s.open) for s in pipeline.aggregator.series.values()) == 3  # day 3's


def test_while_closes_are_held_time_does_not_move_on_for_the_alerts_either(
    project: Path,
) -> None:
    """A firing whose calm period ends during a checkpoint must not resolve there: the
    buckets that might fire it again are held, and it would fire anew after."""
    settings = load_settings(project / "config.yaml")
    pipeline, _ = make_pipeline(settings)
    hacked = mention("the kettlebird account was hacked!!", at=0, id="h")
    events = pipeline.ingest([hacked, mention("kettlebird kettle", at=200, id="k")])
    assert [e.kind.value for e in events] == ["firing"]
    calm = settings.config.alerting.resolve_after_seconds
    later = T0 + timedelta(seconds=calm + 3600)
    with pipeline.closes_held():
        assert pipeline.tick(later) == []  # nothing resolves while the buckets wait
    assert "resolved" in [e.kind.value for e in pipeline.tick(later)]
