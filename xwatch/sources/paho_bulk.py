"""paho-mqtt's socket reading and acknowledging, in bulk: how the MQTT source uses it.

paho-mqtt 2.x reads one packet per call of its reader (``Client._packet_read``), in
four ``recv`` calls at least (the command byte, the remaining length byte by byte, the
body). It decodes a PUBLISH into an ``MQTTMessage`` (its MQTT 5 properties into a
``Properties``), logs it, matches the topic against its per-topic callbacks and hands
the message to aiomqtt, which wraps it in an ``aiomqtt.Message`` (checking the topic
again) and queues it. Each acknowledgement (PUBACK) is a packet of its own in paho's
outgoing queue, written with a ``send`` of its own. That was about 25 µs a message
read and a few more acknowledged on this 2-core machine, a quarter of what the daemon
spent on a post arriving over MQTT (``bench/end_to_end.py``).

``BulkReader`` takes the place of paho's reader on one client. Each call reads what the
socket holds, up to 64 KiB in one ``recv``, and cuts it into packets:

* a PUBLISH of QoS 0 or 1 goes straight into aiomqtt's queue as an ``aiomqtt.Message``
  (its ``Topic`` made once per topic string), as aiomqtt's ``_on_message`` would put it;
  with paho's automatic acks (``manual_ack`` off), a QoS 1 message is acknowledged right
  after, as paho does;
* every other packet (CONNACK, SUBACK, PINGRESP, DISCONNECT, a QoS 2 PUBLISH, a PUBLISH
  whose topic is not UTF-8 or that does not parse) goes to paho's own handler
  (``_packet_handle``), with paho's reader state set as paho's reader would have set it:
  paho judges it, answers it, or ends the connection;
* the end of a packet not yet arrived waits in the buffer for the next call.

Left out, on purpose: a fast-path message's MQTT 5 properties are skipped
(``message.properties`` is None: xwatch reads none); no log line per message; paho's
per-topic callbacks (``message_callback_add``) are not consulted, so ``install`` refuses
a client that has any, or whose ``on_message`` is not aiomqtt's.

``BulkAcks`` gathers the PUBACKs of QoS 1 messages taken by the consumer and queues them
in paho's outgoing queue as one packet (the same bytes as paho's, one after the other),
when ``flush`` is called: the MQTT source flushes before it waits or lets the event
loop run (nothing is written before then anyway), every ``ACKS_PER_WRITE`` acks, and
when the connection closes.

``install(client)`` checks paho's release (``PAHO_RELEASES``: 2.2; xwatch does not pin
paho, and its internals are not an API) and paho's and aiomqtt's layout (aiomqtt 2.5),
and returns False, changing nothing, on another: the source then reads and acknowledges
at paho's own speed, and says so once. Re-check, and add the release, when upgrading.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt as paho_mqtt
from paho.mqtt import client as paho_client
from paho.mqtt.client import MQTTv5
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes

READ_SIZE = 65536  # bytes asked of the socket at each call
ACKS_PER_WRITE = 25  # PUBACKs gathered at most before they are queued for writing
TOPICS_KEPT = 4096  # topics whose ``Topic`` is kept for the next message on them
PAHO_RELEASES = ("2.2.",)  # the paho-mqtt releases whose internals this was checked against

_PUBLISH = PacketTypes.PUBLISH << 4
_PUBACK = PacketTypes.PUBACK << 4
_SUCCESS = MQTTErrorCode.MQTT_ERR_SUCCESS
_AGAIN = MQTTErrorCode.MQTT_ERR_AGAIN
_CONN_LOST = MQTTErrorCode.MQTT_ERR_CONN_LOST
_PROTOCOL = MQTTErrorCode.MQTT_ERR_PROTOCOL
_PAHO_READER = ("_packet_read", "_packet_handle", "_in_packet", "_sock_recv", "_sock")
_PAHO_STATE = ("_manual_ack", "_protocol", "_msgtime_mutex", "_send_puback", "_easy_log")
_PAHO_WRITER = ("_packet_queue", "ack")


class BulkReader:
    """Reads one paho client's socket in bulk, in place of paho's ``_packet_read``."""

    def __init__(self, client: aiomqtt.Client, has_room: Callable[[], bool]) -> None:
        self._paho: Any = client._client
        self._queue: asyncio.Queue[aiomqtt.Message] = client._queue
        self._logger: logging.Logger = client._logger
        self._has_room = has_room
        self._buffer = bytearray()
        self._socket: object = None  # the connection the buffer's bytes came from
        self._held = False  # whole packets wait in the buffer: the consumer had no room
        self._topics: dict[bytes, aiomqtt.Topic] = {}

    def read(self) -> MQTTErrorCode:
        """paho's ``_packet_read``: read what is waiting and handle every whole packet.

        The same results as paho's: ``MQTT_ERR_AGAIN`` when nothing could be read,
        ``MQTT_ERR_CONN_LOST`` when the connection is closed or broken, a handler's error
        as it returned it, else ``MQTT_ERR_SUCCESS``. While the consumer has no room
        (``has_room``), the packets read stay in the buffer, in order, and nothing more
        is read: the next call, once there is room, handles them first.
        """
        paho = self._paho
        buffer = self._buffer
        if paho._sock is not self._socket:  # a new connection: nothing carries over
            buffer.clear()
            self._held = False
            self._socket = paho._sock
        if self._held:
            rc = self._handle_packets()
            if rc != _SUCCESS or self._held:
                return rc
        try:
            data = paho._sock_recv(READ_SIZE)
        except BlockingIOError:
            return _AGAIN
        except TimeoutError as exc:
            paho._easy_log(paho_client.MQTT_LOG_ERR, "timeout on socket: %s", exc)
            return _CONN_LOST
        except OSError as exc:
            paho._easy_log(paho_client.MQTT_LOG_ERR, "failed to receive on socket: %s", exc)
            return _CONN_LOST
        if not data:
            return _CONN_LOST
        buffer += data
        rc = self._handle_packets()
        with paho._msgtime_mutex:
            paho._last_bytes_received = paho_client.time_func()
        return rc

    def _handle_packets(self) -> MQTTErrorCode:
        """Handle the whole packets at the start of the buffer; keep the rest."""
        buffer = self._buffer
        has_room = self._has_room
        end = len(buffer)
        pos = 0
        rc = _SUCCESS
        self._held = False
        while end - pos >= 2:
            if not has_room():
                self._held = True  # what is left waits; the next call starts with it
                break
            command = buffer[pos]
            length = buffer[pos + 1]
            start = pos + 2
            if length & 0x80:  # a remaining length of 2 to 4 bytes
                length, start = _variable_integer(buffer, pos + 1, end)
                if length < 0:
                    if start < 0:
                        rc = _PROTOCOL  # more than 4 bytes: paho's verdict too
                    break
            stop = start + length
            if stop > end:
                break  # the rest of the packet is still on its way
            pos = stop
            if command & 0xF0 == _PUBLISH and command & 0x06 < 0x04:
                handled = self._publish(command, start, stop)
                if handled is not None:
                    if handled != _SUCCESS:
                        rc = handled
                        break
                    continue
            rc = self._paho_handles(command, bytearray(buffer[start:stop]))
            if rc != _SUCCESS or self._paho._sock is not self._socket:
                break  # an error, or paho closed the connection (the rest is not for us)
        del buffer[:pos]
        return rc

    def _publish(self, command: int, start: int, stop: int) -> MQTTErrorCode | None:
        """Queue a PUBLISH of QoS 0 or 1 (``buffer[start:stop]`` is its body); None when
        paho should judge it instead (a topic that is not UTF-8, a body too short)."""
        buffer = self._buffer
        paho = self._paho
        if stop - start < 2:
            return None
        topic_end = start + 2 + (buffer[start] << 8 | buffer[start + 1])
        qos = (command >> 1) & 0x03
        body = topic_end + (2 if qos else 0)
        if body > stop:
            return None
        name = bytes(buffer[start + 2 : topic_end])
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topic(name)
            if topic is None:
                return None
        mid = buffer[topic_end] << 8 | buffer[topic_end + 1] if qos else 0
        if paho._protocol == MQTTv5:  # skip the properties
            properties, body = _variable_integer(buffer, body, stop)
            if properties < 0 or body + properties > stop:
                return None
            body += properties
        message = aiomqtt.Message(
            topic, bytes(buffer[body:stop]), qos, bool(command & 1), mid, None
        )
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self._logger.warning("Message queue is full. Discarding message.")
        if qos == 1 and not paho._manual_ack:
            rc: MQTTErrorCode = paho._send_puback(mid)
            return rc
        return _SUCCESS

    def _topic(self, name: bytes) -> aiomqtt.Topic | None:
        """The ``Topic`` for a topic's bytes, kept for the next message on it; None for a
        name paho or aiomqtt would refuse (not UTF-8, empty, a wildcard in it)."""
        try:
            topic = aiomqtt.Topic(name.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        if len(self._topics) >= TOPICS_KEPT:
            self._topics.clear()
        self._topics[name] = topic
        return topic

    def _paho_handles(self, command: int, packet: bytearray) -> MQTTErrorCode:
        """Hand a whole packet to paho's handler, as paho's own reader does."""
        paho = self._paho
        paho._in_packet = _in_packet(command, packet)
        try:
            rc: MQTTErrorCode = paho._packet_handle()
        except MalformedPacket as exc:
            paho._easy_log(paho_client.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = _PROTOCOL
        finally:
            paho._in_packet = _in_packet(0, bytearray())
        return rc


class BulkAcks:
    """The PUBACKs of one client's QoS 1 messages, queued for writing in batches."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self._paho: Any = client._client
        self._packet = bytearray()
        self._count = 0

    def add(self, mid: int, qos: int) -> None:
        """Acknowledge a message (in order); QoS 2 is left to paho, in its place."""
        if qos != 1:
            self.flush()
            self._paho.ack(mid, qos)
            return
        self._packet += _PUBACK_HEADER
        self._packet += mid.to_bytes(2, "big")
        self._count += 1
        if self._count >= ACKS_PER_WRITE:
            self.flush()

    def flush(self) -> None:
        """Queue the gathered PUBACKs in paho's outgoing queue, as one packet."""
        if not self._count:
            return
        packet, self._packet, self._count = bytes(self._packet), bytearray(), 0
        self._paho._packet_queue(_PUBACK, packet, 0, 0)


_PUBACK_HEADER = bytes((_PUBACK, 2))  # a PUBACK's fixed header: type, remaining length 2


class PahoAcks:
    """paho's own acknowledgements, a packet and a write each (a paho of another layout)."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self._paho: Any = client._client

    def add(self, mid: int, qos: int) -> None:
        """Acknowledge a message now (paho queues the packet)."""
        self._paho.ack(mid, qos)

    def flush(self) -> None:
        """Nothing is held back."""


def acks(client: aiomqtt.Client) -> BulkAcks | PahoAcks:
    """How to acknowledge ``client``'s messages: in batches where paho's layout allows."""
    return BulkAcks(client) if layout_known(client) else PahoAcks(client)


def _in_packet(command: int, packet: bytearray) -> dict[str, Any]:
    """paho's reader state with a whole packet read (or none: ``command`` 0)."""
    return {
        "command": command,
        "have_remaining": 1 if command else 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": len(packet),
        "packet": packet,
        "to_process": 0,
        "pos": 0,
    }


def _variable_integer(buffer: bytearray, pos: int, end: int) -> tuple[int, int]:
    """An MQTT variable byte integer (a fixed header's remaining length, an MQTT 5
    properties' length) at ``buffer[pos]``, and the position after it; (-1, 0) when its
    bytes do not all lie before ``end``, (-1, -1) when it is longer than the 4 bytes MQTT
    allows."""
    value = 0
    for count in range(4):
        if pos + count >= end:
            return -1, 0
        byte = buffer[pos + count]
        value += (byte & 0x7F) << (7 * count)
        if not byte & 0x80:
            return value, pos + count + 1
    return -1, -1


def install(client: aiomqtt.Client, has_room: Callable[[], bool]) -> bool:
    """Have ``client`` read its socket with a ``BulkReader`` that queues messages while
    ``has_room()`` says the consumer has room for more; whether it could (False:
    paho's or aiomqtt's layout is not the expected one, or the client has message
    callbacks the reader would not honour; nothing was changed)."""
    if not layout_known(client):
        return False
    paho: Any = client._client
    if not isinstance(getattr(client, "_queue", None), asyncio.Queue):
        return False
    if not isinstance(getattr(client, "_logger", None), logging.Logger):
        return False
    if paho.on_message != getattr(client, "_on_message", None):
        return False
    if getattr(getattr(paho, "_on_message_filtered", None), "_root", None) is None:
        return False
    if paho._on_message_filtered._root._children:
        return False  # per-topic callbacks: only paho's reader honours them
    if not hasattr(paho_client, "time_func"):
        return False
    paho._packet_read = BulkReader(client, has_room).read
    return True


def layout_known(client: aiomqtt.Client) -> bool:
    """Whether paho and aiomqtt have the internals ``BulkReader`` and ``BulkAcks`` use:
    a paho release they were checked against (``PAHO_RELEASES``: its internals are not
    an API, and xwatch does not pin paho), with the attributes they touch."""
    if not paho_mqtt.__version__.startswith(PAHO_RELEASES):
        return False
    paho = getattr(client, "_client", None)
    names = _PAHO_READER + _PAHO_STATE + _PAHO_WRITER
    return paho is not None and all(hasattr(paho, name) for name in names)


def installed(client: aiomqtt.Client) -> bool:
    """Whether ``client`` reads with a ``BulkReader``."""
    reader = getattr(getattr(client, "_client", None), "__dict__", {}).get("_packet_read")
    return isinstance(getattr(reader, "__self__", None), BulkReader)
