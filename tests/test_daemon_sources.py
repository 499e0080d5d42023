"""The daemon with its live sources, end to end against real protocol peers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from tests.brokers import Mosquitto, started_mosquitto
from tests.fake_x import TOKEN, FakeX, KeepAlive, Pause, Send
from xwatch.daemon import Daemon
from xwatch.detect.volume import CountDetector
from xwatch.model import Measure, SeriesKey
from xwatch.settings import load_settings
from xwatch.sources import WarmStart
from xwatch.sources.webhook import sign
from xwatch.sources.x_stream import SEARCH_PATH
from xwatch.store import Store


def write_config(project: Path, sources_yaml: str) -> Path:
    config = project / "config.yaml"
    text = config.read_text("utf-8").replace("port: 9464", "port: 0")
    text = text.replace(
        "  - type: demo\n    speed: 30000        # a week in about 20 seconds", sources_yaml
    )
    config.write_text(text, "utf-8")
    return config


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    with started_mosquitto(tmp_path, "the daemon's MQTT test") as broker:
        yield broker


def metric(text: str, name: str, labels: str = "") -> float | None:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


@pytest.mark.timeout(60)
def test_xwatch_run_ingests_what_mosquitto_pub_publishes(
    project: Path, mosquitto: Mosquitto
) -> None:
    config = write_config(
        project,
        (
            f"  - type: mqtt\n    host: 127.0.0.1\n    port: {mosquitto.port}\n"
            f"    client_id: xwatch-e2e-{os.getpid()}"
        ),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "xwatch", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stderr is not None
        url = ""
        for line in process.stderr:
            if found := re.search(r"serving (http://\S+)/metrics", line):
                url = found.group(1)
            if "source mqtt connected" in line:
                break
        assert url, "the daemon did not say where it serves"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        posts = [
            json.dumps({"id": f"e2e-{i}", "text": "my kettle smokes", "created_at": now})
            for i in range(3)
        ]
        for payload in [*posts, "{not json"]:  # Mosquitto's own client, QoS 1
            subprocess.run(
                [
                    "mosquitto_pub",
                    "-p",
                    str(mosquitto.port),
                    "-q",
                    "1",
                    "-t",
                    "xwatch/mentions/kettlebird",
                    "-m",
                    payload,
                ],
                check=True,
            )
        deadline = time.monotonic() + 20
        text = ""
        while time.monotonic() < deadline:
            text = _get(f"{url}/metrics")
            if metric(text, "xwatch_mentions_processed_total", '{brand="kettlebird"}') == 3:
                break
            time.sleep(0.1)  # polling a separate process; there is no event to wait on
        assert metric(text, "xwatch_mentions_processed_total", '{brand="kettlebird"}') == 3
        assert (
            metric(text, "xwatch_mentions_rejected_total", '{reason="not_json",source="mqtt"}') == 1
        )
        assert metric(text, "xwatch_source_up", '{source="mqtt"}') == 1
        assert json.loads(_get(f"{url}/readyz"))["ready"] is True
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err


@contextlib.asynccontextmanager
async def running(daemon: Daemon) -> AsyncIterator[Daemon]:
    """The daemon running until the block ends, then stopped gracefully (drain, last
    checkpoint)."""
    task = asyncio.create_task(daemon.run())
    try:
        yield daemon
    finally:
        daemon.stop.set()
        await asyncio.wait_for(task, 10)


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


def processed(daemon: Daemon) -> float:
    value = daemon.registry.get_sample_value(
        "xwatch_mentions_processed_total", {"brand": "kettlebird"}
    )
    return value or 0.0


async def until_processed(daemon: Daemon, count: int) -> None:
    """Wait (at most 15 s) until the daemon has processed ``count`` posts about kettlebird."""
    async with asyncio.timeout(15):
        while processed(daemon) < count:  # noqa: ASYNC110 - a counter another task moves
            await asyncio.sleep(0.05)


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body.decode()


@pytest.mark.asyncio
async def test_the_webhook_ingests_signed_batches_and_refuses_forged_ones(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XWATCH_WEBHOOK_SECRET", "s3cret")
    settings = load_settings(write_config(project, "  - type: webhook"))
    daemon = Daemon(settings)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.serving.wait(), 10)
        now = int(time.time())
        body = "\n".join(
            json.dumps(
                {
                    "id": f"w{i}",
                    "text": "kettlebird <!channel>",
                    "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            )
            for i in range(5)
        )
        async with aiohttp.ClientSession() as http:
            forged = {"X-Xwatch-Timestamp": str(now), "X-Xwatch-Signature": "sha256=" + "0" * 64}
            async with http.post(f"{daemon.web_url}/ingest", data=body, headers=forged) as r:
                assert r.status == 401
            signed = {
                "X-Xwatch-Timestamp": str(now),
                "X-Xwatch-Signature": sign(b"s3cret", now, body.encode()),
            }
            async with http.post(f"{daemon.web_url}/ingest", data=body, headers=signed) as r:
                assert r.status == 202
                assert (await r.json())["accepted"] == 5
        await asyncio.wait_for(daemon.queue.join(), 10)
        processed = daemon.registry.get_sample_value(
            "xwatch_mentions_processed_total", {"brand": "kettlebird"}
        )
        assert processed == 5
    finally:
        daemon.stop.set()
        await asyncio.wait_for(task, 10)


@pytest.mark.asyncio
async def test_the_x_stream_feeds_the_daemon(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XWATCH_X_BEARER_TOKEN", TOKEN)
    async with FakeX() as x:
        settings = load_settings(
            write_config(project, f"  - type: x_stream\n    base_url: {x.url}\n    backfill: false")
        )
        now = datetime.now(UTC)
        x.script(*[Send(x.publish(f"Kettlebird kettle number {i}", now)) for i in range(4)])
        daemon = Daemon(settings)
        task = asyncio.create_task(daemon.run())
        try:
            await until_processed(daemon, 4)
            assert daemon.registry.get_sample_value("xwatch_source_up", {"source": "x"}) == 1
            rules = x.rules.values()
            assert [r.tag for r in rules] == ["kettlebird"]  # synced from the brand's terms
        finally:
            daemon.stop.set()
            await asyncio.wait_for(task, 10)


@pytest.mark.asyncio
async def test_a_restart_fetches_from_x_what_was_posted_while_xwatch_was_down(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each checkpoint saves the newest X post the pipeline has ingested (the last one at a
    graceful stop); the next start asks recent search for the posts after it, so a
    restart is no hole in the data, and nothing ingested before is fetched again."""
    monkeypatch.setenv("XWATCH_X_BEARER_TOKEN", TOKEN)
    async with FakeX() as x:
        config = write_config(project, f"  - type: x_stream\n    base_url: {x.url}")
        text = config.read_text("utf-8")
        assert "store:\n  enabled: false" in text
        config.write_text(text.replace("store:\n  enabled: false", "store:\n  enabled: true"))
        settings = load_settings(config)
        now = datetime.now(UTC)
        before = [x.publish(f"Kettlebird kettle {i}", now - timedelta(minutes=9)) for i in range(3)]
        x.script(*[Send(post) for post in before])
        async with running(Daemon(settings)) as first:
            await until_processed(first, 3)
        store_path = project / "xwatch.sqlite3"
        with Store.open(store_path) as store:
            assert [(k, p.post_id) for k, p in store.source_positions().items()] == [
                ("x", before[-1].id)  # the newest ingested
            ]

        # while xwatch is down, people go on posting
        down = [
            x.publish(f"Kettlebird, down {i}", now - timedelta(minutes=5 - i)) for i in range(3)
        ]
        x.script(KeepAlive(), KeepAlive())
        async with running(Daemon(load_settings(config))) as second:
            await until_processed(second, 3)
        # the posts made while down, and the three of the buckets the stop left open
        # (from the journal), each once: none of those is fetched again
        assert processed(second) == 6
        duplicates = {"source": "x"}
        assert second.registry.get_sample_value("xwatch_mentions_duplicate_total", duplicates) == 0
        searches = [r.query for r in x.requests_to(SEARCH_PATH)]
        assert searches[0]["since_id"] == before[-1].id
        with Store.open(store_path) as store:
            assert store.source_positions()["x"].post_id == down[-1].id


@pytest.mark.asyncio
async def test_after_a_crash_x_s_posts_since_the_last_checkpoint_come_again_and_alert_once(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between checkpoints, the daemon restarts from the last one: the posts it
    had ingested since are fetched again (their learning was lost with the process), and
    a mention rule that fired on one of them updates the restored alert: no new
    incident, no second notice."""
    monkeypatch.setenv("XWATCH_X_BEARER_TOKEN", TOKEN)
    async with FakeX() as x:
        config = write_config(project, f"  - type: x_stream\n    base_url: {x.url}")
        text = config.read_text("utf-8").replace(
            "store:\n  enabled: false", "store:\n  enabled: true"
        )
        config.write_text(text)
        now = datetime.now(UTC)
        before = [x.publish(f"Kettlebird kettle {i}", now - timedelta(minutes=5)) for i in range(3)]
        hacked = x.publish("the kettlebird account was hacked!!", now - timedelta(minutes=4))
        after = x.publish("Kettlebird kettle, later", now - timedelta(minutes=3))
        x.script(*[Send(post) for post in before], Pause(0.5), Send(hacked), Send(after))
        first = Daemon(load_settings(config))
        task = asyncio.create_task(first.run())
        try:
            await until_processed(first, 3)
            await first._checkpoint()  # the periodic one: it has seen the first three
            await until_processed(first, 5)
            await first.settled()
        finally:
            task.cancel()  # a crash: no drain, no last checkpoint
            with contextlib.suppress(asyncio.CancelledError):
                await task
        store_path = project / "xwatch.sqlite3"
        notices = "SELECT incident_id, kind FROM outbox ORDER BY seq"
        sent = rows(store_path, notices)
        assert [kind for _, kind in sent] == ["opened"]  # the takeover report's

        async with running(Daemon(load_settings(config))) as second:
            await until_processed(second, 2)
            await second.settled()
        # the journal gives back the five: three were in buckets still open at the
        # checkpoint, two came after it; X's search gives the two again: duplicates
        assert processed(second) == 5
        duplicates = {"source": "x"}
        assert second.registry.get_sample_value("xwatch_mentions_duplicate_total", duplicates) == 2
        assert x.requests_to(SEARCH_PATH)[0].query["since_id"] == before[-1].id
        assert rows(store_path, notices) == sent  # no new incident, no second notice


@pytest.mark.asyncio
async def test_the_x_stream_warm_starts_the_brands_volume_from_x_s_counts(
    project: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``warm_start``, the brand's volume has learned X's counts of the last week
    before the stream's first post: it is judged from the first bucket, not after a day."""
    monkeypatch.setenv("XWATCH_X_BEARER_TOKEN", TOKEN)
    caplog.set_level(logging.INFO, logger="xwatch")
    async with FakeX() as x:
        now = datetime.now(UTC)
        for i in range(1, 7 * 144):  # a post every 10 minutes, the last week
            x.publish("kettlebird is fine", now - timedelta(minutes=10 * i))
        settings = load_settings(
            write_config(
                project,
                f"  - type: x_stream\n    base_url: {x.url}\n    backfill: false\n"
                "    warm_start: true",
            )
        )
        x.script(*[Send(x.publish(f"Kettlebird kettle number {i}", now)) for i in range(2)])
        daemon = Daemon(settings)
        task = asyncio.create_task(daemon.run())
        try:
            await until_processed(daemon, 2)
            volume = daemon.pipeline.detectors[SeriesKey("kettlebird", "", 300)][0]
            assert isinstance(volume, CountDetector) and volume.measure is Measure.VOLUME
            assert volume.learned >= 7 * 288 - 4  # the week's 5-minute buckets (7 d - 5 min)
            assert not volume._warming_up(now.timestamp())
            said = "\n".join(r.getMessage() for r in caplog.records)
            assert "source x: warm start from its counts: 3 series of 1 brands" in said
            (source,) = daemon.sources
            assert isinstance(source, WarmStart)
            assert source.warm_counts == {}  # taught, then let go (1.1 MB a brand)
        finally:
            daemon.stop.set()
            await asyncio.wait_for(task, 10)
