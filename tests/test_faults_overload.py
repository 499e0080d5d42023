"""Overload with real parts: producers faster than the pipeline.

The daemon runs in-process with a small queue (``queue_size``) and a slow pipeline:
its ``ingest`` holds the event loop a fixed time per mention (``time.sleep``, as a
heavy batch would), so the producers (separate HTTP clients; ``mosquitto_pub`` in its
own process) outrun it. What must hold: memory stays bounded (the queue never holds
more than ``queue_size``, the MQTT inbox never more than the in-flight window), the
pressure goes back to the producers (the webhook answers 503 with ``Retry-After``;
the broker keeps the QoS 1 messages it may not send yet), every refusal is counted,
and nothing is lost: every mention reaches the pipeline exactly once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import aiomqtt
import pytest

from tests.brokers import Mosquitto, started_mosquitto
from tests.factories import GatedSource
from tests.waiting import eventually
from xwatch.daemon import Daemon
from xwatch.model import AlertEvent, Mention
from xwatch.settings import load_settings
from xwatch.sources import mqtt
from xwatch.sources.webhook import sign

SECRET = "s3cret"
QUEUE_SIZE = 10
# What the daemon holds at most: the queue, and what the consumer took from it before
# it waited once for more (``BATCH_WAIT_SECONDS``), as much again.
HELD_AT_MOST = 2 * QUEUE_SIZE


class SlowIngest:
    """Wraps a daemon's ``pipeline.ingest``: blocks ``seconds_per_mention`` per mention,
    remembers every id it was given and the most mentions the daemon held at once."""

    def __init__(
        self, daemon: Daemon, seconds_per_mention: float, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.daemon = daemon
        self.ingest = daemon.pipeline.ingest
        self.per_mention = seconds_per_mention
        self.ids: list[str] = []
        self.most_held = 0  # the batch being ingested plus what still waits in the queue
        monkeypatch.setattr(daemon.pipeline, "ingest", self)

    def __call__(self, batch: Sequence[Mention]) -> list[AlertEvent]:
        self.most_held = max(self.most_held, len(batch) + self.daemon.queue.qsize())
        self.ids.extend(m.id for m in batch)
        time.sleep(self.per_mention * len(batch))
        return self.ingest(batch)


def write_config(project: Path, sources: str) -> Path:
    config = project / "overload.yaml"
    config.write_text(
        "brands:\n"
        "  - id: kettlebird\n"
        "    name: Kettlebird\n"
        '    terms: ["kettlebird"]\n'
        f"sources:\n{sources}"
        "server:\n"
        "  host: 127.0.0.1\n"
        "  port: 0\n"
        "store:\n"
        "  enabled: false\n"
        f"queue_size: {QUEUE_SIZE}\n"
        "drain_timeout_seconds: 5\n",
        "utf-8",
    )
    return config


def post(i: int) -> dict[str, str]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {"id": f"p{i}", "text": f"kettlebird post {i}", "created_at": now}


def sample(daemon: Daemon, name: str, labels: dict[str, str]) -> float:
    value = daemon.registry.get_sample_value(name, labels)
    return value if value is not None else 0.0


@pytest.mark.asyncio
async def test_the_webhook_pushes_back_with_503_and_retry_after_and_loses_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XWATCH_WEBHOOK_SECRET", SECRET)
    config = write_config(project, "  - type: webhook\n")
    held = GatedSource([])  # keeps the daemon running after the webhook's posts
    daemon = Daemon(load_settings(config), sources=[held])
    slow = SlowIngest(daemon, 0.004, monkeypatch)
    senders, batches, per_batch = 4, 3, 5
    refusals: list[str | None] = []  # the Retry-After header of each 503

    async def sender(http: aiohttp.ClientSession, first: int) -> None:
        for b in range(batches):
            start = first + b * per_batch
            body = "\n".join(json.dumps(post(i)) for i in range(start, start + per_batch))
            while True:
                now = int(time.time())
                headers = {
                    "X-Xwatch-Timestamp": str(now),
                    "X-Xwatch-Signature": sign(SECRET.encode(), now, body.encode()),
                }
                async with http.post("/ingest", data=body, headers=headers) as response:
                    if response.status == 202:
                        break
                    assert response.status == 503, await response.text()
                    retry_after = response.headers.get("Retry-After")
                    refusals.append(retry_after)
                await asyncio.sleep(float(retry_after or 1))  # as a polite client does

    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.serving.wait(), 10)
        async with aiohttp.ClientSession(daemon.web_url) as http:
            await asyncio.wait_for(
                asyncio.gather(*(sender(http, s * 1000) for s in range(senders))), 40
            )
        await asyncio.wait_for(daemon.queue.join(), 10)
    finally:
        daemon.stop.set()
        held.finish.set()
        await asyncio.wait_for(task, 10)

    sent = [f"p{s * 1000 + i}" for s in range(senders) for i in range(batches * per_batch)]
    assert sorted(slow.ids) == sorted(sent)  # every one, exactly once
    assert refusals, "the producers never outran the pipeline: the test proves nothing"
    assert all(r is not None and int(r) >= 1 for r in refusals)
    problems = {"source": "webhook", "kind": "queue_full"}
    assert sample(daemon, "xwatch_source_problems_total", problems) == len(refusals)
    assert sample(daemon, "xwatch_mentions_received_total", {"source": "webhook"}) == len(sent)
    assert slow.most_held <= HELD_AT_MOST


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    with started_mosquitto(tmp_path, "the MQTT overload test") as broker:
        yield broker


@pytest.mark.asyncio
async def test_a_slow_pipeline_makes_the_broker_hold_qos1_messages_and_none_is_lost(
    project: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    most_in_inbox = 0
    put_nowait = mqtt._Inbox.put_nowait

    def counting_put(inbox: mqtt._Inbox, item: object) -> None:
        nonlocal most_in_inbox
        put_nowait(inbox, item)  # type: ignore[arg-type]
        most_in_inbox = max(most_in_inbox, inbox.qsize())

    monkeypatch.setattr(mqtt._Inbox, "put_nowait", counting_put)
    config = write_config(
        project,
        "  - type: mqtt\n"
        "    host: 127.0.0.1\n"
        f"    port: {mosquitto.port}\n"
        "    client_id: xwatch-overload\n"
        "    qos: 1\n",
    )
    daemon = Daemon(load_settings(config))
    slow = SlowIngest(daemon, 0.002, monkeypatch)
    count = 600
    task = asyncio.create_task(daemon.run())
    try:
        await eventually(lambda: bool(daemon.report.up.get("mqtt")), "subscribed")
        lines = "".join(json.dumps(post(i)) + "\n" for i in range(count))
        publisher = await asyncio.create_subprocess_exec(
            "mosquitto_pub",
            *("-h", mosquitto.host, "-p", str(mosquitto.port), "-q", "1"),
            *("-t", "xwatch/mentions/kettlebird", "-l"),
            stdin=asyncio.subprocess.PIPE,
        )
        await asyncio.wait_for(publisher.communicate(lines.encode()), 20)
        assert publisher.returncode == 0
        taken_when_published = len(slow.ids)
        await eventually(lambda: len(slow.ids) >= count, "every post ingested", 20)
    finally:
        daemon.stop.set()
        await asyncio.wait_for(task, 10)

    assert sorted(slow.ids) == sorted(f"p{i}" for i in range(count))  # none lost, none twice
    # the publisher was done long before the pipeline: the backlog waited in the broker,
    # not here (at most the in-flight window in the inbox, the queue in the daemon)
    assert taken_when_published < count - mqtt.RECEIVE_MAXIMUM - QUEUE_SIZE
    # the in-flight window we announce: mosquitto 2.0.11 overruns it when acks come in
    # bursts, and the source then stops reading until there is room again
    assert most_in_inbox <= mqtt.RECEIVE_MAXIMUM
    assert slow.most_held <= HELD_AT_MOST
    assert sample(daemon, "xwatch_mentions_received_total", {"source": "mqtt"}) == count


def test_the_inbox_asks_to_stop_reading_while_a_window_waits() -> None:
    def message(qos: int) -> aiomqtt.Message:
        return aiomqtt.Message("t", b"", qos=qos, retain=False, mid=0, properties=None)

    calls: list[str] = []
    inbox = mqtt._Inbox(maxsize=mqtt.QOS0_QUEUE_LIMIT)
    inbox.on_full, inbox.on_room = lambda: calls.append("full"), lambda: calls.append("room")
    inbox.hold_back()  # subscribed: from now on a full window stops the reading
    for i in range(mqtt.RECEIVE_MAXIMUM):
        inbox.put_nowait(message(i % 2))
    assert calls == ["full"]
    while inbox.qsize() > mqtt.RECEIVE_MAXIMUM // 2 + 1:
        inbox.get_nowait()
    assert calls == ["full"]
    inbox.get_nowait()  # half of the window is free again
    assert calls == ["full", "room"]


def test_before_the_subscription_is_acknowledged_a_full_window_stops_nothing() -> None:
    """A session's queued messages come before the SUBACK: reading must go on to it."""

    def message() -> aiomqtt.Message:
        return aiomqtt.Message("t", b"", qos=1, retain=False, mid=0, properties=None)

    calls: list[str] = []
    inbox = mqtt._Inbox(maxsize=mqtt.QOS0_QUEUE_LIMIT)
    inbox.on_full = lambda: calls.append("full")
    for _ in range(mqtt.RECEIVE_MAXIMUM):
        inbox.put_nowait(message())
    assert inbox.has_room() and calls == []
    inbox.hold_back()  # the SUBACK came: the window waiting now stops the reading
    assert not inbox.has_room() and calls == ["full"]
