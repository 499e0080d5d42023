"""Ports for tests' servers: one nobody listens on, outside the kernel's ephemeral range."""

from __future__ import annotations

import random
import socket
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nothing listens on, below the kernel's range of ephemeral ports when it can:
    a port from that range may be taken, between now and the broker's start, by an
    outgoing connection, even the source's own (a client connecting to a port nobody
    listens on can connect to itself, and then reads its own CONNECT)."""
    low = _ephemeral_low()
    for port in _RANDOM.sample(range(10_000, low), k=min(50, max(low - 10_000, 0))):
        with socket.socket() as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux; 32768 elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_RANDOM = random.Random()  # its own, so that tests seeding ``random`` do not share ports
