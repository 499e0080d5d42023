"""A real Prometheus for tests: Debian's ``prometheus`` and ``promtool`` binaries.

``require("promtool")`` returns the binary's path, or fails the test saying how to
install it: CI must never pass by skipping these. ``Prometheus`` runs one server on a
free port with its own storage folder, and answers its HTTP API (instant and range
queries, targets, rules) as plain JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.ports import free_port

HOST = "127.0.0.1"
INSTALL_HINT = (
    "apt-get install prometheus (Debian's package provides /usr/bin/prometheus and "
    "/usr/bin/promtool)"
)
T = TypeVar("T")
Json = dict[str, Any]


def require(binary: str) -> str:
    """The path of ``prometheus`` or ``promtool``; the test fails if it is missing."""
    found = shutil.which(binary, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin"]))
    if found is None:
        pytest.fail(f"{binary} is not installed; these tests need it: {INSTALL_HINT}")
    return found


def get_json(url: str, timeout: float = 5.0) -> Json:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: Json = json.load(response)
        return body


def poll(what: str, check: Callable[[], T | None], timeout: float, every: float = 0.2) -> T:
    """``check()``'s first non-None answer, polled until ``timeout`` seconds have passed.

    Polling is for what happens in another process, which sends no event to wait on.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except (OSError, urllib.error.URLError):
            found = None  # not listening yet
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


class Prometheus:
    """``prometheus`` on 127.0.0.1:<free port>, its TSDB and log in ``folder``."""

    def __init__(self, binary: str, folder: Path, config: str) -> None:
        self.binary = binary
        self.folder = folder
        self.config = folder / "prometheus.yml"
        self.config.write_text(config, "utf-8")
        self.log = folder / "prometheus.log"
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0, attempts: int = 3) -> None:
        """Start it and wait until it is ready; another port if its free port was taken."""
        for attempt in range(1, attempts + 1):
            with self.log.open("wb") as log:
                self.process = subprocess.Popen(
                    [
                        self.binary,
                        f"--config.file={self.config}",
                        f"--storage.tsdb.path={self.folder / 'data'}",
                        f"--web.listen-address={HOST}:{self.port}",
                        "--log.level=warn",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                poll("Prometheus to be ready", self._ready, timeout)
                return
            except AssertionError:
                if attempt == attempts or "address already in use" not in self.log_tail():
                    raise
                self.stop()
                self.port = free_port()
                self.url = f"http://{HOST}:{self.port}"

    def _ready(self) -> bool | None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.log_tail()}")
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
            return True if response.status == 200 else None

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text("utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # -- the HTTP API -----------------------------------------------------------------

    def api(self, path: str, **params: str) -> Json:
        """GET /api/v1/<path>: the whole answer (status, data or errorType and error)."""
        query = urllib.parse.urlencode(params)
        try:
            return get_json(f"{self.url}/api/v1/{path}?{query}")
        except urllib.error.HTTPError as exc:  # 400/422: a bad query, with Prometheus' error
            try:
                body: Json = json.load(exc)
            finally:
                exc.close()
            return body

    def query(self, expr: str) -> Json:
        return self.api("query", query=expr)

    def query_range(self, expr: str, start: float, end: float, step: str = "1s") -> Json:
        return self.api(
            "query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=step
        )

    def targets(self) -> list[Json]:
        active: list[Json] = self.api("targets", state="active")["data"]["activeTargets"]
        return active

    def rules(self) -> list[Json]:
        groups = self.api("rules")["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]
