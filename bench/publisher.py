"""Publish synthetic mentions to an MQTT broker at a set rate, from a process of its own.

    .venv/bin/python bench/publisher.py --port PORT --brands 100 --rate 2000 --seconds 60
    .venv/bin/python bench/publisher.py --port PORT --brands 100 --count 200000   # a flood

Each message is one post (``synthetic.Corpus``) on ``xwatch/mentions/<brand>`` at QoS 1,
stamped with the wall time at which it is sent (``created_at``), so the daemon sees a
live feed. ``--rate 0`` sends as fast as the broker acknowledges, keeping at most
``--window`` messages unacknowledged (the broker, not this process, holds any backlog).

Spikes (for the latency benchmark): from ``--spike-after`` seconds on, every bucket of
``--spike-scale`` seconds (aligned on the epoch, as the daemon's buckets are) gets
``--spike-posts`` crisis posts (defect reports, mostly negative) for each of the next
``--spike-brands`` brands, spread over the first half of the bucket. A brand spikes at
most once. The spikes are listed in the result as ``[brand, bucket end (Unix time)]``.

It speaks MQTT 3.1.1 on a plain socket rather than through paho: paho's Python client
costs about 100 µs of CPU per QoS 1 message here (about 7,000 messages/s at best),
which would make the publisher, not the daemon, the bottleneck, and steal more of the
2 cores. This one costs a few µs per message: one ``sendall`` per batch, acks counted
from the bytes read. At the end it prints one JSON object: what was sent and
acknowledged, when, and the CPU time this process used.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import select
import socket
import sys
import time
from collections import deque

from synthetic import Corpus, brand_ids, iso  # bench/ is on sys.path (scripts run from it)

TOPIC_PREFIX = b"xwatch/mentions/"
MAX_BATCH = 500  # messages per sendall
CONNECT_TIMEOUT = 10.0


def varint(n: int) -> bytes:
    """MQTT's remaining-length encoding."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(client_id: str) -> bytes:
    """CONNECT, MQTT 3.1.1, clean session, keep-alive off (we send all the time)."""
    ident = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x00" + len(ident).to_bytes(2, "big") + ident
    return b"\x10" + varint(len(body)) + body


def publish_packet(topic: bytes, payload: bytes, packet_id: int) -> bytes:
    """PUBLISH at QoS 1."""
    body = len(topic).to_bytes(2, "big") + topic + packet_id.to_bytes(2, "big") + payload
    return b"\x32" + varint(len(body)) + body


class Connection:
    """A socket to the broker that counts the PUBACKs it reads."""

    def __init__(self, host: str, port: int, client_id: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(connect_packet(client_id))
        connack = self._read_exactly(4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise ConnectionError(f"broker refused the connection: {connack!r}")
        self.sock.settimeout(None)
        self.buffer = b""
        self.acked = 0
        self.next_id = 0

    def _read_exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            data += chunk
        return data

    def send(self, messages: list[tuple[bytes, bytes]]) -> None:
        packets = []
        for topic, payload in messages:
            self.next_id = self.next_id % 65535 + 1
            packets.append(publish_packet(topic, payload, self.next_id))
        self.sock.sendall(b"".join(packets))

    def read_acks(self, timeout: float) -> None:
        """Wait up to ``timeout`` for bytes from the broker; count the PUBACKs in them."""
        readable, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not readable:
            return
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data = self.buffer + chunk
        pos = 0
        while pos + 2 <= len(data):
            length, shift, i = 0, 0, pos + 1
            while i < len(data):
                length |= (data[i] & 0x7F) << shift
                shift += 7
                i += 1
                if not data[i - 1] & 0x80:
                    break
            else:
                break  # the length is not complete yet
            if i + length > len(data):
                break
            if data[pos] >> 4 == 4:  # PUBACK
                self.acked += 1
            pos = i + length
        self.buffer = data[pos:]

    def close(self) -> None:
        try:
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        finally:
            self.sock.close()


class Spikes:
    """The crisis posts still to send, by due time, and the spikes planned so far."""

    def __init__(self, args: argparse.Namespace, brands: list[str], start: float) -> None:
        self.scale = args.spike_scale
        self.per_bucket = args.spike_brands
        self.posts = args.spike_posts
        self.pool = deque(brands)
        self.pending: deque[tuple[float, str]] = deque()
        self.planned: list[tuple[str, float]] = []
        self.next_bucket = math.ceil((start + args.spike_after) / self.scale) * self.scale

    def due(self, now: float, until: float) -> list[str]:
        """Brands whose crisis posts are due at ``now``; plans the buckets up to ``now``."""
        if self.per_bucket <= 0:
            return []
        while self.next_bucket <= now and self.next_bucket + self.scale <= until:
            bucket = self.next_bucket
            self.next_bucket += self.scale
            for _ in range(min(self.per_bucket, len(self.pool))):
                brand = self.pool.popleft()
                self.planned.append((brand, bucket + self.scale))
                for j in range(self.posts):
                    self.pending.append((bucket + self.scale * (0.1 + 0.4 * j / self.posts), brand))
            self.pending = deque(sorted(self.pending))
        brands = []
        while self.pending and self.pending[0][0] <= now:
            brands.append(self.pending.popleft()[1])
        return brands


def run(args: argparse.Namespace) -> dict[str, object]:
    corpus = Corpus.load()
    brands = brand_ids(args.brands)
    rng = random.Random(args.seed)
    topics = [TOPIC_PREFIX + b.encode() for b in brands]
    conn = Connection(args.host, args.port, f"xwatch-bench-pub-{os.getpid()}")
    started_wall = time.time()
    started = time.monotonic()
    deadline = started + args.seconds if args.seconds else math.inf
    # Spikes go to the last brands first, so that a small --brands run still has calm ones.
    spikes = Spikes(args, brands[::-1], started_wall)
    spike_until = started_wall + (args.seconds or 0.0)
    sent = background = 0
    serial = args.first_id
    while True:
        now = time.monotonic()
        if now >= deadline or (args.count and background >= args.count and not spikes.pending):
            break
        room = args.window - (sent - conn.acked)
        # the posts due by now (at --rate), or as many as the window has room for
        want = int((now - started) * args.rate) - background if args.rate > 0 else room
        if args.count:
            want = min(want, args.count - background)
        wall = time.time()
        stamp = iso(wall)
        messages: list[tuple[bytes, bytes]] = []
        for brand in spikes.due(wall, spike_until)[: max(room, 0)]:
            serial += 1
            template = rng.choice(corpus.crisis)
            name = brand.encode()
            payload = corpus.fill(template, b"%d" % serial, stamp, name)
            messages.append((TOPIC_PREFIX + name, payload))
        for _ in range(max(0, min(want, room - len(messages), MAX_BATCH))):
            serial += 1
            index = rng.randrange(len(brands))
            template = rng.choice(corpus.calm)
            payload = corpus.fill(template, b"%d" % serial, stamp, brands[index].encode())
            messages.append((topics[index], payload))
            background += 1
        if messages:
            conn.send(messages)
            sent += len(messages)
        # wait for acks until the next post is due (at most 50 ms); not at all after a send
        wait = started + (background + 1) / args.rate - time.monotonic() if args.rate else 0.05
        conn.read_acks(min(wait, 0.05) if not messages else 0.0)
    ack_deadline = time.monotonic() + 30.0
    while conn.acked < sent and time.monotonic() < ack_deadline:
        conn.read_acks(0.05)
    ended_wall = time.time()
    conn.close()
    return {
        "sent": sent,
        "background": background,
        "acked": conn.acked,
        "started": started_wall,
        "ended": ended_wall,
        "cpu_seconds": time.process_time(),
        "spikes": spikes.planned,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--brands", type=int, default=100)
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s (0: a flood)")
    parser.add_argument("--seconds", type=float, default=0.0, help="stop after (0: --count)")
    parser.add_argument("--count", type=int, default=0, help="background messages to send")
    parser.add_argument("--window", type=int, default=1000, help="unacknowledged at most")
    parser.add_argument("--spike-after", type=float, default=0.0)
    parser.add_argument("--spike-scale", type=int, default=10)
    parser.add_argument("--spike-brands", type=int, default=0, help="brands spiking per bucket")
    parser.add_argument("--spike-posts", type=int, default=40)
    parser.add_argument("--first-id", type=int, default=0, help="post ids start after this")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    if not args.seconds and not args.count:
        parser.error("give --seconds or --count")
    json.dump(run(args), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
