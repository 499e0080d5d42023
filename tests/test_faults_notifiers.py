"""Faults with real parts: notifiers whose far end is down for a while, at the daemon level.

The daemon runs in-process with its web server on a free port and the real
notifiers built from the config: email against an SMTP port where nothing listens
yet (then aiosmtpd starts there), Slack against the local Slack answering 500 and
429 for as long as the test says (a "minute" shrunk to a few retries). While a
notifier fails, ``xwatch_notifier_failing`` is 1 for it and ``/readyz`` (still 200:
the outbox keeps what waits) names it; once the far end is back, the notice goes
out exactly once and both say so.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiosmtpd.smtp import SMTP

from tests.factories import GatedSource, mention
from tests.fake_slack import TOKEN as SLACK_TOKEN
from tests.fake_slack import FakeSlack
from tests.ports import free_port
from tests.smtp_server import Recorder
from tests.test_outbox import fire
from tests.waiting import eventually
from xwatch.daemon import Daemon
from xwatch.settings import load_settings


def write_config(project: Path, notifiers: str) -> Path:
    config = project / "notifiers.yaml"
    config.write_text(
        "brands:\n"
        "  - id: kettlebird\n"
        "    name: Kettlebird\n"
        '    terms: ["kettlebird"]\n'
        "sources:\n"
        "  - type: demo\n"
        "server:\n"
        "  host: 127.0.0.1\n"
        "  port: 0\n"
        "store:\n"
        "  path: state.sqlite3\n"
        "notifiers:\n"
        f"{notifiers}"
        "  console: {type: console}\n"
        "alerting:\n"
        "  retry_initial_seconds: 0.02\n"
        "  retry_max_seconds: 0.1\n"
        "  repeat_after_seconds: 0\n"
        "drain_timeout_seconds: 2\n",
        "utf-8",
    )
    return config


@asynccontextmanager
async def running(config: Path) -> AsyncIterator[tuple[Daemon, aiohttp.ClientSession]]:
    source = GatedSource([mention("kettlebird is fine", at=13 * 3600)])
    daemon = Daemon(load_settings(config), sources=[source])
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.serving.wait(), 10)
        async with aiohttp.ClientSession(daemon.web_url) as http:
            yield daemon, http
    finally:
        daemon.stop.set()
        source.finish.set()
        await asyncio.wait_for(task, 10)


def sample(daemon: Daemon, which: tuple[str, dict[str, str]]) -> float:
    return daemon.registry.get_sample_value(*which) or 0.0


async def readyz(http: aiohttp.ClientSession) -> tuple[int, dict[str, Any]]:
    async with http.get("/readyz") as response:
        return response.status, await response.json()


async def metric(http: aiohttp.ClientSession, line_start: str) -> float:
    """One sample from the daemon's /metrics, by the start of its line (name{labels})."""
    async with http.get("/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} not in /metrics")


@pytest.mark.asyncio
async def test_smtp_refusing_connections_is_retried_surfaced_then_delivered(
    project: Path,
) -> None:
    port = free_port()  # nothing listens there yet: every connection is refused
    config = write_config(
        project,
        "  email:\n"
        "    type: email\n"
        "    host: 127.0.0.1\n"
        f"    port: {port}\n"
        "    security: none\n"
        "    sender: xwatch@example.com\n"
        "    recipients: [pr@example.com]\n"
        "    chart: false\n"
        "    timeout_seconds: 5\n",
    )
    failing = 'xwatch_notifier_failing{channel="email"}'
    retried = ("xwatch_notifications_total", {"channel": "email", "outcome": "retried"})
    sent = 'xwatch_notifications_total{channel="email",outcome="sent"}'
    async with running(config) as (daemon, http):
        fire(daemon, ("email", "console"))

        await eventually(lambda: sample(daemon, retried) >= 2, "two retries")
        assert await metric(http, failing) == 1
        assert await metric(http, sent) == 0
        assert await readyz(http) == (
            200,
            {"ready": True, "reason": "ok, but retrying deliveries: email"},
        )
        assert await metric(http, 'xwatch_outbox_depth{channel="email"}') == 1

        recorder = Recorder()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(recorder, hostname="localhost"), "127.0.0.1", port
        )
        try:
            await asyncio.wait_for(daemon.outboxes["email"].join(), 10)
        finally:
            server.close()
            await server.wait_closed()
        assert len(recorder.received) == 1  # one message, not one per attempt
        assert await metric(http, sent) == 1
        assert await metric(http, failing) == 0
        assert await readyz(http) == (200, {"ready": True, "reason": "ok"})


@pytest.mark.asyncio
async def test_slack_failing_for_a_while_is_ridden_out_and_recovered_from(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "signing-secret")
    failing = 'xwatch_notifier_failing{channel="slack"}'
    retried = ("xwatch_notifications_total", {"channel": "slack", "outcome": "retried"})
    async with FakeSlack() as slack:
        # down "for a minute": every call fails until the test says it is back
        for _ in range(500):
            slack.fail(method="chat.postMessage", status=500, error="internal_error")
            slack.fail(method="chat.postMessage", status=429, error="ratelimited", retry_after=0)
        config = write_config(
            project,
            "  slack:\n"
            "    type: slack\n"
            "    channel: C0ALERTS\n"
            f"    api_url: {slack.api_url}\n"
            "    chart: false\n",
        )
        async with running(config) as (daemon, http):
            fire(daemon, ("slack", "console"))

            await eventually(lambda: sample(daemon, retried) >= 10, "ten retries")
            assert await metric(http, failing) == 1
            status, body = await readyz(http)
            assert (status, body["reason"]) == (200, "ok, but retrying deliveries: slack")
            assert await metric(http, 'xwatch_outbox_depth{channel="console"}') == 0
            assert slack.top_level() == []

            slack.failures.clear()  # Slack is back
            await asyncio.wait_for(daemon.outboxes["slack"].join(), 10)
            assert len(slack.top_level()) == 1
            assert await metric(http, failing) == 0
            failed = 'xwatch_notifications_total{channel="slack",outcome="failed"}'
            assert await metric(http, failed) == 0
            assert await readyz(http) == (200, {"ready": True, "reason": "ok"})
            (incident_id,) = daemon.book.incidents
            record = await daemon.incident(incident_id)
        assert record is not None
        (slack_delivery,) = [d for d in record.deliveries if d.channel == "slack"]
        assert slack_delivery.state == "delivered" and slack_delivery.attempts >= 11
