"""Mentions from an MQTT broker: one post per message, xwatch JSON or an X API v2 payload.

Like every source::

    async with MqttSource(config, report) as source:
        async for mention in source:
            ...

What it does
    Connects with aiomqtt (paho-mqtt underneath), subscribes to ``topics`` and turns each
    message into mentions with ``parse_payload``. A message that is not a mention is
    reported (``report.rejected``, the detail starts with the topic), acknowledged and
    skipped: bad input never ends the iteration. So is a message whose topic is not
    UTF-8 (``invalid_utf8``: a broker that does not check topics may pass one on). With
    ``brand_from_topic``, a message on ``<prefix>/<brand>`` (the last topic level, in lower
    case) says which brand it is about, unless the payload names brands itself.

    The broker being down, at start or later, is not an error: the source reconnects
    forever, waiting a capped exponential backoff with full jitter (a delay drawn
    uniformly from [0, min(reconnect_max_seconds, reconnect_min_seconds * 2**attempt)]),
    reset once a connection is up. Each connection subscribes again. ``report.connected``
    says when it is up (subscribed) or down, ``report.reconnecting`` when it waits and why.

Config keys (``MqttSourceConfig``, ``type: mqtt``)
    ``name``; ``host``, ``port``; ``topics`` (filters, default ``xwatch/mentions/#``);
    ``qos`` (default 1; see below); ``client_id`` (fixed: it names the session);
    ``protocol`` ``"5"`` or ``"3.1.1"``; ``session_expiry_seconds`` (MQTT 5);
    ``shared_group`` (subscribe to ``$share/<group>/<topic>``: the sources of a group, each
    with its own ``client_id``, split the messages; mosquitto goes on handing a share to a
    member that is down with its session kept, and that share waits for it);
    ``brand_from_topic``; ``tls`` and ``ca_file`` (else the system CAs);
    ``username_env`` and ``password_env`` (names of environment variables, read when set,
    never logged); ``reconnect_min_seconds``, ``reconnect_max_seconds``.

Guarantees
    * Persistent session: the client id is fixed and the session is never cleaned (MQTT 5
      ``clean_start=False``, also on the first connect, with a ``SessionExpiryInterval`` of
      ``session_expiry_seconds``; MQTT 3.1.1 ``clean_session=False``). What is published
      at QoS >= 1 while xwatch is down is queued by the broker and arrives when it is back,
      within the broker's own limits (mosquitto keeps ``max_queued_messages``, 1000 by
      default, per client: size it for the longest outage to survive).
    * With ``qos: 1``, at least once up to the consumer: a QoS 1 message is acknowledged
      (PUBACK) only once the consumer has taken every mention in it, that is when it asks
      for the next one; rejected payloads are acknowledged at once. Acks go in the order
      the messages arrived, on the connection they arrived on, in batches (``paho_bulk``:
      up to ``ACKS_PER_WRITE``, and whatever is gathered before the source waits or lets
      the event loop run, and when it stops). A message received but not yet taken when
      the connection drops or the source stops is not acknowledged, and the broker sends
      it again on the next connection; so does a crash to the messages whose ack had not
      been written yet: expect duplicates (the daemon deduplicates by id), not losses.
      The guarantee ends at the hand-over: a mention the consumer has taken is the
      consumer's (the daemon writes it to its journal first: ``xwatch.journal``).
    * Backpressure: unacknowledged messages count against the broker's in-flight window
      (MQTT 5: we announce ``Receive Maximum`` = ``RECEIVE_MAXIMUM``; MQTT 3.1.1: the
      broker's setting, mosquitto ``max_inflight_messages``, 20 by default), so a slow
      consumer makes the broker hold messages rather than this process. Those messages are
      never dropped here. A broker that overruns the window (mosquitto 2.0.11 does, when
      acks come in bursts: hundreds of messages for a window of 100), or sends QoS 0
      faster than they are taken, is made to wait all the same: with ``RECEIVE_MAXIMUM``
      messages waiting here (once subscribed: the SUBACK comes after a session's first
      window of queued messages), the source stops reading the socket (TCP pushes back on the
      broker, whose own limits then apply) until half are taken. ``QOS0_QUEUE_LIMIT`` is
      a last guard: QoS 0 messages beyond it would be dropped (aiomqtt logs it).

Limitations
    * aiomqtt 2.5.1 has no manual-ack API (aiomqtt issue #345, PR #346 unmerged), so we use
      the paho client underneath it (``client._client``): ``manual_ack_set`` before
      connecting, ``ack(mid, qos)`` after the hand-over. Re-check when upgrading aiomqtt.
    * To stop and restart reading the socket, ``_Reading`` removes aiomqtt's reader from
      the event loop and adds one that does what aiomqtt's does
      (``Client._on_socket_open``). Re-check when upgrading.
    * aiomqtt's message iterator costs several turns of the event loop per message, so
      ``_messages`` takes waiting messages from aiomqtt's inbox (``client._queue``) and
      reads waiting packets with paho's ``loop_read`` itself, leaving the waiting and the
      disconnection (``client._disconnected``) to aiomqtt. Re-check when upgrading.
    * paho-mqtt reads a packet in four ``recv`` calls or more and decodes each message
      through several layers, and writes each ack with a ``send`` of its own:
      ``paho_bulk`` reads the socket in bulk, queues QoS 0/1 messages straight into
      aiomqtt's inbox (other packets go to paho's handlers) and writes the acks in
      batches (a paho release it was not checked against, or a paho or aiomqtt of
      another layout, is left as it is, with a warning). Re-check when upgrading either.
    * paho-mqtt builds its MQTT 5 property tables anew for every packet it decodes, about
      half of its cost per message: ``paho_tables`` has it share one set (installed for
      the process when an MQTT 5 client is made; a paho of another layout is left as it
      is, with a warning). Re-check when upgrading paho-mqtt.
    * ``qos: 2`` keeps aiomqtt's automatic acks (paho, with manual acks, never completes a
      PUBREL for a message that a previous connection received, which would stall the
      broker's window): a message is then acknowledged on receipt, before the hand-over,
      and one received but not yet taken when the connection drops or the process stops
      is lost. ``qos: 0`` is at most once. Prefer ``qos: 1``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import Any, Self

import aiomqtt
import paho.mqtt as paho_mqtt
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY, MQTT_ERR_SUCCESS
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from xwatch.config import MqttSourceConfig
from xwatch.errors import PayloadError
from xwatch.model import Mention
from xwatch.sources import SourceReport, paho_bulk, paho_tables
from xwatch.sources.payload import parse_payload

RECEIVE_MAXIMUM = 100  # MQTT 5: unacknowledged QoS 1/2 messages the broker may send us
QOS0_QUEUE_LIMIT = 1000  # QoS 0 messages waiting in memory beyond this are dropped
MAX_SESSION_EXPIRY = 0xFFFFFFFF  # MQTT 5: the session never expires

log = logging.getLogger("xwatch.sources.mqtt")


class MqttSource:
    live = True

    def __init__(
        self,
        config: MqttSourceConfig,
        report: SourceReport,
        *,
        environ: Mapping[str, str] = os.environ,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.report = report
        self._environ = environ
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._manual_ack = config.qos == 1
        self._up: bool | None = None  # None: not known yet
        self._disconnection: _Disconnection | None = None  # of the connection in use
        self._streams: list[AsyncGenerator[Mention, None]] = []

    async def __aenter__(self) -> Self:
        return self  # connecting happens while iterating: a broker down is not an error

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # An abandoned iterator still holds its connection: close it (and disconnect) now.
        streams, self._streams = self._streams, []
        for stream in streams:
            await stream.aclose()

    def __aiter__(self) -> AsyncIterator[Mention]:
        stream = self._stream()
        self._streams.append(stream)
        return stream

    async def _stream(self) -> AsyncGenerator[Mention, None]:
        attempt = 0
        try:
            while True:
                try:
                    async with self._client() as client:
                        acks = paho_bulk.acks(client)
                        try:
                            await self._subscribe(client)
                            inbox = client._queue
                            assert isinstance(inbox, _Inbox)
                            inbox.hold_back()
                            self._set_up(True)
                            attempt = 0
                            async for message in _messages(client, acks.flush):
                                for mention in self._mentions(message):
                                    self.report.received(self.name)
                                    yield mention
                                # The consumer has taken them all (it asks for more): ack.
                                if self._manual_ack:
                                    acks.add(message.mid, message.qos)
                        finally:
                            acks.flush()  # before the disconnection, if it is not lost
                    why = "the connection ended"
                except aiomqtt.MqttError as exc:
                    why = str(exc) or type(exc).__name__
                said = self._disconnection.reason if self._disconnection is not None else ""
                if said:  # aiomqtt's own words do not say why (a broker's DISCONNECT does)
                    why = f"{why}: {said}"
                self._set_up(False)
                ceiling = min(
                    self.config.reconnect_max_seconds,
                    self.config.reconnect_min_seconds * 2 ** min(attempt, 64),
                )
                delay = self._rng.uniform(0.0, ceiling)
                attempt += 1
                self.report.reconnecting(self.name, delay, why)
                await self._sleep(delay)
        finally:
            if self._up:
                self._set_up(False)

    def _client(self) -> aiomqtt.Client:
        """A new client for each connection: acks must go to the connection a message came on."""
        config = self.config
        v5 = config.protocol == "5"
        properties = None
        if v5:
            _share_property_tables()
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = min(
                config.session_expiry_seconds, MAX_SESSION_EXPIRY
            )
            properties.ReceiveMaximum = RECEIVE_MAXIMUM
        username = self._environ.get(config.username_env)
        client = _Client(
            config.host,
            config.port,
            identifier=config.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else False,
            clean_start=False if v5 else MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
            username=username,
            password=self._environ.get(config.password_env) if username is not None else None,
            tls_params=(
                aiomqtt.TLSParameters(ca_certs=str(config.ca_file) if config.ca_file else None)
                if config.tls
                else None
            ),
            queue_type=_Inbox,
            max_queued_incoming_messages=QOS0_QUEUE_LIMIT,
        )
        # Before connecting: the session's queued messages arrive right after CONNACK.
        client._client.manual_ack_set(self._manual_ack)
        inbox = client._queue
        assert isinstance(inbox, _Inbox)
        reading = _Reading(client)
        inbox.on_full, inbox.on_room = reading.pause, reading.resume
        if not paho_bulk.install(client, has_room=inbox.has_room):
            _warn_reader_layout()
        self._disconnection = _Disconnection(client)
        return client

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        config = self.config
        filters = [
            f"$share/{config.shared_group}/{topic}" if config.shared_group else topic
            for topic in config.topics
        ]
        if config.protocol == "5":
            # Retained messages only for a new subscription, not on every reconnect.
            options = SubscribeOptions(
                qos=config.qos, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
            )
            _check_granted(filters, await client.subscribe([(f, options) for f in filters]))
        else:
            qos = int(config.qos)
            _check_granted(filters, await client.subscribe([(f, qos) for f in filters]))

    def _mentions(self, message: aiomqtt.Message) -> list[Mention]:
        if isinstance(message, _UnreadableTopic):
            self.report.rejected(self.name, message.reason, message.detail)
            return []
        topic = message.topic.value
        if message.retain:
            # sent because a subscription was made (MQTT 3.1.1: at every connection), not
            # because it was published to it: the topic's last post, however old. As a
            # daemon's first post it would start every series then (days of empty buckets,
            # a false volume drop). Posts queued for the session come with retain 0.
            self.report.problem(self.name, "retained", f"{topic}: a retained message, skipped")
            return []
        brand: tuple[str, ...] = ()
        if self.config.brand_from_topic:
            levels = topic.split("/")
            if len(levels) > 1 and levels[-1]:
                brand = (levels[-1].lower(),)  # brand ids are lower case
        try:
            # the topic's brand goes to the mentions whose payload names none
            return parse_payload(_as_bytes(message.payload), self.name, brands=brand)
        except PayloadError as exc:
            self.report.rejected(self.name, exc.reason, f"{topic}: {exc.detail}")
            return []

    def _set_up(self, up: bool) -> None:
        if self._up is not up:
            self._up = up
            self.report.connected(self.name, up)


def _nothing() -> None:
    return None


def _share_property_tables() -> None:
    """paho decodes each MQTT 5 message's properties with tables built once
    (``paho_tables``: about half of paho's cost per message); said once if it cannot."""
    if not paho_tables.install():
        _warn_paho_layout()


@functools.cache
def _warn_paho_layout() -> None:
    log.warning(
        "paho-mqtt's layout is not the one xwatch knows (paho.mqtt._packet.Properties): "
        "MQTT 5 messages are decoded at paho's own speed (about half the rate)"
    )


@functools.cache
def _warn_reader_layout() -> None:
    log.warning(
        "paho-mqtt %s is not a release xwatch's bulk reader was checked against (%s), or "
        "paho's or aiomqtt's layout differs: MQTT messages are read and acknowledged at "
        "paho's own speed",
        paho_mqtt.__version__,
        ", ".join(f"{release}x" for release in paho_bulk.PAHO_RELEASES),
    )


class _UnreadableTopic(aiomqtt.Message):
    """A message whose topic is not a topic name: not UTF-8 (which MQTT requires of every
    string, and mosquitto checks; a broker that does not may pass one on), or holding a
    wildcard. It is rejected as a bad payload is: reported, and acknowledged when taken."""

    TOPIC = aiomqtt.Topic("(unreadable topic)")  # aiomqtt's Message must have one

    def __init__(self, message: Any) -> None:
        super().__init__(
            self.TOPIC, _as_bytes(message.payload), message.qos, message.retain, message.mid, None
        )
        raw = bytes(getattr(message, "_topic", b""))
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            self.reason = "invalid_utf8"
            why = "the topic is not UTF-8"
        else:
            self.reason = "wrong_type"
            why = "the topic is not a topic name (empty, or a wildcard in it)"
        self.detail = f"{raw[:200]!r}: {why}; the message is skipped"


class _Client(aiomqtt.Client):
    """aiomqtt's client, except that a message whose topic is not a topic name reaches
    the inbox as an ``_UnreadableTopic``. aiomqtt's own ``_on_message`` raises on it
    (paho, then aiomqtt, read the topic as UTF-8): the connection dropped before the
    message was acknowledged, and the broker sent it again at every connection, so
    nothing after it ever arrived. Both readers (``paho_bulk`` hands paho such a packet)
    come through here. Re-check when upgrading aiomqtt."""

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            super()._on_message(client, userdata, message)
        except (UnicodeDecodeError, ValueError):
            try:
                self._queue.put_nowait(_UnreadableTopic(message))
            except asyncio.QueueFull:
                self._logger.warning("Message queue is full. Discarding message.")


class _Inbox(asyncio.Queue[aiomqtt.Message]):
    """aiomqtt's incoming queue: ``maxsize`` bounds the QoS 0 messages only.

    QoS 1/2 messages are always kept: the broker's in-flight window bounds them, and one
    dropped here would never be acknowledged, holding a slot of that window for good.
    Once ``holding_back`` (the subscription is acknowledged), with ``RECEIVE_MAXIMUM``
    messages waiting, ``on_full`` is called (stop reading: the broker overran its
    window), and ``on_room`` once half of them have been taken; ``has_room`` says
    whether another may come in (``paho_bulk``'s reader asks it before each packet it
    has read).

    Not before: a session's queued messages come right after the CONNACK, a window's
    worth before the SUBACK, and nothing takes them until the subscription is
    acknowledged. Held back then, the SUBACK was never read: the source timed out
    subscribing, reconnected, and got the same window again, for ever, whenever a
    window's worth or more waited for it.
    """

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__()
        self.qos0_limit = maxsize
        self.on_full: Callable[[], None] = _nothing
        self.on_room: Callable[[], None] = _nothing
        self.holding_back = False

    def hold_back(self) -> None:
        """From now on, a full inbox stops the reading (``on_full``), and it is full now."""
        self.holding_back = True
        if not self.has_room():
            self.on_full()

    def put_nowait(self, item: aiomqtt.Message) -> None:
        if item.qos == 0 and 0 < self.qos0_limit <= self.qsize():
            raise asyncio.QueueFull
        super().put_nowait(item)
        if not self.has_room():
            self.on_full()

    def has_room(self) -> bool:
        return not self.holding_back or self.qsize() < RECEIVE_MAXIMUM

    def get_nowait(self) -> aiomqtt.Message:
        item = super().get_nowait()
        if self.qsize() <= RECEIVE_MAXIMUM // 2:
            self.on_room()
        return item


class _Reading:
    """Stops and restarts reading a client's socket; aiomqtt reads it whenever it is
    readable, and each message read goes to the inbox."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.paused: int | None = None  # the socket's file descriptor, while paused

    def pause(self) -> None:
        sock = self.client._client.socket()
        if self.paused is not None or sock is None or sock.fileno() < 0:
            return
        if asyncio.get_running_loop().remove_reader(sock.fileno()):
            self.paused = sock.fileno()

    def resume(self) -> None:
        if self.paused is None:
            return
        paused, self.paused = self.paused, None
        sock = self.client._client.socket()
        if sock is None or sock.fileno() != paused:
            return  # that connection is gone
        loop = asyncio.get_running_loop()
        loop.add_reader(paused, self._read)
        loop.call_soon(self._read)  # packets read already may wait in paho_bulk's buffer

    def _read(self) -> None:
        """What aiomqtt's reader does: read what is waiting (TLS may hold more than one
        read takes); an error ends the connection."""
        paho = self.client._client
        try:
            while True:
                paho.loop_read()
                pending = getattr(getattr(paho, "_sock", None), "pending", None)
                if pending is None or pending() <= 0:
                    break
        except Exception as exc:
            if not self.client._disconnected.done():
                self.client._disconnected.set_exception(exc)


async def _messages(
    client: aiomqtt.Client, before_waiting: Callable[[], None]
) -> AsyncIterator[aiomqtt.Message]:
    """``client.messages``, with less work per message while messages are waiting.

    aiomqtt's reader reads one packet each time the event loop finds the socket
    readable, and its iterator makes a task and an ``asyncio.wait`` for every message:
    several turns of the event loop per message, and batches of one post for the
    daemon's pipeline. Here, messages already in the inbox are taken at once, and when
    it is empty the packets already waiting in the socket are read first (paho's
    ``loop_read``, as aiomqtt's reader calls it), then the other tasks get one turn (the
    pipeline takes what was yielded so far as one batch; ticks and notifiers run) before
    they are yielded. Only when no packet is waiting, or once the connection is known
    to be lost, does aiomqtt's own iterator wait (and raise ``MqttError`` on a
    disconnection). ``before_waiting`` is called before either lets the event loop run
    (the acks gathered so far are queued then: nothing is written before it runs).
    """
    inbox = client._queue
    iterator = client.messages
    while True:
        if inbox.empty() and not client._disconnected.done() and _read_waiting(client, inbox):
            before_waiting()
            await asyncio.sleep(0)
        if inbox.empty() or client._disconnected.done():
            before_waiting()
            yield await anext(iterator)
        else:
            yield inbox.get_nowait()


def _read_waiting(client: aiomqtt.Client, inbox: asyncio.Queue[aiomqtt.Message]) -> int:
    """Read the packets already in the socket, up to a window's worth, without waiting;
    return how many messages that put in the inbox.

    A read error is left alone: aiomqtt's reader meets it on its next read and ends
    the connection as usual.
    """
    paho = client._client
    start = inbox.qsize()
    for _ in range(RECEIVE_MAXIMUM):
        before = inbox.qsize()
        try:
            if paho.loop_read() != MQTT_ERR_SUCCESS:
                break
        except Exception:
            break
        if inbox.qsize() == before:
            break  # nothing more waiting (or a packet that is not a message)
    return inbox.qsize() - start


class _Disconnection:
    """Why the broker ended the connection, as paho heard it: the reason code of its
    DISCONNECT (MQTT 5: "Session taken over", "Server shutting down", "Administrative
    action", ...). aiomqtt's iterator only says "Disconnected during message iteration";
    the source's reconnect line says this too."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.reason = ""
        paho = client._client
        chained = paho.on_disconnect

        def on_disconnect(
            c: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None
        ) -> None:
            from_broker = getattr(flags, "is_disconnect_packet_from_server", False)
            if from_broker and isinstance(reason_code, ReasonCode) and reason_code.is_failure:
                self.reason = f"the broker's reason: {reason_code}"
            if chained is not None:
                chained(c, userdata, flags, reason_code, properties)  # type: ignore[call-arg]

        paho.on_disconnect = on_disconnect


def _check_granted(filters: Sequence[str], granted: Sequence[int | ReasonCode]) -> None:
    for topic, code in zip(filters, granted, strict=False):
        if code.is_failure if isinstance(code, ReasonCode) else code >= 0x80:
            raise aiomqtt.MqttError(f"subscription to {topic!r} refused: {code}")


def _as_bytes(payload: object) -> bytes:
    """The payload as bytes: aiomqtt declares bytes, yet publishing accepts str, bytearray..."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray | memoryview):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode("utf-8")
