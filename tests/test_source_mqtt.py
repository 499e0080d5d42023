"""The MQTT source against a real mosquitto: delivery, restarts, sessions, sharing, backoff.

Each test starts its own mosquitto on a free port (see ``tests/brokers.py``) and publishes
with a plain aiomqtt client at QoS 1. Waits are bounded by ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import pytest_asyncio

from tests.brokers import (
    HOST,
    ExternalBroker,
    Mosquitto,
    accepts_connections,
    no_binary,
    password_line,
)
from tests.factories import RecordingReport
from tests.ports import free_port
from xwatch.config import MqttSourceConfig
from xwatch.model import Mention
from xwatch.sources import paho_bulk, paho_tables
from xwatch.sources.mqtt import QOS0_QUEUE_LIMIT, RECEIVE_MAXIMUM, MqttSource, _Inbox

Broker = Mosquitto | ExternalBroker
WAIT_SECONDS = 20.0


# --- a broker, a report, a consumer ----------------------------------------------------


def _mosquitto(folder: Path, *, started: bool) -> Iterator[Broker]:
    binary = Mosquitto.find()
    if binary is None:
        if accepts_connections(HOST, 1883):
            yield ExternalBroker()
            return
        no_binary("every test")  # fails
    broker = Mosquitto(binary, folder)
    if started:
        broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A running broker."""
    yield from _mosquitto(tmp_path, started=True)


@pytest.fixture
def stopped_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker on a known port, not started yet."""
    yield from _mosquitto(tmp_path, started=False)


@pytest.fixture
def configured_broker(tmp_path: Path) -> Iterator[Callable[[list[str]], Mosquitto]]:
    """Start our own mosquitto with extra config lines (an external one cannot do that)."""
    started: list[Mosquitto] = []

    def start(extra: list[str]) -> Mosquitto:
        binary = Mosquitto.find() or no_binary("a broker with its own configuration")
        started.append(Mosquitto(binary, tmp_path, extra=extra))
        started[-1].start()
        return started[-1]

    yield start
    for broker in started:
        broker.stop()


class Consumer:
    """Runs a source as the daemon does; ``gate`` cleared holds the mention just taken."""

    def __init__(self, source: MqttSource) -> None:
        self.source = source
        self.mentions: list[Mention] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async with self.source:
            async for mention in self.source:
                self.mentions.append(mention)
                await self.gate.wait()

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.mentions]

    async def stop(self) -> None:
        """Stop iterating and leave ``async with`` (which disconnects)."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest_asyncio.fixture
async def run() -> AsyncIterator[Callable[[MqttSource], Consumer]]:
    consumers: list[Consumer] = []

    def start(source: MqttSource) -> Consumer:
        consumers.append(Consumer(source))
        return consumers[-1]

    yield start
    for consumer in consumers:
        await consumer.stop()


async def until(predicate: Callable[[], bool], *consumers: Consumer) -> None:
    """Poll until ``predicate()``; the caller's ``asyncio.timeout`` bounds the wait."""
    while not predicate():
        for consumer in consumers:
            if consumer.task.done():
                await consumer.task  # raises what ended it
                pytest.fail("the source ended")
        await asyncio.sleep(0.01)


def has_taken(consumer: Consumer, count: int) -> bool:
    return len(consumer.mentions) == count


def unique() -> str:
    return uuid.uuid4().hex[:10]


def config(broker: Broker, root: str, **overrides: Any) -> MqttSourceConfig:
    fields: dict[str, Any] = {
        "type": "mqtt",
        "name": "mqtt-test",
        "host": broker.host,
        "port": broker.port,
        "topics": (f"{root}/xwatch/mentions/#",),
        "client_id": f"xwatch-{root}",
        "reconnect_min_seconds": 0.05,
        "reconnect_max_seconds": 0.4,
        "session_expiry_seconds": 300,  # long enough for a test, short on a shared broker
    }
    return MqttSourceConfig.model_validate(fields | overrides)


def post(id: str, **extra: Any) -> bytes:
    return json.dumps(
        {"id": id, "text": f"kettlebird post {id}", "created_at": "2026-11-16T09:00:00Z"} | extra
    ).encode()


async def publish(
    broker: Broker, messages: Iterable[tuple[str, bytes]], **client_options: Any
) -> None:
    async with aiomqtt.Client(broker.host, broker.port, **client_options) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


class MaxJitter(random.Random):
    """Always the top of the jitter range: the delays are the backoff ceilings."""

    def uniform(self, a: float, b: float) -> float:
        return b


# --- the tests -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_mentions_arrive_with_brands_from_the_topic_and_bad_payloads_are_skipped(
    broker: Broker, run: Callable[[MqttSource], Consumer]
) -> None:
    root = unique()
    topic = f"{root}/xwatch/mentions"
    report = RecordingReport()
    x_payload = {
        "data": [
            {"id": "3", "text": "@initech hi", "created_at": "2026-11-16T09:00:01Z"},
            {"id": "4", "text": "@initech again", "created_at": "2026-11-16T09:00:02Z"},
        ]
    }
    async with asyncio.timeout(WAIT_SECONDS):
        consumer = run(MqttSource(config(broker, root), report))
        await until(lambda: report.up, consumer)
        await publish(
            broker,
            [
                (f"{topic}/acme", post("1")),
                (f"{topic}/acme", b"{not json"),
                (f"{topic}/acme", post("2", brands=["globex"])),
                (f"{topic}/acme", b"\xff\xfe garbage"),
                (f"{topic}/acme", b""),
                (f"{topic}/initech", json.dumps(x_payload).encode()),
                (f"{topic}/acme", post("5")),
            ],
        )
        await until(lambda: len(consumer.mentions) >= 5, consumer)
    assert consumer.ids == ["1", "2", "3", "4", "5"]
    assert [m.brands for m in consumer.mentions] == [
        ("acme",),
        ("globex",),  # the payload's own brands win over the topic
        ("initech",),
        ("initech",),
        ("acme",),
    ]
    assert {m.source for m in consumer.mentions} == {"mqtt-test"}
    assert [reason for reason, _ in report.rejections] == ["not_json", "invalid_utf8", "empty"]
    assert all(detail.startswith(f"{topic}/acme: ") for _, detail in report.rejections)
    assert report.received_count == 5
    assert report.ups == [True] and report.reconnects == []


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_retained_message_is_skipped_not_taken_as_a_new_post(
    broker: Broker, run: Callable[[MqttSource], Consumer], protocol: str
) -> None:
    """A retained message is a topic's last post, sent because of a subscription (under
    3.1.1 at every connection), however old: as a daemon's first post it started every
    series days back (a false volume drop at each restart)."""
    root = unique()
    topic = f"{root}/xwatch/mentions/acme"
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.publish(
            topic, post("old", created_at="2026-11-14T09:00:00Z"), qos=1, retain=True
        )
    report = RecordingReport()
    async with asyncio.timeout(WAIT_SECONDS):
        consumer = run(MqttSource(config(broker, root, protocol=protocol), report))
        await until(lambda: report.up, consumer)
        await publish(broker, [(topic, post("new"))])
        await until(lambda: len(consumer.mentions) >= 1, consumer)
    assert consumer.ids == ["new"]
    assert report.kinds() == ["retained"]
    async with aiomqtt.Client(broker.host, broker.port) as client:  # clear it from the broker
        await client.publish(topic, b"", qos=1, retain=True)


@pytest.mark.asyncio
async def test_an_mqtt5_source_has_paho_decode_properties_with_shared_tables(
    broker: Broker, run: Callable[[MqttSource], Consumer]
) -> None:
    paho_tables.uninstall()  # as a process starts (other tests' sources installed them)
    root = unique()
    report = RecordingReport()
    async with asyncio.timeout(WAIT_SECONDS):
        consumer = run(MqttSource(config(broker, root), report))
        await until(lambda: report.up, consumer)
        assert paho_tables.installed()
        await publish(broker, [(f"{root}/xwatch/mentions/acme", post("1"))])
        await until(lambda: len(consumer.mentions) >= 1, consumer)
    assert consumer.ids == ["1"]


@pytest.mark.asyncio
async def test_a_broker_restart_mid_stream_loses_nothing(
    broker: Broker, run: Callable[[MqttSource], Consumer]
) -> None:
    if isinstance(broker, ExternalBroker):
        no_binary("a broker restart")
    root = unique()
    topic = f"{root}/xwatch/mentions/acme"
    before = [f"a{i}" for i in range(30)]
    after = [f"b{i}" for i in range(30)]
    report = RecordingReport()
    async with asyncio.timeout(WAIT_SECONDS):
        consumer = run(MqttSource(config(broker, root), report, rng=MaxJitter()))
        consumer.gate.clear()  # takes one mention and holds it: the rest waits in memory
        await until(lambda: report.up, consumer)
        await publish(broker, [(topic, post(i)) for i in before])
        await until(lambda: len(consumer.mentions) == 1, consumer)

        broker.stop()
        consumer.gate.set()
        await until(lambda: not report.up and len(report.reconnects) >= 2, consumer)
        broker.start()
        await until(lambda: report.up, consumer)
        await publish(broker, [(topic, post(i)) for i in after])
        await until(lambda: set(consumer.ids) >= {*before, *after}, consumer)

    assert set(consumer.ids) == {*before, *after}
    # The mention held when the broker went away had not been acknowledged: sent again.
    assert consumer.ids.count("a0") == 2
    assert report.ups == [True, False, True]
    delays = [delay for delay, _ in report.reconnects]
    assert delays == [min(0.4, 0.05 * 2**n) for n in range(len(delays))]  # while it is down
    assert all(why for _, why in report.reconnects)


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_mentions_published_while_stopped_arrive_after_a_start(
    broker: Broker, run: Callable[[MqttSource], Consumer], protocol: str
) -> None:
    """More than the window (``RECEIVE_MAXIMUM``) waits for the session: the broker sends a
    window's worth before the subscription's acknowledgement, and holding back on a full
    inbox then held that acknowledgement back too (the source timed out subscribing, and
    reconnected every 10 s for ever)."""
    root = unique()
    topic = f"{root}/xwatch/mentions/acme"
    ids = [str(i) for i in range(RECEIVE_MAXIMUM * 5 // 2)]
    first, second = RecordingReport(), RecordingReport()
    async with asyncio.timeout(WAIT_SECONDS):
        consumer = run(MqttSource(config(broker, root, protocol=protocol), first))
        await until(lambda: first.up, consumer)  # the session exists now
        await consumer.stop()
        assert first.ups == [True, False]

        await publish(broker, [(topic, post(i)) for i in ids])
        consumer = run(MqttSource(config(broker, root, protocol=protocol), second))
        await until(lambda: set(consumer.ids) >= set(ids), consumer)
    assert consumer.ids == ids


@pytest.mark.asyncio
async def test_mentions_not_yet_taken_when_the_source_stops_are_sent_again(
    broker: Broker, run: Callable[[MqttSource], Consumer]
) -> None:
    """QoS 1 messages are acknowledged only once the consumer has taken their mentions."""
    root = unique()
    topic = f"{root}/xwatch/mentions/acme"
    ids = [str(i) for i in range(20)]
    report = RecordingReport()
    async with asyncio.timeout(WAIT_SECONDS):
        consumer = run(MqttSource(config(broker, root), report))
        consumer.gate.clear()
        await until(lambda: report.up, consumer)
        await publish(broker, [(topic, post(i)) for i in ids])
        await until(lambda: len(consumer.mentions) == 1, consumer)
        await consumer.stop()  # 1 held by the consumer, the others received or queued

        consumer = run(MqttSource(config(broker, root), RecordingReport()))
        await until(lambda: set(consumer.ids) >= set(ids), consumer)
    assert consumer.ids == ids  # "0" again too: it was never acknowledged


@pytest.mark.asyncio
async def test_acks_gathered_when_the_source_stops_go_out_before_it_disconnects(
    broker: Broker, run: Callable[[MqttSource], Consumer]
) -> None:
    """Acks are written in batches (``paho_bulk``): those of the messages taken since the
    last batch are written when the source stops, so none of them comes back."""
    root = unique()
    topic = f"{root}/xwatch/mentions/acme"
    ids = [str(i) for i in range(60)]
    report = RecordingReport()
    installed: list[bool] = []
    install = paho_bulk.install

    def spy(client: aiomqtt.Client, has_room: Callable[[], bool]) -> bool:
        installed.append(install(client, has_room))
        return installed[-1]

    async with asyncio.timeout(WAIT_SECONDS):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(paho_bulk, "install", spy)
            consumer = run(MqttSource(config(broker, root), report))
            consumer.gate.clear()
            await until(lambda: report.up, consumer)
        assert installed == [True]
        await publish(broker, [(topic, post(i)) for i in ids])
        for taken in range(1, 31):  # let the consumer take 30, one at a time
            await until(functools.partial(has_taken, consumer, taken), consumer)
            if taken < 30:
                consumer.gate.set()
                consumer.gate.clear()
        assert paho_bulk.ACKS_PER_WRITE < 29
        await consumer.stop()  # 29 acknowledged (the last 4 not yet written), 1 held

        consumer = run(MqttSource(config(broker, root), RecordingReport()))
        await until(lambda: set(consumer.ids) >= set(ids[29:]), consumer)
    assert consumer.ids == ids[29:]


@pytest.mark.asyncio
async def test_a_shared_group_splits_the_messages(
    broker: Broker, run: Callable[[MqttSource], Consumer]
) -> None:
    root = unique()
    topic = f"{root}/xwatch/mentions/acme"
    ids = [str(i) for i in range(40)]
    reports = RecordingReport(), RecordingReport()
    async with asyncio.timeout(WAIT_SECONDS):
        consumers = [
            run(
                MqttSource(
                    config(broker, root, client_id=f"xwatch-{root}-{n}", shared_group="g"),
                    report,
                )
            )
            for n, report in enumerate(reports)
        ]
        await until(lambda: all(r.up for r in reports), *consumers)
        await publish(broker, [(topic, post(i)) for i in ids])
        await until(lambda: len({*consumers[0].ids, *consumers[1].ids}) == len(ids), *consumers)
        for consumer in consumers:
            await consumer.stop()
    first, second = consumers[0].ids, consumers[1].ids
    assert first and second
    assert sorted(first + second, key=int) == ids  # all of them, none twice
    assert all(m.brands == ("acme",) for c in consumers for m in c.mentions)


def _recording_sleep(
    delays: list[float], *, stop_after: int, on: Callable[[int], None] = lambda n: None
) -> tuple[Callable[[float], Awaitable[None]], asyncio.Event]:
    """A ``sleep`` that records the delays, returns at once and parks after ``stop_after``."""
    enough = asyncio.Event()

    async def sleep(delay: float) -> None:
        delays.append(delay)
        on(len(delays))
        if len(delays) >= stop_after:
            enough.set()
            await asyncio.Event().wait()  # until cancelled
        await asyncio.sleep(0)

    return sleep, enough


async def _backoff_delays(rng: random.Random, attempts: int) -> tuple[list[float], RecordingReport]:
    port = free_port()  # nothing listens there: every connection is refused
    source_config = MqttSourceConfig(
        type="mqtt",
        port=port,
        client_id=f"xwatch-{unique()}",
        reconnect_min_seconds=0.5,
        reconnect_max_seconds=8.0,
    )
    delays: list[float] = []
    sleep, enough = _recording_sleep(delays, stop_after=attempts)
    report = RecordingReport()
    consumer = Consumer(MqttSource(source_config, report, sleep=sleep, rng=rng))
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            await enough.wait()
    finally:
        await consumer.stop()
    return delays, report


@pytest.mark.asyncio
async def test_backoff_grows_is_capped_and_jittered_while_the_broker_is_down() -> None:
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0]

    top, report = await _backoff_delays(MaxJitter(), len(ceilings))
    assert top == ceilings  # exponential from reconnect_min, capped at reconnect_max
    assert report.ups == [False]  # down once, not once per attempt
    assert [delay for delay, _ in report.reconnects] == top
    assert all("refused" in why.lower() for _, why in report.reconnects)

    jittered, _ = await _backoff_delays(random.Random(7), len(ceilings))
    assert all(0.0 <= d <= c for d, c in zip(jittered, ceilings, strict=True))  # full jitter
    assert jittered != ceilings and len(set(jittered)) == len(jittered)
    again, _ = await _backoff_delays(random.Random(7), len(ceilings))
    assert again == jittered  # the injected rng decides


@pytest.mark.asyncio
async def test_backoff_resets_after_a_successful_connection(
    stopped_broker: Broker, run: Callable[[MqttSource], Consumer]
) -> None:
    if isinstance(stopped_broker, ExternalBroker):
        no_binary("starting the broker on a chosen port")
    delays: list[float] = []

    def start_broker_after_three(attempts: int) -> None:
        if attempts == 3:
            stopped_broker.start()

    sleep, enough = _recording_sleep(delays, stop_after=6, on=start_broker_after_three)
    source_config = config(
        stopped_broker, unique(), reconnect_min_seconds=0.5, reconnect_max_seconds=8.0
    )
    report = RecordingReport()
    async with asyncio.timeout(WAIT_SECONDS):
        consumer = run(MqttSource(source_config, report, sleep=sleep, rng=MaxJitter()))
        await until(lambda: report.up, consumer)
        stopped_broker.stop()
        await enough.wait()
    assert delays == [0.5, 1.0, 2.0, 0.5, 1.0, 2.0]
    assert report.ups == [False, True, False]


@pytest.mark.asyncio
async def test_credentials_come_from_the_environment(
    configured_broker: Callable[[list[str]], Mosquitto],
    tmp_path: Path,
    run: Callable[[MqttSource], Consumer],
) -> None:
    passwords = tmp_path / "passwd"
    passwords.write_text(password_line("alice", "s3cret") + "\n", "utf-8")
    broker = configured_broker(["allow_anonymous false", f"password_file {passwords}"])
    root = unique()
    source_config = config(broker, root, username_env="MQ_USER", password_env="MQ_PASS")
    good, bad = RecordingReport(), RecordingReport()
    async with asyncio.timeout(WAIT_SECONDS):
        wrong = MqttSource(source_config, bad, environ={"MQ_USER": "alice", "MQ_PASS": "nope"})
        rejected = run(wrong)
        await until(lambda: len(bad.reconnects) >= 2, rejected)
        await rejected.stop()

        right = {"MQ_USER": "alice", "MQ_PASS": "s3cret"}
        consumer = run(MqttSource(source_config, good, environ=right))
        await until(lambda: good.up, consumer)
        message = (f"{root}/xwatch/mentions/acme", post("1"))
        await publish(broker, [message], username="alice", password="s3cret")
        await until(lambda: len(consumer.mentions) == 1, consumer)
    assert bad.ups == [False] and all("nope" not in why for _, why in bad.reconnects)
    assert any("not authori" in why.lower() for _, why in bad.reconnects), bad.reconnects
    assert consumer.ids == ["1"]


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-nodes", "-days", "2", "-subj", f"/CN={HOST}"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-addext", f"subjectAltName=IP:{HOST}", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


# paho-mqtt 2.2 does not close the socket of a failed TLS handshake (Client._ssl_wrap_socket):
# the garbage collector does, with a ResourceWarning, in whichever TLS test it runs then.
paho_leaks_tls_sockets = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <ssl.SSLSocket:pytest.PytestUnraisableExceptionWarning"
)


@paho_leaks_tls_sockets
@pytest.mark.asyncio
async def test_tls_verifies_the_broker_with_the_ca_file(
    configured_broker: Callable[[list[str]], Mosquitto],
    certificate: tuple[Path, Path],
    run: Callable[[MqttSource], Consumer],
) -> None:
    cert, key = certificate
    broker = configured_broker([f"certfile {cert}", f"keyfile {key}"])
    root = unique()
    trusted, untrusted = RecordingReport(), RecordingReport()
    async with asyncio.timeout(WAIT_SECONDS):
        stranger = run(MqttSource(config(broker, root, tls=True), untrusted))  # system CAs
        await until(lambda: len(untrusted.reconnects) >= 2, stranger)
        await stranger.stop()

        consumer = run(MqttSource(config(broker, root, tls=True, ca_file=cert), trusted))
        await until(lambda: trusted.up, consumer)
        tls = aiomqtt.TLSParameters(ca_certs=str(cert))
        await publish(broker, [(f"{root}/xwatch/mentions/acme", post("1"))], tls_params=tls)
        await until(lambda: len(consumer.mentions) == 1, consumer)
    assert untrusted.ups == [False]
    assert any("certificate" in why.lower() for _, why in untrusted.reconnects), (
        untrusted.reconnects
    )
    assert consumer.ids == ["1"]


@paho_leaks_tls_sockets
@pytest.mark.asyncio
async def test_over_tls_large_messages_behind_a_slow_consumer_all_arrive_in_order(
    configured_broker: Callable[[list[str]], Mosquitto],
    certificate: tuple[Path, Path],
    run: Callable[[MqttSource], Consumer],
) -> None:
    """TLS hands the reader a record at a time (16 KiB) and may hold decrypted bytes
    the socket no longer shows; with messages larger than a record, and the inbox full
    while the consumer is held (the reader keeps what it has read), none is lost or
    stuck."""
    cert, key = certificate
    broker = configured_broker([f"certfile {cert}", f"keyfile {key}"])
    root = unique()
    report = RecordingReport()
    ids = [str(i) for i in range(RECEIVE_MAXIMUM + 30)]
    padding = "x" * 20_000  # more than a TLS record a message
    tls = aiomqtt.TLSParameters(ca_certs=str(cert))
    async with asyncio.timeout(WAIT_SECONDS):
        consumer = run(MqttSource(config(broker, root, tls=True, ca_file=cert), report))
        consumer.gate.clear()  # held at its first mention
        await until(lambda: report.up, consumer)
        messages = [(f"{root}/xwatch/mentions/acme", post(i, padding=padding)) for i in ids]
        async with aiomqtt.Client(broker.host, broker.port, tls_params=tls) as client:
            await asyncio.gather(*(client.publish(t, m, qos=1) for t, m in messages))
        consumer.gate.set()
        await until(lambda: len(consumer.mentions) >= len(ids), consumer)
    assert consumer.ids == ids


def test_the_inbox_bounds_qos0_messages_only() -> None:
    def message(qos: int) -> aiomqtt.Message:
        return aiomqtt.Message("t", b"", qos=qos, retain=False, mid=0, properties=None)

    inbox = _Inbox(maxsize=QOS0_QUEUE_LIMIT)
    for _ in range(QOS0_QUEUE_LIMIT):
        inbox.put_nowait(message(0))
    with pytest.raises(asyncio.QueueFull):
        inbox.put_nowait(message(0))  # aiomqtt logs it and drops it: QoS 0 allows that
    inbox.put_nowait(message(1))  # not acknowledged yet: the broker's window bounds these
    assert inbox.qsize() == QOS0_QUEUE_LIMIT + 1


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One MQTT packet: its first byte and its body (after the remaining length)."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first, await reader.readexactly(length)


@contextlib.asynccontextmanager
async def broker_that_disconnects(reason: int) -> AsyncIterator[int]:
    """A one-connection MQTT 5 broker: CONNACK, SUBACK, then a DISCONNECT with
    ``reason`` (as EMQX or HiveMQ send "Server shutting down", "Administrative action"...;
    the mosquitto here just closes the socket). Yields its port."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_packet(reader)  # CONNECT
        writer.write(bytes([0x20, 3, 0, 0, 0]))  # CONNACK: session not present, success
        _, subscribe = await _read_packet(reader)
        writer.write(bytes([0x90, 4, subscribe[0], subscribe[1], 0, 1]))  # SUBACK: QoS 1
        writer.write(bytes([0xE0, 2, reason, 0]))  # DISCONNECT with its reason code
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.mark.asyncio
async def test_the_brokers_reason_for_a_disconnection_is_said(
    run: Callable[[MqttSource], Consumer],
) -> None:
    """aiomqtt only says "Disconnected during message iteration"; a broker's DISCONNECT
    (MQTT 5) says why: the reconnect line says it too."""
    report = RecordingReport()
    async with asyncio.timeout(WAIT_SECONDS), broker_that_disconnects(0x8B) as port:
        fields = {"type": "mqtt", "name": "mqtt-test", "host": "127.0.0.1", "port": port}
        source = MqttSource(MqttSourceConfig.model_validate(fields), report, rng=MaxJitter())
        consumer = run(source)
        await until(lambda: bool(report.reconnects), consumer)
    assert report.reconnects[0][1].endswith("the broker's reason: Server shutting down")


def _publish_packet(topic: bytes, mid: int, payload: bytes, *, v5: bool) -> bytes:
    """A QoS 1 PUBLISH, its topic as given (MQTT requires UTF-8; this broker does not check)."""
    body = len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big")
    body += (b"\x00" if v5 else b"") + payload  # MQTT 5: no properties
    assert len(body) < 128  # one byte of remaining length
    return bytes([0x32, len(body)]) + body


@contextlib.asynccontextmanager
async def broker_with_a_bad_topic(v5: bool) -> AsyncIterator[tuple[int, list[int], set[int]]]:
    """A broker that does not check topics (mosquitto refuses a publisher's non-UTF-8
    topic): at each connection it sends the four QoS 1 messages not yet acknowledged, the
    second on a topic that is not UTF-8 and the third on a wildcard, as a real broker
    sends a session's messages again. Yields its port, the connections made (one entry
    each) and the ids acknowledged."""
    messages = {
        1: (b"xwatch/mentions/acme", post("1")),
        2: (b"xwatch/mentions/\xff\xfe", post("2")),
        3: (b"xwatch/mentions/+", post("3")),  # a wildcard: not a topic name
        4: (b"xwatch/mentions/acme", post("4")),
    }
    connections: list[int] = []
    acked: set[int] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await _read_packet(reader)  # CONNECT
            writer.write(bytes([0x20, 3, 0, 0, 0]) if v5 else bytes([0x20, 2, 0, 0]))
            _, subscribe = await _read_packet(reader)
            suback = subscribe[:2] + (b"\x00\x01" if v5 else b"\x01")
            writer.write(bytes([0x90, len(suback)]) + suback)
            for mid, (topic, payload) in messages.items():
                if mid not in acked:
                    writer.write(_publish_packet(topic, mid, payload, v5=v5))
            await writer.drain()
            while True:
                first, body = await _read_packet(reader)
                if first >> 4 == 4:  # PUBACK
                    acked.add(int.from_bytes(body[:2], "big"))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], connections, acked
    finally:
        server.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
@pytest.mark.parametrize("reader", ["bulk", "paho"])
async def test_a_message_whose_topic_is_not_utf8_is_rejected_and_acknowledged(
    run: Callable[[MqttSource], Consumer],
    monkeypatch: pytest.MonkeyPatch,
    protocol: str,
    reader: str,
) -> None:
    """aiomqtt raised on such a topic inside paho's callback: the connection dropped with
    the message unacknowledged, and the broker sent it again at every reconnection, so
    the messages behind it never arrived."""
    if reader == "paho":
        monkeypatch.setattr(paho_bulk, "install", lambda client, has_room: False)
    report = RecordingReport()
    async with (
        asyncio.timeout(WAIT_SECONDS),
        broker_with_a_bad_topic(protocol == "5") as (
            port,
            connections,
            acked,
        ),
    ):
        fields = {
            "type": "mqtt",
            "name": "mqtt-test",
            "host": "127.0.0.1",
            "port": port,
            "protocol": protocol,
            "brand_from_topic": True,
            "reconnect_min_seconds": 0.01,
            "reconnect_max_seconds": 0.05,
        }
        source = MqttSource(MqttSourceConfig.model_validate(fields), report)
        consumer = run(source)
        await until(lambda: len(consumer.mentions) >= 2 and acked == {1, 2, 3, 4}, consumer)
    assert consumer.ids == ["1", "4"]
    assert [m.brands for m in consumer.mentions] == [("acme",), ("acme",)]
    assert report.rejections == [
        (
            "invalid_utf8",
            r"b'xwatch/mentions/\xff\xfe': the topic is not UTF-8; the message is skipped",
        ),
        (
            "wrong_type",
            "b'xwatch/mentions/+': the topic is not a topic name (empty, or a wildcard in it); "
            "the message is skipped",
        ),
    ]
    assert len(connections) == 1 and report.reconnects == []
