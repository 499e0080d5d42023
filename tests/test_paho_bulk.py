"""paho read and acknowledged in bulk: the same messages and the same bytes as paho's own.

``paho_bulk`` takes the place of paho's packet reader and batches the acks. These tests
feed the same bytes, over a socket pair, to a client that reads with paho's reader and
to one that reads with ``BulkReader``, whole or a byte at a time, and compare what each
queues; they check that the packets the reader does not decode reach paho's handlers,
that a consumer without room makes it stop reading, and that the batched acks are the
bytes paho writes. Against a real broker, ``tests/test_source_mqtt.py`` runs the source
with them.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiomqtt
import paho.mqtt
import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from xwatch.sources import paho_bulk

V5 = aiomqtt.ProtocolVersion.V5
V311 = aiomqtt.ProtocolVersion.V311
Received = tuple[str, bytes, int, bool, int]


def remaining_length(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def packet(command: int, body: bytes) -> bytes:
    return bytes([command]) + remaining_length(len(body)) + body


def properties(**values: Any) -> bytes:
    """MQTT 5 PUBLISH properties as paho packs them (their length first)."""
    packed: Any = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(packed, name, value)
    return bytes(packed.pack())


def publish(
    topic: str | bytes,
    payload: bytes,
    *,
    qos: int = 1,
    mid: int = 1,
    retain: bool = False,
    props: bytes | None = b"\x00",
) -> bytes:
    """A PUBLISH packet; ``props`` None for MQTT 3.1.1 (no properties)."""
    name = topic.encode() if isinstance(topic, str) else topic
    body = struct.pack("!H", len(name)) + name
    body += struct.pack("!H", mid) if qos else b""
    body += props if props is not None else b""
    return packet(0x30 | qos << 1 | int(retain), body + payload)


PINGRESP = packet(0xD0, b"")


class Wire:
    """An aiomqtt client whose paho socket is one end of a socket pair; ``peer`` is the
    broker's end. paho writes at once (no event loop writer), as in a thread of its own."""

    def __init__(self, protocol: aiomqtt.ProtocolVersion, bulk: bool) -> None:
        self.client = aiomqtt.Client("127.0.0.1", 1883, protocol=protocol)
        self.paho: Any = self.client._client
        self.paho.on_socket_register_write = None
        self.paho.on_socket_unregister_write = None
        ours, self.peer = socket.socketpair()
        ours.setblocking(False)
        self.peer.settimeout(5)
        self.sockets = [ours, self.peer]
        self.paho._sock = ours
        self.room = True
        if bulk:
            assert paho_bulk.install(self.client, lambda: self.room)
            assert paho_bulk.installed(self.client)

    def feed(self, data: bytes, *, by: int = 0) -> list[MQTTErrorCode]:
        """Send ``data`` from the broker's end (``by`` bytes at a time, 0: whole) and have
        the client read after each part; what ``loop_read`` returned each time."""
        parts = [data[i : i + by] for i in range(0, len(data), by)] if by else [data]
        results = []
        for part in parts:
            self.peer.sendall(part)
            results.append(self.paho.loop_read())
        return results

    def queued(self) -> list[Received]:
        out = []
        while not self.client._queue.empty():
            m = self.client._queue.get_nowait()
            out.append((m.topic.value, m.payload, m.qos, m.retain, m.mid))
        return out

    def written(self) -> bytes:
        self.peer.setblocking(False)
        try:
            return self.peer.recv(1 << 20)
        except BlockingIOError:
            return b""
        finally:
            self.peer.settimeout(5)

    def close(self) -> None:
        self.paho._sock = None
        for sock in self.sockets:
            sock.close()


@pytest_asyncio.fixture
async def wires() -> AsyncIterator[Callable[..., Wire]]:
    """Make wires (an aiomqtt client needs a running event loop); closed after the test."""
    made: list[Wire] = []

    def make(protocol: aiomqtt.ProtocolVersion = V5, *, bulk: bool = True) -> Wire:
        made.append(Wire(protocol, bulk))
        return made[-1]

    yield make
    for wire in made:
        wire.close()


def stream_v5() -> list[bytes]:
    """Packets of every shape the fast path takes, and a PINGRESP, MQTT 5."""
    return [
        publish("xwatch/mentions/acme", b'{"id": "1"}', mid=1),
        publish("xwatch/mentions/acme", b"", qos=0, mid=0),  # empty payload, QoS 0
        publish("xwatch/mentions/acme", b"retained", mid=2, retain=True),
        publish("xwatch/mentions/ケトル", "日本語の投稿".encode(), mid=3),
        publish(
            "xwatch/mentions/globex",
            b"with properties",
            mid=65535,
            props=properties(
                PayloadFormatIndicator=1,
                ContentType="application/json",
                UserProperty=[("brand", "globex"), ("lang", "ja")],
            ),
        ),
        publish("a/b", b"x" * 200, mid=4),  # a two-byte remaining length
        publish("a/b", bytes(range(256)) * 80, mid=5),  # three bytes (20,480)
        PINGRESP,
        publish("xwatch/mentions/acme", b"after a ping", mid=6),
    ]


def stream_v311() -> list[bytes]:
    return [
        publish("xwatch/mentions/acme", b'{"id": "1"}', mid=1, props=None),
        publish("xwatch/mentions/acme", b"q0", qos=0, props=None),
        publish("a/b", b"y" * 300, mid=2, retain=True, props=None),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize(("protocol", "stream"), [(V5, stream_v5), (V311, stream_v311)])
@pytest.mark.parametrize("by", [0, 1, 7, 1000])
async def test_the_bulk_reader_queues_what_pahos_reader_queues(
    wires: Callable[..., Wire],
    protocol: aiomqtt.ProtocolVersion,
    stream: Callable[[], list[bytes]],
    by: int,
) -> None:
    packets = stream()
    data = b"".join(packets)
    pahos, ours = wires(protocol, bulk=False), wires(protocol)
    pahos.peer.sendall(data)
    for _ in range(100):  # paho's reader: a packet a call at most
        pahos.paho.loop_read()
    expected = pahos.queued()
    assert len(expected) == sum(1 for p in packets if p[0] & 0xF0 == 0x30)

    results = ours.feed(data, by=by)
    assert set(results) == {MQTTErrorCode.MQTT_ERR_SUCCESS}
    assert ours.queued() == expected
    assert ours.paho._in_packet["command"] == 0  # paho's own state is left as paho leaves it


@pytest.mark.asyncio
async def test_packets_it_does_not_decode_go_to_pahos_handlers(
    wires: Callable[..., Wire],
) -> None:
    wire = wires()
    wire.paho._ping_t = 12345.0  # waiting for a PINGRESP
    qos2 = publish("xwatch/mentions/acme", b"exactly once", qos=2, mid=9)
    assert wire.feed(PINGRESP + qos2) == [MQTTErrorCode.MQTT_ERR_SUCCESS]
    assert wire.paho._ping_t == 0  # paho saw the PINGRESP
    assert wire.queued() == []  # QoS 2 waits for its PUBREL, in paho
    assert 9 in wire.paho._in_messages
    assert wire.written() == bytes([0x50, 2, 0, 9])  # paho's PUBREC


@pytest.mark.asyncio
async def test_a_topic_that_is_not_utf8_gets_pahos_verdict(wires: Callable[..., Wire]) -> None:
    bad = publish(b"xwatch/\xff\xfe", b"payload", mid=3)
    pahos, ours = wires(bulk=False), wires()
    pahos.peer.sendall(bad)
    ours.peer.sendall(bad)
    with pytest.raises(UnicodeDecodeError):
        pahos.paho.loop_read()
    with pytest.raises(UnicodeDecodeError):
        ours.paho.loop_read()


@pytest.mark.asyncio
async def test_a_remaining_length_longer_than_four_bytes_is_a_protocol_error(
    wires: Callable[..., Wire],
) -> None:
    wire = wires()
    good = publish("a/b", b"before", mid=1)
    result = wire.feed(good + bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]))
    assert result == [MQTTErrorCode.MQTT_ERR_PROTOCOL]
    assert [m[1] for m in wire.queued()] == [b"before"]


@pytest.mark.asyncio
async def test_a_closed_connection_is_lost_after_the_whole_packets_before_it(
    wires: Callable[..., Wire],
) -> None:
    wire = wires()
    assert wire.feed(publish("a/b", b"last", mid=1) + publish("a/b", b"cut", mid=2)[:5]) == [
        MQTTErrorCode.MQTT_ERR_SUCCESS
    ]
    wire.peer.shutdown(socket.SHUT_WR)
    assert wire.paho.loop_read() == MQTTErrorCode.MQTT_ERR_CONN_LOST
    assert [m[1] for m in wire.queued()] == [b"last"]


@pytest.mark.asyncio
async def test_without_room_it_stops_queueing_and_reading_and_resumes_in_order(
    wires: Callable[..., Wire],
) -> None:
    wire = wires()
    queue = wire.client._queue
    wire.room = False
    first = b"".join(publish("a/b", str(i).encode(), mid=i + 1) for i in range(5))
    assert wire.feed(first) == [MQTTErrorCode.MQTT_ERR_SUCCESS]
    assert queue.empty()  # read, held in the buffer
    wire.peer.sendall(publish("a/b", b"5", mid=6))
    wire.paho.loop_read()
    assert queue.empty()
    assert wire.paho._sock.recv(1 << 16) == publish("a/b", b"5", mid=6)  # never read
    wire.room = True
    wire.peer.sendall(publish("a/b", b"6", mid=7))
    wire.paho.loop_read()  # the held packets first, then what the socket has
    assert [m[1] for m in wire.queued()] == [b"0", b"1", b"2", b"3", b"4", b"6"]


@pytest.mark.asyncio
async def test_a_new_connection_starts_with_an_empty_buffer(wires: Callable[..., Wire]) -> None:
    wire = wires()
    wire.feed(publish("a/b", b"cut off", mid=1)[:6])
    old = wire.paho._sock
    ours, wire.peer = socket.socketpair()
    wire.sockets += [ours, wire.peer]
    ours.setblocking(False)
    wire.paho._sock = ours
    old.close()
    wire.feed(publish("a/b", b"fresh", mid=1))
    assert [m[1] for m in wire.queued()] == [b"fresh"]


@pytest.mark.asyncio
async def test_with_automatic_acks_a_qos1_message_is_acknowledged_as_paho_does(
    wires: Callable[..., Wire],
) -> None:
    data = publish("a/b", b"one", mid=258) + publish("a/b", b"zero", qos=0, mid=0)
    pahos, ours = wires(bulk=False), wires()
    pahos.peer.sendall(data)
    for _ in range(3):
        pahos.paho.loop_read()
    ours.feed(data)
    assert ours.written() == pahos.written() == bytes([0x40, 2, 1, 2])


@pytest.mark.asyncio
async def test_batched_acks_are_the_bytes_paho_writes_in_the_same_order(
    wires: Callable[..., Wire],
) -> None:
    pahos, ours = wires(bulk=False), wires()
    pahos.paho.manual_ack_set(True)  # as the MQTT source sets it: else ack() sends nothing
    mids = [1, 2, 300, 65535, 7]
    for mid in mids:
        pahos.paho.ack(mid, 1)
    expected = pahos.written()
    assert len(expected) == 4 * len(mids)
    acks = paho_bulk.acks(ours.client)
    assert isinstance(acks, paho_bulk.BulkAcks)
    for mid in mids:
        acks.add(mid, 1)
    assert ours.written() == b""  # gathered, not yet queued
    acks.flush()
    assert ours.written() == expected


@pytest.mark.asyncio
async def test_acks_are_queued_every_acks_per_write_and_qos2_keeps_its_place(
    wires: Callable[..., Wire],
) -> None:
    wire = wires()
    wire.paho.manual_ack_set(True)
    acks = paho_bulk.acks(wire.client)
    for mid in range(1, paho_bulk.ACKS_PER_WRITE):
        acks.add(mid, 1)
    assert wire.written() == b""
    acks.add(paho_bulk.ACKS_PER_WRITE, 1)  # the batch is full: queued at once
    batch = wire.written()
    assert batch == b"".join(bytes([0x40, 2]) + m.to_bytes(2, "big") for m in range(1, 26))
    acks.add(100, 1)
    acks.add(101, 2)  # paho's PUBCOMP, after the PUBACK gathered before it
    assert wire.written() == bytes([0x40, 2, 0, 100, 0x70, 2, 0, 101])


@pytest.mark.asyncio
async def test_install_refuses_a_client_with_callbacks_it_would_not_honour(
    wires: Callable[..., Wire],
) -> None:
    wire = wires(bulk=False)
    wire.paho.message_callback_add("a/#", lambda *args: None)
    assert not paho_bulk.install(wire.client, lambda: True)
    other = wires(bulk=False)
    other.paho.on_message = lambda *args: None
    assert not paho_bulk.install(other.client, lambda: True)
    assert not paho_bulk.installed(wire.client)
    assert not paho_bulk.installed(other.client)


PUBLISHES = st.lists(
    st.tuples(
        st.text(st.characters(exclude_characters="+#\x00", codec="utf-8"), min_size=1, max_size=40),
        st.binary(max_size=400),
        st.sampled_from([0, 1]),
        st.integers(1, 65535),
        st.booleans(),
        st.sampled_from(
            [
                b"\x00",
                properties(PayloadFormatIndicator=1),
                properties(UserProperty=[("k", "v" * 130)]),  # a two-byte property length
            ]
        ),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=80, deadline=None)
@given(messages=PUBLISHES, cuts=st.lists(st.integers(1, 64), max_size=30))
def test_any_publishes_cut_anywhere_are_queued_as_paho_queues_them(
    messages: list[tuple[str, bytes, int, int, bool, bytes]], cuts: list[int]
) -> None:
    data = b"".join(
        publish(topic, payload, qos=qos, mid=mid if qos else 0, retain=retain, props=props)
        for topic, payload, qos, mid, retain, props in messages
    )

    async def check() -> None:
        pahos, ours = Wire(V5, bulk=False), Wire(V5, bulk=True)
        try:
            pahos.peer.sendall(data)
            for _ in range(len(messages) + 5):
                pahos.paho.loop_read()
            at = 0
            for cut in [*cuts, len(data)]:  # the same bytes, in parts of these sizes
                part, at = data[at : at + cut], at + cut
                if part:
                    ours.feed(part)
            assert ours.queued() == pahos.queued()
        finally:
            pahos.close()
            ours.close()

    asyncio.run(check())


@pytest.mark.asyncio
async def test_nothing_after_a_packet_on_which_paho_closes_the_connection_is_queued(
    wires: Callable[..., Wire],
) -> None:
    wire = wires()
    closing = wire.paho._packet_handle

    def handle() -> MQTTErrorCode:
        rc: MQTTErrorCode = closing()
        wire.paho._sock = None  # as paho's handler of a DISCONNECT from the broker does
        return rc

    wire.paho._packet_handle = handle
    data = publish("a/b", b"before", mid=1) + PINGRESP + publish("a/b", b"after", mid=2)
    assert wire.feed(data) == [MQTTErrorCode.MQTT_ERR_SUCCESS]
    assert [m[1] for m in wire.queued()] == [b"before"]


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [b"", b"\x00", b"\x00\x09a/b", b"\x00\x03a/b\x00"])
async def test_a_publish_too_short_gets_pahos_verdict(
    wires: Callable[..., Wire], body: bytes
) -> None:
    bad = packet(0x32, body)  # QoS 1, its body cut short
    pahos, ours = wires(bulk=False), wires()
    pahos.peer.sendall(bad)
    assert pahos.paho.loop_read() == MQTTErrorCode.MQTT_ERR_PROTOCOL  # malformed
    assert ours.feed(bad) == [MQTTErrorCode.MQTT_ERR_PROTOCOL]  # the buffer's last packet
    again = wires()
    assert again.feed(bad + publish("a/b", b"next", mid=2)) == [MQTTErrorCode.MQTT_ERR_PROTOCOL]
    assert ours.queued() == again.queued() == pahos.queued() == []


def read_until_done(wire: Wire, calls: int) -> tuple[list[Received], object]:
    """Call ``loop_read`` until an error, an exception, a closed connection or ``calls``;
    what was queued and how it ended (None: every call succeeded)."""
    ended: object = None
    try:
        for _ in range(calls):
            rc = wire.paho.loop_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                ended = rc
                break
            if wire.paho._sock is None:
                break
    except Exception as exc:  # paho's verdict on some packets is an exception
        ended = type(exc)
    return wire.queued(), ended


PACKETS = st.one_of(
    st.builds(
        lambda n, payload, qos, mid: publish(f"a/{n}", payload, qos=qos, mid=mid),
        st.integers(0, 9),
        st.binary(max_size=20),
        st.sampled_from([0, 1]),
        st.integers(1, 9),
    ),
    st.just(PINGRESP),
    st.builds(  # a PUBLISH of any QoS whose body is anything
        lambda flags, body: packet(0x30 | flags, body),
        st.sampled_from([0, 1, 2, 3, 4, 5]),
        st.binary(max_size=8),
    ),
    st.builds(  # an empty packet of another type, some of which a client never gets
        lambda kind: bytes([kind << 4, 0]), st.sampled_from([0, 1, 2, 4, 5, 6, 7, 9, 11, 14, 15])
    ),
)


@settings(max_examples=80, deadline=None)
@given(packets=st.lists(PACKETS, min_size=1, max_size=6))
def test_any_stream_of_packets_ends_as_it_does_with_pahos_reader(packets: list[bytes]) -> None:
    """Valid or not: the same messages queued, and the same end (an error code, paho's
    exception, or none) as paho's reader, which reads a packet a call."""
    data = b"".join(packets)

    async def check() -> None:
        pahos, ours = Wire(V5, bulk=False), Wire(V5, bulk=True)
        try:
            pahos.peer.sendall(data)
            ours.peer.sendall(data)
            assert read_until_done(ours, 3) == read_until_done(pahos, len(packets) + 2)
        finally:
            pahos.close()
            ours.close()

    asyncio.run(check())


@pytest.mark.asyncio
async def test_a_paho_release_it_was_not_checked_against_keeps_pahos_reader_and_acks(
    wires: Callable[..., Wire], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paho.mqtt, "__version__", "2.3.0")
    wire = wires(bulk=False)
    assert not paho_bulk.install(wire.client, lambda: True)
    assert not paho_bulk.installed(wire.client)
    assert isinstance(paho_bulk.acks(wire.client), paho_bulk.PahoAcks)
    wire.feed(publish("a/b", b"read by paho", mid=1))
    assert [m[1] for m in wire.queued()] == [b"read by paho"]
