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

from tests.factories import GatedSource, alert, mention
from tests.fake_slack import TOKEN as SLACK_TOKEN
from tests.fake_slack import FakeSlack
from tests.ports import free_port
from tests.smtp_server import Recorder
from tests.test_outbox import fire
from tests.waiting import eventually
from xwatch.daemon import Daemon
from xwatch.model import AlertEvent, EventKind
from xwatch.settings import load_settings


def email_notifier(port: int) -> str:
    """The ``email`` notifier's config, to an SMTP server on ``port`` without TLS."""
    return (
        "  email:\n"
        "    type: email\n"
        "    host: 127.0.0.1\n"
        f"    port: {port}\n"
        "    security: none\n"
        "    sender: xwatch@example.com\n"
        "    recipients: [pr@example.com]\n"
        "    chart: false\n"
    )


def slack_notifier(api_url: str) -> str:
    """The ``slack`` notifier's config, to the local Slack at ``api_url``."""
    return (
        "  slack:\n"
        "    type: slack\n"
        "    channel: C0ALERTS\n"
        f"    api_url: {api_url}\n"
        "    chart: false\n"
    )


def write_config(project: Path, notifiers: str, alerting: str = "") -> Path:
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
        f"{alerting}"
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
        email_notifier(port) + "    timeout_seconds: 5\n",
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
            slack_notifier(slack.api_url),
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


async def _latin1_relay(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, code: bytes
) -> None:
    """An SMTP relay that refuses the sender in Latin-1, not UTF-8 (as old relays do)."""
    writer.write(b"220 relay.example ESMTP\r\n")
    while line := await reader.readline():
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            writer.write(b"250 relay.example\r\n")
        elif verb == b"MAIL":
            writer.write(code + b" 5.7.1 Zugriff f\xfcr Absender verweigert\r\n")
        elif verb == b"QUIT":
            writer.write(b"221 bye\r\n")
            await writer.drain()
            break
        else:
            writer.write(b"250 ok\r\n")
        await writer.drain()
    writer.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(("code", "outcome"), [(b"550", "failed"), (b"451", "retried")])
async def test_a_refusal_that_is_not_utf8_is_counted_and_the_daemon_goes_on(
    project: Path, code: bytes, outcome: str
) -> None:
    """aiosmtplib keeps the reply's bytes as lone surrogates; the store cannot write
    those, and the failed write used to end the daemon (and again at each start, as
    the notice stayed pending)."""
    server = await asyncio.start_server(lambda r, w: _latin1_relay(r, w, code), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = write_config(
        project,
        email_notifier(port),
    )
    counted = ("xwatch_notifications_total", {"channel": "email", "outcome": outcome})
    try:
        async with running(config) as (daemon, http):
            fire(daemon, ("email", "console"))
            await eventually(lambda: sample(daemon, counted) >= 1, f"the email {outcome}")
            assert (await readyz(http))[0] == 200  # still running, still taking mentions
            assert daemon.records is not None
            [record] = [daemon.records.incident_record(i.id) for i in daemon.records.incidents()]
            assert record is not None
            errors = [d.last_error for d in record.deliveries if d.channel == "email"]
            assert errors and "Zugriff f r Absender verweigert" in errors[0]
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_a_retry_after_of_years_is_waited_no_longer_than_giving_up(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The far end's Retry-After is honoured, but never past ``give_up_after_seconds``:
    a billion seconds used to park the channel's queue for good."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "signing-secret")
    async with FakeSlack() as slack:
        slack.fail(method="chat.postMessage", status=429, error="ratelimited", retry_after=10**9)
        config = write_config(
            project,
            slack_notifier(slack.api_url),
            alerting="  give_up_after_seconds: 0.5\n",
        )
        async with running(config) as (daemon, _http):
            fire(daemon, ("slack", "console"))
            other = alert(brand="otterpot", channels=("slack", "console"))
            daemon._dispatch([AlertEvent(EventKind.FIRING, other, other.signal.end)])
            await asyncio.wait_for(daemon.outboxes["slack"].join(), 10)
        assert len(slack.top_level()) == 2  # tried again within 0.5 s: both went out
