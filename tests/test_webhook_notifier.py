"""The webhook notifier against a real local aiohttp receiver: the xwatch and PagerDuty
bodies, the signature (checked by the ingest webhook's own handler), the idempotency
key, and how each answer maps to a temporary or permanent failure."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestServer

from tests import factories
from tests.ports import free_port
from tests.test_email import hostile_notice
from xwatch.alerting import PermanentFailure, TemporaryFailure
from xwatch.alerting.codec import from_json
from xwatch.alerting.incidents import Incident, NoticeKind
from xwatch.alerting.webhook import WebhookNotifier, parse_retry_after
from xwatch.config import WebhookNotifierConfig, WebhookSourceConfig
from xwatch.errors import ConfigError
from xwatch.sources.webhook import WebhookIngest, sign

SECRET = "shared-secret-for-tests"
ROUTING_KEY = "R0UTINGKEY0123456789abcdef012345"
ENV = {"HOOK_SECRET": SECRET, "PD_ROUTING_KEY": ROUTING_KEY}
NOW = 1_800_000_000.0
BASE = "https://xwatch.acme.example/incidents/"
HEADLINE = "[CRITICAL] kettlebird: negative share 41% (usual 9%)"
INCIDENT = "kettlebird-20261116-130000"


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every request and answers with the next of ``answers`` (202 when none)."""

    answers: list[web.Response] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    hold: asyncio.Event | None = None  # when set: wait for it before answering

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Request(request.path, dict(request.headers), body))
        if self.hold is not None:
            await self.hold.wait()
        if self.answers:
            return self.answers.pop(0)
        return web.json_response({"status": "success"}, status=202)


@dataclass
class Running:
    receiver: Receiver
    server: BaseTestServer

    def url(self, path: str = "/hook") -> str:
        return str(self.server.make_url(path))


@pytest_asyncio.fixture
async def running() -> AsyncIterator[Running]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        yield Running(receiver, server)
    if receiver.hold is not None:
        receiver.hold.set()


def hook(url: str, **changes: Any) -> WebhookNotifierConfig:
    values: dict[str, Any] = {"type": "webhook", "url": url, "timeout_seconds": 10.0}
    return WebhookNotifierConfig(**(values | changes))


def notifier(url: str, *, secret: str | None = SECRET, **changes: Any) -> WebhookNotifier:
    return WebhookNotifier(hook(url, **changes), "hook", secret, None, BASE, now=lambda: NOW)


def pagerduty(url: str) -> WebhookNotifier:
    config = hook(url, format="pagerduty", routing_key_env="PD_ROUTING_KEY")
    return WebhookNotifier.from_config("pd", config, incident_url_base=BASE, env=ENV)


# --- the xwatch format -------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_xwatch_body_is_signed_and_keyed_by_the_notice(running: Running) -> None:
    notice = hostile_notice()
    await notifier(running.url()).send(notice)

    [request] = running.receiver.requests
    headers = request.headers
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == notice.id
    assert headers["X-Xwatch-Timestamp"] == str(int(NOW))
    assert headers["X-Xwatch-Signature"] == sign(SECRET.encode(), int(NOW), request.body)

    body = request.json()
    assert set(body) == {
        "version",
        "notice",
        "incident",
        "headline",
        "status",
        "summary",
        "links",
        "detail",
    }
    assert body["version"] == 1
    assert body["notice"] == {
        "id": notice.id,
        "kind": "opened",
        "at": "2026-11-16T13:00:00+00:00",
        "text": "Negative share spike",
        "line": "Opened: Negative share spike",
    }
    assert body["incident"] == {
        "id": INCIDENT,
        "brand": "kettlebird",
        "state": "firing",
        "severity": "critical",
        "title": "Negative share spike",
        "opened_at": "2026-11-16T13:00:00+00:00",
        "resolved_at": None,
        "acknowledged_by": "",
        "url": BASE + INCIDENT,
    }
    assert body["headline"] == HEADLINE
    assert body["status"] == "firing since 2026-11-16 13:00 UTC"
    assert body["summary"]["negative_share"] == 0.41
    assert body["summary"]["terms"] == ["exploded", "refund"]
    # texts are raw: the receiver escapes them for its medium
    assert (
        body["summary"]["posts"][0]["text"] == "<script>alert(1)</script> my kettlebird caught fire"
    )
    assert body["links"] == [
        {"href": BASE + INCIDENT, "text": f"Incident {INCIDENT}"},
        {
            "href": "http://127.0.0.1:9464/playbooks/complaint-wave",
            "text": "Playbook: Customer complaint wave",
        },
    ]
    assert from_json(Incident, body["detail"]) == notice.incident


@pytest.mark.asyncio
async def test_a_resent_notice_carries_the_same_key_and_body(running: Running) -> None:
    resolved = hostile_notice(NoticeKind.RESOLVED)
    webhook = notifier(running.url())
    await webhook.send(resolved)
    await webhook.send(resolved)

    first, second = running.receiver.requests
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == resolved.id
    assert first.body == second.body
    body = first.json()
    assert body["notice"]["kind"] == "resolved"
    assert body["incident"]["state"] == "resolved"
    assert body["incident"]["resolved_at"] == "2026-11-16T13:03:00+00:00"


@pytest.mark.asyncio
async def test_without_a_secret_nothing_is_signed(running: Running) -> None:
    await notifier(running.url(), secret=None).send(hostile_notice())

    [request] = running.receiver.requests
    assert "X-Xwatch-Signature" not in request.headers
    assert "X-Xwatch-Timestamp" not in request.headers
    assert request.headers["Idempotency-Key"]


class IngestReport:
    """The ``SourceReport`` the ingest webhook tells what it refused."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.rejections: list[str] = []

    def received(self, source: str) -> None:
        raise AssertionError("a notice is not a mention")

    def rejected(self, source: str, reason: str, detail: str) -> None:
        self.rejections.append(reason)

    def connected(self, source: str, up: bool) -> None:
        raise AssertionError("a webhook has no connection")

    def reconnecting(self, source: str, delay_seconds: float, why: str) -> None:
        raise AssertionError("a webhook never reconnects")

    def problem(self, source: str, kind: str, detail: str) -> None:
        self.problems.append(kind)


@pytest.mark.asyncio
async def test_the_ingest_webhooks_verifier_accepts_the_signature() -> None:
    """One verifier serves both: the daemon's own POST /ingest handler checks our signature
    (then refuses the body, which is a notice and not a mention: 400, not 401)."""
    report = IngestReport()
    source = WebhookSourceConfig(type="webhook", secret_env="HOOK_SECRET")
    ingest = WebhookIngest(source, report, lambda mentions: True, environ=ENV, now=lambda: NOW)
    app = web.Application()
    app.router.add_post("/ingest", ingest.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("/ingest"))
        with pytest.raises(PermanentFailure, match="400"):
            await notifier(url).send(hostile_notice())
        assert report.problems == [] and report.rejections == ["missing_field"]

        with pytest.raises(PermanentFailure, match="401"):
            await notifier(url, secret="not-the-shared-secret").send(hostile_notice())
        assert report.problems == ["unauthorized"]


# --- the PagerDuty format ----------------------------------------------------------


@pytest.mark.asyncio
async def test_pagerduty_trigger_event(running: Running) -> None:
    notice = hostile_notice()
    await pagerduty(running.url("/v2/enqueue")).send(notice)

    [request] = running.receiver.requests
    assert request.path == "/v2/enqueue"
    assert request.headers["Idempotency-Key"] == notice.id
    assert "X-Xwatch-Signature" not in request.headers  # no secret_env in this config
    event = request.json()
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == INCIDENT
    payload = event["payload"]
    assert payload["summary"] == HEADLINE
    assert payload["source"] == "xwatch"
    assert payload["severity"] == "critical"
    assert payload["timestamp"] == "2026-11-16T13:00:00+00:00"
    assert payload["component"] == "kettlebird"
    assert payload["class"] == "negative-share-spike"
    details = payload["custom_details"]
    assert details["negative_share"] == "41% now, usually 9%"
    assert details["posts"][0]["handle"] == "user_a"
    assert details["incident"] == BASE + INCIDENT
    assert event["links"][0] == {"href": BASE + INCIDENT, "text": f"Incident {INCIDENT}"}
    assert event["client"] == "xwatch" and event["client_url"] == BASE + INCIDENT


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kind", "action"),
    [
        (NoticeKind.ESCALATED, "trigger"),
        (NoticeKind.ACKNOWLEDGED, "acknowledge"),
        (NoticeKind.SILENCED, "acknowledge"),
        (NoticeKind.RESOLVED, "resolve"),
    ],
)
async def test_pagerduty_event_action_follows_the_notice(
    running: Running, kind: NoticeKind, action: str
) -> None:
    await pagerduty(running.url()).send(factories.notice(kind, channel="pd"))

    [request] = running.receiver.requests
    event = request.json()
    assert event["event_action"] == action
    assert event["dedup_key"] == INCIDENT and event["routing_key"] == ROUTING_KEY
    assert ("payload" in event) is (action == "trigger")


# --- answers -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_429_is_temporary_with_its_retry_after(running: Running) -> None:
    running.receiver.answers.append(
        web.json_response({"status": "throttled"}, status=429, headers={"Retry-After": "7"})
    )
    with pytest.raises(TemporaryFailure, match="429") as failure:
        await notifier(running.url()).send(hostile_notice())
    assert failure.value.retry_after == 7.0


@pytest.mark.asyncio
async def test_5xx_is_temporary(running: Running) -> None:
    running.receiver.answers.append(web.Response(status=500, text="upstream exploded"))
    with pytest.raises(TemporaryFailure, match="500 upstream exploded") as failure:
        await notifier(running.url()).send(hostile_notice())
    assert failure.value.retry_after is None


@pytest.mark.asyncio
async def test_400_is_permanent_and_says_why(running: Running) -> None:
    running.receiver.answers.append(
        web.json_response(
            {"status": "invalid event", "errors": ["'routing_key' invalid"]}, status=400
        )
    )
    with pytest.raises(PermanentFailure, match=r"400 .*routing_key' invalid"):
        await pagerduty(running.url()).send(hostile_notice())


@pytest.mark.asyncio
async def test_a_redirect_is_not_followed(running: Running) -> None:
    running.receiver.answers.append(
        web.Response(status=307, headers={"Location": running.url("/elsewhere")})
    )
    with pytest.raises(PermanentFailure, match="307"):
        await notifier(running.url()).send(hostile_notice())
    assert [r.path for r in running.receiver.requests] == ["/hook"]


@pytest.mark.asyncio
async def test_a_refused_connection_is_temporary_and_keeps_the_url_secret() -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks/T0KEN-in-the-path?key=T0KEN-in-the-query"
    with pytest.raises(TemporaryFailure) as failure:
        await notifier(url).send(hostile_notice())
    assert "127.0.0.1" in str(failure.value)
    assert "T0KEN" not in str(failure.value)
    assert "T0KEN" not in repr(notifier(url))


@pytest.mark.asyncio
async def test_a_receiver_that_does_not_answer_times_out(running: Running) -> None:
    running.receiver.hold = asyncio.Event()
    with pytest.raises(TemporaryFailure, match="TimeoutError"):
        await notifier(running.url(), timeout_seconds=0.2).send(hostile_notice())


# --- configuration -----------------------------------------------------------------


def test_secrets_come_from_the_variables_the_config_names() -> None:
    signed = hook("https://hooks.example/x", secret_env="HOOK_SECRET")
    with pytest.raises(ConfigError, match="HOOK_SECRET is not set"):
        WebhookNotifier.from_config("hook", signed, incident_url_base=BASE, env={})
    keyless = hook("https://events.pagerduty.com/v2/enqueue", format="pagerduty")
    with pytest.raises(ConfigError, match="pagerduty format needs routing_key_env"):
        WebhookNotifier.from_config("pd", keyless, incident_url_base=BASE, env=ENV)
    built = WebhookNotifier.from_config("hook", signed, incident_url_base=BASE, env=ENV)
    assert SECRET not in repr(built)


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("²") is None  # a digit to str.isdigit, not to int()
    later = datetime.fromtimestamp(NOW + 90, UTC)
    assert parse_retry_after(format_datetime(later, usegmt=True), lambda: NOW) == 90.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
