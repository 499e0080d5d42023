"""Hostile text end to end: a post crafted to ping everyone, inject links, markup or
email headers goes through the running daemon and arrives as harmless text in Slack
(the local Slack), email (aiosmtpd), the webhook notifier (a local receiver) and the
incident page (the daemon's own web server).

The daemon runs in-process with the real notifiers built from its config, a rule that
fires on one post, and the post handed to it by a source, as live data would be.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from tests.factories import T0, GatedSource
from tests.fake_slack import TOKEN as SLACK_TOKEN
from tests.fake_slack import FakeSlack
from tests.smtp_server import smtp_server
from tests.test_slack import texts
from tests.waiting import eventually
from xwatch.daemon import Daemon
from xwatch.model import Author, Mention
from xwatch.playbooks import PlaybookIndex
from xwatch.settings import load_settings
from xwatch.web import make_app, runner

RULE = """\
rules:
  - id: account-hacked-post
    title: A post says the brand's account was hacked
    match:
      any: [hacked]
    when:
      mention: {}
    severity: warning
    playbook: account-takeover
    notify: [slack, email, hook]
"""
PINGS = ("<!channel>", "<!here>", "<!everyone>", "<@U0BOSS>", "<!subteam^S1>")
HOSTILE = (
    "kettlebird got hacked " + " ".join(PINGS) + " @channel @here "
    "<https://evil.example/login|reset your password> <script>alert(1)</script> "
    '<img src=x onerror="alert(2)"> *bold* `code` ```block``` '
    "\r\nBcc: everyone@example.com\r\nSubject: pwned\r\n\r\n.\r\nRCPT TO:<x@evil.example>\n"
    + "A"
    * 3000  # a very long line
)
HANDLE = "evil\r\nBcc: x@evil.example <!channel>"


def hostile_post() -> Mention:
    return Mention(
        id="666",
        text=HOSTILE,
        created_at=T0,
        source="held",
        author=Author(id="9", handle=HANDLE, followers=10_000),
        url="javascript:alert(3)",
        lang="en",
    )


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(json.loads(await request.read()))
        return web.json_response({"ok": True})


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    finally:
        await runner.cleanup()


def write_config(project: Path, slack_api: str, smtp_port: int, hook: str) -> Path:
    for old in (project / "rules").iterdir():
        old.unlink()
    (project / "rules" / "hacked.yaml").write_text(RULE, "utf-8")
    config = project / "hostile.yaml"
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
        "  enabled: false\n"
        "notifiers:\n"
        f"  slack: {{type: slack, channel: C0ALERTS, api_url: '{slack_api}', chart: false}}\n"
        "  email:\n"
        "    type: email\n"
        "    host: 127.0.0.1\n"
        f"    port: {smtp_port}\n"
        "    security: none\n"
        "    sender: xwatch@example.com\n"
        "    recipients: [pr@example.com]\n"
        "    chart: false\n"
        f"  hook: {{type: webhook, url: '{hook}'}}\n"
        "alerting:\n"
        "  retry_initial_seconds: 0.05\n"
        "drain_timeout_seconds: 2\n",
        "utf-8",
    )
    return config


def assert_inert_mrkdwn(text: str) -> None:
    for ping in (*PINGS, "<https://evil", "<script", "<img"):
        assert ping not in text, (ping, text[:300])
    for link in re.findall(r"<([^>]*)>", text):  # every link is one xwatch made
        assert re.match(r"https?://(x\.com|127\.0\.0\.1)[^|<>]*\|", link), link


@pytest.mark.asyncio
async def test_a_hostile_post_arrives_as_harmless_text_everywhere(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "signing-secret")
    receiver = Receiver()
    async with FakeSlack() as slack, smtp_server() as smtp, receiving(receiver) as hook:
        config = write_config(project, slack.api_url, smtp.port, hook)
        source = GatedSource([hostile_post()])
        daemon = Daemon(load_settings(config), sources=[source])
        task = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(source.sent.wait(), 10)
            await eventually(lambda: bool(daemon.book.incidents), "the rule fires on the post")
            for outbox in daemon.outboxes.values():
                await asyncio.wait_for(outbox.join(), 10)
            (incident_id,) = daemon.book.incidents
            async with (
                aiohttp.ClientSession(daemon.web_url) as http,
                http.get(f"/incidents/{incident_id}") as response,
            ):
                assert response.status == 200
                page = await response.text()
        finally:
            daemon.stop.set()
            source.finish.set()
            await asyncio.wait_for(task, 10)

    # Slack: one message; no ping, no link but ours, no markup from the post
    [call] = slack.calls_to("chat.postMessage")
    assert not call.args.get("link_names") and not call.args.get("parse")
    sent = [call.args["text"], *texts(call.args["blocks"])]
    for text in sent:
        assert_inert_mrkdwn(text)
    assert any("&lt;!channel&gt;" in text for text in sent)  # shown, as text

    # email: the configured sender and recipient only, headers of one line each
    [received] = smtp.received
    assert received.recipients == ["pr@example.com"]
    message = received.message
    assert message.get_all("Bcc") is None and "pwned" not in str(message["Subject"])
    for name, value in message.items():
        assert "\r" not in value and "\n" not in value.replace("\r\n ", ""), name
    assert max(len(line) for line in received.data.split(b"\r\n")) <= 998  # RFC 5322
    html = message.get_body(("html",))
    assert html is not None
    markup = html.get_content()
    assert "<script" not in markup and "<img" not in markup and "javascript:" not in markup
    assert "&lt;script&gt;" in markup

    # the webhook notifier: the text is data in a JSON string, whole
    [body] = receiver.bodies
    assert HOSTILE in _strings(body)

    # the incident page: escaped, and the post's javascript: link dropped
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "javascript:" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_clean_text_holds_no_lone_surrogate() -> None:
    """Text no encoder writes (the store, Slack, the logs refuse it) is cleaned away."""
    from xwatch.alerting.render import clean

    cleaned = clean("sam\ud800 and \udfffmaria")
    assert cleaned == "sam and maria"
    cleaned.encode("utf-8")


# -- slow clients ------------------------------------------------------------------------------


@asynccontextmanager
async def serving(request_seconds: float, keepalive_seconds: float) -> AsyncIterator[int]:
    """The daemon's app and runner (``xwatch.web``) with short limits, and an echo route
    that reads the body; yields the port."""

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    app = make_app(
        CollectorRegistry(),
        PlaybookIndex({}),
        lambda: (True, "ok"),
        request_seconds=request_seconds,
    )
    app.router.add_post("/echo", echo)
    served = runner(app, keepalive_seconds=keepalive_seconds)
    await served.setup()
    site = web.TCPSite(served, "127.0.0.1", 0)
    await site.start()
    try:
        yield served.addresses[0][1]
    finally:
        await served.cleanup()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "opening",
    [b"", b"GET /healthz HTTP/1.1\r\n", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"],
    ids=["nothing", "request-line", "headers-never-finished"],
)
async def test_a_connection_without_a_whole_request_is_closed(opening: bytes) -> None:
    """aiohttp's default (an hour) let 1,500 half-sent requests hold 1,500 descriptors."""
    async with serving(request_seconds=5, keepalive_seconds=0.2) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(opening)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the server hung up
        writer.close()
        async with (  # a prompt client is served as before
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/healthz") as response,
        ):
            assert response.status == 200


@pytest.mark.asyncio
async def test_a_body_declared_and_never_sent_is_answered_408_and_closed() -> None:
    async with serving(request_seconds=0.2, keepalive_seconds=5) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\n\r\nabc")
        answer = await asyncio.wait_for(reader.read(), 10)  # all of it: then closed
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 ")
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"http://127.0.0.1:{port}/echo", data=b"hello") as response,
        ):
            assert (response.status, await response.read()) == (200, b"hello")
