"""The daemon's consumer gathers the posts that trickle in into batches (a batch costs a
round of bucket closing and bookkeeping whatever its size)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.factories import T0, FixedClock, GatedSource, mention
from tests.waiting import eventually
from xwatch import daemon as daemon_module
from xwatch.daemon import Daemon
from xwatch.model import Mention
from xwatch.settings import load_settings


def _config(project: Path) -> Path:
    """One brand, no store, no fixed port; the test gives the daemon its own sources."""
    config = project / "batching.yaml"
    config.write_text(
        'brands:\n  - {id: kettlebird, name: Kettlebird, terms: ["kettlebird"]}\n'
        f"sources:\n  - {{type: replay, path: {project / 'none.jsonl'}}}\n"
        "server: {host: 127.0.0.1, port: 0}\nstore: {enabled: false}\n",
        "utf-8",
    )
    return config


class Trickle(GatedSource):
    """A finite source whose posts come one at a time, the loop running in between."""

    async def _run(self) -> AsyncIterator[Mention]:
        for post in self.mentions:
            await asyncio.sleep(0)  # the consumer may run: the queue is often empty
            yield post


@pytest.mark.asyncio
async def test_posts_that_trickle_in_are_ingested_in_a_few_batches(project: Path) -> None:
    config = _config(project)
    posts = [mention(f"kettlebird post {i}", at=i, id=f"p{i}") for i in range(50)]
    daemon = Daemon(load_settings(config), sources=[Trickle(posts)])
    daemon.exit_when_done = True
    await asyncio.wait_for(daemon.run(), 20)
    assert daemon.ingested == 50
    batches = daemon.registry.get_sample_value("xwatch_pipeline_batch_seconds_count")
    assert batches is not None and batches <= 5  # one per post without waiting for more


class LiveGated(GatedSource):
    live = True


@pytest.mark.asyncio
async def test_wall_time_does_not_close_the_buckets_of_posts_still_waiting(project: Path) -> None:
    """A daemon that falls behind: the posts in its queue carry the event time; ticking
    the clock to the wall time first would close their buckets and make them late."""
    config = _config(project)
    daemon = Daemon(load_settings(config), sources=[LiveGated([])])
    waiting = mention("kettlebird", at=0, id="waiting")
    daemon.queue.put_nowait(waiting)
    later = waiting.created_at + timedelta(minutes=10)
    daemon.tick(later)
    assert daemon.pipeline.clock.newest is None  # its buckets stay open
    daemon.queue.get_nowait()
    daemon.tick(later)  # a silent feed: wall time closes buckets
    assert daemon.pipeline.clock.newest == later


@pytest.mark.asyncio
async def test_wall_time_waits_while_a_backlog_is_worked_through(project: Path) -> None:
    """The queue may be empty for a moment while the broker still holds a backlog: the
    age of the posts just taken says the daemon is behind."""
    config = _config(project)
    clock = FixedClock(T0 + timedelta(minutes=10))
    daemon = Daemon(load_settings(config), sources=[LiveGated([])], clock=clock)
    old = [mention(f"kettlebird {i}", at=60 * i, id=f"old-{i}") for i in range(3)]
    for post in old:
        daemon.queue.put_nowait(post)
    consumer = asyncio.create_task(daemon._consume())
    await eventually(lambda: daemon.ingested == 3, "the backlog's first batch taken")
    assert daemon.queue.empty()
    newest = daemon.pipeline.clock.newest
    daemon.tick(clock.now())  # 8 minutes behind: the posts still at the broker count
    assert daemon.pipeline.clock.newest == newest
    clock.at += timedelta(minutes=2)  # no post for longer than the lateness: silence
    daemon.tick(clock.now())
    assert daemon.pipeline.clock.newest == clock.now()
    consumer.cancel()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("slow", "seconds_apart", "at_least", "at_most"),
    [
        (False, 5.0, 2, 3),  # 10 minutes: batches of 5 rounds of closes at the most
        (True, 5.0, 10, 13),  # as after a slow batch: a round each
        (False, 60.0, 23, 26),  # 2 hours (a sparse backlog): 5 rounds each, not 1,000 posts
    ],
)
async def test_slow_batches_end_at_each_round_of_bucket_closes(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    slow: bool,
    seconds_apart: float,
    at_least: int,
    at_most: int,
) -> None:
    """A backlog's batch of 1,000 posts spanned minutes of event time, each closing a
    bucket of every series: with 1,000 brands the loop (and /healthz) stopped 6-10 s at a
    time. Once a batch is slow, the next ones end at the post that closes buckets, and go
    on so while the backlog lasts: a batch cut short is quick, and says nothing of the
    next (each slow batch was followed by one cut short, then a whole slow one again).
    Before any is known to be slow, a batch spans 5 rounds at the most (a backlog's first
    batch, all 1,000 posts, spanned as many as they did)."""
    monkeypatch.setattr(daemon_module, "SLOW_BATCH_SECONDS", 3600.0)  # none slow from now
    config = _config(project)
    posts = [mention(f"kettlebird post {i}", at=seconds_apart * i, id=f"p{i}") for i in range(120)]
    daemon = Daemon(load_settings(config), sources=[GatedSource(posts, held=True)])
    daemon.exit_when_done = True
    daemon._slow_batches = slow  # as after a first slow batch (of a thousand posts)
    source = daemon.sources[0]
    assert isinstance(source, GatedSource)
    running = asyncio.create_task(daemon.run())
    await eventually(lambda: daemon.serving.is_set(), "the daemon serves")
    source.go.set()  # all 120 posts (10 minutes of event time) in the queue at once
    await asyncio.wait_for(source.sent.wait(), 10)
    source.finish.set()
    await asyncio.wait_for(running, 20)
    assert daemon.ingested == 120
    batches = daemon.registry.get_sample_value("xwatch_pipeline_batch_seconds_count")
    assert batches is not None and at_least <= batches <= at_most
