"""Faults with real parts: a live source's far end fails under a running daemon.

``tests/test_source_mqtt.py`` and ``tests/test_source_x_stream.py`` show the sources
ride out a broker restart and X's drops, 503s, 429s and garbage; here the daemon
(in-process, its web server on a free port) must say so while it happens: ``/readyz``
answers 503 naming the source, ``xwatch_source_up`` drops to 0, each problem and
reconnect is counted; once the far end is back, all is ready again and what is sent
then arrives, with what came before, once each.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.brokers import Mosquitto, started_mosquitto
from tests.fake_x import TOKEN, Drop, FakeX, Raw, Send, Status
from tests.waiting import eventually
from xwatch.daemon import Daemon
from xwatch.model import AlertEvent, Bucket, Mention, SeriesKey
from xwatch.settings import load_settings
from xwatch.sources.x_stream import XStreamSource
from xwatch.store import Store


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    with started_mosquitto(tmp_path, "the broker restart test") as broker:
        yield broker


def write_config(project: Path, broker: Mosquitto) -> Path:
    config = project / "broker.yaml"
    config.write_text(
        "brands:\n"
        "  - id: kettlebird\n"
        "    name: Kettlebird\n"
        '    terms: ["kettlebird"]\n'
        "sources:\n"
        "  - type: mqtt\n"
        "    host: 127.0.0.1\n"
        f"    port: {broker.port}\n"
        "    client_id: xwatch-restart\n"
        "    reconnect_min_seconds: 0.05\n"
        "    reconnect_max_seconds: 0.2\n"
        "server:\n"
        "  host: 127.0.0.1\n"
        "  port: 0\n"
        "store:\n"
        "  enabled: false\n"
        "drain_timeout_seconds: 2\n",
        "utf-8",
    )
    return config


async def publish(broker: Mosquitto, ids: Sequence[str]) -> datetime:
    """Publish a post per id at QoS 1 (mosquitto_pub); return the time they all carry."""
    at = datetime.now(UTC)
    now = at.isoformat().replace("+00:00", "Z")
    lines = "".join(
        json.dumps({"id": i, "text": "kettlebird kettle", "created_at": now}) + "\n" for i in ids
    )
    publisher = await asyncio.create_subprocess_exec(
        "mosquitto_pub",
        *("-h", broker.host, "-p", str(broker.port), "-q", "1"),
        *("-t", "xwatch/mentions/kettlebird", "-l"),
        stdin=asyncio.subprocess.PIPE,
    )
    await asyncio.wait_for(publisher.communicate(lines.encode()), 10)
    assert publisher.returncode == 0
    return at


async def readyz(http: aiohttp.ClientSession) -> tuple[int, dict[str, Any]]:
    async with http.get("/readyz") as response:
        return response.status, await response.json()


@pytest.mark.asyncio
async def test_a_broker_restart_is_surfaced_in_readyz_and_metrics_then_recovered_from(
    project: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = Daemon(load_settings(write_config(project, mosquitto)))
    seen: list[str] = []
    ingest = daemon.pipeline.ingest

    def recording(batch: Sequence[Mention]) -> list[AlertEvent]:
        seen.extend(m.id for m in batch)
        return ingest(batch)

    monkeypatch.setattr(daemon.pipeline, "ingest", recording)

    def sample(name: str) -> float:
        return daemon.registry.get_sample_value(name, {"source": "mqtt"}) or 0.0

    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.serving.wait(), 10)
        async with aiohttp.ClientSession(daemon.web_url) as http:
            await eventually(lambda: sample("xwatch_source_up") == 1, "subscribed")
            assert await readyz(http) == (200, {"ready": True, "reason": "ok"})
            await publish(mosquitto, ["before-1", "before-2"])
            await eventually(lambda: len(seen) == 2, "the first posts ingested")

            await asyncio.to_thread(mosquitto.stop)
            await eventually(lambda: sample("xwatch_source_up") == 0, "the source down")
            assert await readyz(http) == (503, {"ready": False, "reason": "not connected: mqtt"})
            reconnects = sample("xwatch_source_reconnects_total")
            await eventually(
                lambda: sample("xwatch_source_reconnects_total") > reconnects + 1,
                "it keeps trying",
            )
            status, _ = await asyncio.wait_for(readyz(http), 5)  # still serving meanwhile
            assert status == 503

            await asyncio.to_thread(mosquitto.start)
            await eventually(lambda: sample("xwatch_source_up") == 1, "reconnected")
            assert await readyz(http) == (200, {"ready": True, "reason": "ok"})
            await publish(mosquitto, ["after-1", "after-2"])
            await eventually(lambda: len(seen) >= 4, "the later posts ingested")
    finally:
        daemon.stop.set()
        await asyncio.wait_for(task, 10)
    assert sorted(seen) == ["after-1", "after-2", "before-1", "before-2"]


class HeldSleep:
    """The X source's backoff sleep: the first one waits for ``go`` (the test looks at
    the daemon while the source is down), the others pass at once (X's schedule is
    seconds to minutes; ``tests/test_source_x_stream.py`` checks it)."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.waiting = asyncio.Event()
        self.go = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.waiting.set()
        await self.go.wait()


@pytest.mark.asyncio
async def test_x_drops_503_429_and_garbage_are_surfaced_and_recovered_from(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XWATCH_X_BEARER_TOKEN", TOKEN)
    async with FakeX() as x:
        now = datetime.now(UTC)
        reset = str(int(now.timestamp()) + 60)
        x.script(Send(x.publish("kettlebird kettle one", now)), Drop())
        x.script(Status(503))
        x.script(Status(429, {"x-rate-limit-remaining": "0", "x-rate-limit-reset": reset}))
        x.script(Raw(b"garbage, not json\r\n"), Send(x.publish("kettlebird kettle two", now)))
        config = project / "x.yaml"
        config.write_text(
            "brands:\n  - id: kettlebird\n    name: Kettlebird\n    terms: [kettlebird]\n"
            f"sources:\n  - type: x_stream\n    base_url: {x.url}\n    backfill: false\n"
            "server:\n  host: 127.0.0.1\n  port: 0\n"
            "store:\n  enabled: false\n"
            "drain_timeout_seconds: 2\n",
            "utf-8",
        )
        daemon = Daemon(load_settings(config))
        (source,) = daemon.sources
        assert isinstance(source, XStreamSource)
        sleep = HeldSleep()
        source._sleep = sleep

        def sample(name: str, **labels: str) -> float:
            return daemon.registry.get_sample_value(name, {"source": "x", **labels}) or 0.0

        def processed() -> float:
            labels = {"brand": "kettlebird"}
            return daemon.registry.get_sample_value("xwatch_mentions_processed_total", labels) or 0

        task = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(daemon.serving.wait(), 10)
            async with aiohttp.ClientSession(daemon.web_url) as http:
                await asyncio.wait_for(sleep.waiting.wait(), 10)  # dropped: down, waiting
                await eventually(lambda: processed() == 1, "the first post")
                assert sample("xwatch_source_up") == 0
                assert sample("xwatch_source_problems_total", kind="network") == 1
                assert await readyz(http) == (503, {"ready": False, "reason": "not connected: x"})

                sleep.go.set()  # X is back, after a 503 and a 429
                await eventually(lambda: processed() == 2, "the post after the garbage")
                assert sample("xwatch_source_up") == 1
                assert await readyz(http) == (200, {"ready": True, "reason": "ok"})
            for kind in ("http_5xx", "http_429"):
                assert sample("xwatch_source_problems_total", kind=kind) == 1, kind
            assert sample("xwatch_mentions_rejected_total", reason="not_json") == 1
            assert sample("xwatch_source_reconnects_total") == 3
            assert sleep.delays[2] >= 50  # after the 429: until X's reset, a minute away
        finally:
            daemon.stop.set()
            await asyncio.wait_for(task, 10)


def journal_lines(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(path.read_bytes().count(b"\n") for path in folder.glob("*.jsonl"))


def marks_in(store: Path) -> dict[int, float]:
    if not store.exists():
        return {}
    with Store.open(store) as opened:
        return opened.journal_marks() or {}


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_sigkill_while_ingesting_loses_no_post_published_at_qos_1(
    project: Path, mosquitto: Mosquitto
) -> None:
    """``xwatch run`` takes posts from the broker at QoS 1 and checkpoints every 0.2 s; it
    is killed (SIGKILL) with posts taken since its last checkpoint and buckets open, and
    more are published while it is down. Started again, it counts every post exactly
    once at every time scale: those its last checkpoint had learned not again, the
    others (read back from its journal, or sent by the broker) once."""
    config = write_config(project, mosquitto)
    text = config.read_text("utf-8").replace(
        "store:\n  enabled: false\n",
        "store:\n  path: state.sqlite3\n  checkpoint_interval_seconds: 0.2\n",
    )
    config.write_text(text, "utf-8")
    store = project / "state.sqlite3"
    first = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "xwatch", "run", "-c", str(config)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert first.stderr is not None
    try:
        async with asyncio.timeout(20):  # its session exists once it has subscribed
            line = b"-"
            while line and b"source mqtt connected" not in line:
                line = await first.stderr.readline()
            assert line, "xwatch run ended before it connected"
        sent_before = await publish(mosquitto, [f"a{i}" for i in range(600)])
        journal = Path(f"{store}.journal")
        await eventually(lambda: journal_lines(journal) == 600, "600 posts journaled", 20)
        await eventually(lambda: bool(marks_in(store)), "a checkpoint with marks", 10)
    finally:
        first.kill()  # SIGKILL: no drain, no last checkpoint
        await first.wait()
    assert first.returncode == -signal.SIGKILL
    sent_while_down = await publish(mosquitto, [f"b{i}" for i in range(300)])

    marks = marks_in(store)
    settings = load_settings(config)
    scales = settings.config.detect.scales_seconds
    expected = {
        scale: 600 * (sent_before.timestamp() >= marks.get(scale, -math.inf))
        + 300 * (sent_while_down.timestamp() >= marks.get(scale, -math.inf))
        for scale in scales
    }
    assert expected[max(scales)] == 900  # the first bucket it left open holds them all
    second = Daemon(settings)
    closed: list[Bucket] = []
    close_until = second.pipeline.aggregator.close_until

    def spy(watermark: datetime) -> list[Bucket]:
        buckets = close_until(watermark)
        closed.extend(buckets)
        return buckets

    second.pipeline.aggregator.close_until = spy  # type: ignore[method-assign]

    def counted(scale: int) -> int:
        key = SeriesKey("kettlebird", "", scale)
        series = second.pipeline.aggregator.series[key]
        still_open = sum(bucket.count for bucket in series.open.values())
        return still_open + sum(b.count for b in closed if b.series == key)

    task = asyncio.create_task(second.run())
    try:
        await eventually(
            lambda: all(counted(scale) >= expected[scale] for scale in scales),
            "every post counted",
            20,
        )
    finally:
        second.stop.set()  # a graceful stop: the queue drains
        await asyncio.wait_for(task, 10)
    assert {scale: counted(scale) for scale in scales} == expected
