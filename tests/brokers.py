"""A real MQTT broker for tests: our own mosquitto on a free port, stoppable and restartable.

``Mosquitto.find()`` looks for the binary on PATH and in the sbin folders. Without it,
tests may use a broker already listening on 127.0.0.1:1883 (``ExternalBroker``), which
cannot be stopped nor configured: the tests that need that fail, saying why. With
neither, every broker test fails: they never pass by doing nothing.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest

from tests.ports import free_port

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 10.0


def accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def password_line(username: str, password: str) -> str:
    """A line of a mosquitto 2 password file (what ``mosquitto_passwd`` writes)."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    encoded = [base64.b64encode(part).decode() for part in (salt, digest)]
    return f"{username}:$7$101${encoded[0]}${encoded[1]}"


class Mosquitto:
    """One mosquitto process at a time, on a fixed port, with a persistence folder."""

    def __init__(
        self, binary: str, folder: Path, port: int | None = None, extra: Sequence[str] = ()
    ) -> None:
        self.binary = binary
        self.folder = folder
        self.host = HOST
        self.port = port or free_port()
        self.log = folder / "mosquitto.log"
        self.config = folder / "mosquitto.conf"
        self.process: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {self.port} {HOST}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {folder}/",
            "log_type all",
            *extra,  # listener options (password_file, certfile, ...) after the listener
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to "mosquitto", who cannot write here
        self.config.write_text("\n".join(lines) + "\n", "utf-8")

    @staticmethod
    def find() -> str | None:
        path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
        return shutil.which("mosquitto", path=path)

    def start(self) -> None:
        assert self.process is None, "already running"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not accepts_connections(self.host, self.port):
            if self.process.poll() is not None:
                self.process = None
                pytest.fail(f"mosquitto exited at start:\n{self.log_text()}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"mosquitto did not listen on {self.port} in time:\n{self.log_text()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM, which makes mosquitto save its persistence file, then wait for it."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log.read_text("utf-8", errors="replace")[-4000:]


class ExternalBroker:
    """A broker we did not start (127.0.0.1:1883): usable, but not stoppable."""

    def __init__(self, host: str = HOST, port: int = 1883) -> None:
        self.host = host
        self.port = port

    def start(self) -> None:
        no_binary("starting the broker")

    def stop(self) -> None:
        no_binary("stopping the broker")

    def restart(self) -> None:
        no_binary("restarting the broker")


def no_binary(what: str) -> NoReturn:
    """Without a mosquitto binary, what needs one fails (a test never passes by doing nothing)."""
    pytest.fail(
        f"{what} needs our own mosquitto and there is no binary: install mosquitto "
        "(Debian: apt-get install mosquitto; .ci/run does it)"
    )


@contextmanager
def started_mosquitto(folder: Path, what: str) -> Iterator[Mosquitto]:
    """Our own mosquitto (persistence in ``folder``) for the length of a ``with``; ``what``
    names the test in the failure when there is no binary."""
    binary = Mosquitto.find()
    if binary is None:
        no_binary(what)
    broker = Mosquitto(binary, folder)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
