"""Faults with real parts: the daemon killed with SIGKILL in the middle of a delivery.

``xwatch run`` runs as a subprocess with a store, a webhook notifier pointed at a
local receiver, and a rule that fires on one post. The receiver holds the first
request open (the notification is in flight), the test kills the daemon with
SIGKILL, then starts it again with the receiver answering: the notification that
was pending is sent again at start, with the same idempotency key; nothing else
is sent twice, and the store says it was delivered.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from xwatch.store import Store

RULES = """\
rules:
  - id: account-hacked-post
    title: A post says the brand's account was hacked
    match:
      any: [hacked]
    when:
      mention: {}
    severity: warning
    playbook: account-takeover
    notify: [hook]
"""


class Receiver:
    """A webhook receiver that holds requests open until told to answer."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []  # headers of interest, and the notice id
        self.arrived = asyncio.Event()
        self.answer = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.requests.append(
            {"key": request.headers.get("Idempotency-Key", ""), "notice": body["notice"]["id"]}
        )
        self.arrived.set()
        await self.answer.wait()
        return web.json_response({"ok": True})


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        receiver.answer.set()
        await runner.cleanup()


def write_project(project: Path, hook: str) -> Path:
    (project / "rules").mkdir(exist_ok=True)
    for old in (project / "rules").iterdir():
        old.unlink()
    (project / "rules" / "hacked.yaml").write_text(RULES, "utf-8")
    (project / "mentions.jsonl").write_text(
        json.dumps(
            {
                "id": "1",
                "text": "looks like @kettlebird got hacked, weird posts everywhere",
                "created_at": "2026-11-20T13:00:00Z",
                "author": {"id": "9", "handle": "someone", "followers": 10},
            }
        )
        + "\n",
        "utf-8",
    )
    config = project / "faults.yaml"
    config.write_text(
        "brands:\n"
        "  - id: kettlebird\n"
        "    name: Kettlebird\n"
        '    terms: ["kettlebird", "@kettlebird"]\n'
        "sources:\n"
        "  - type: replay\n"
        "    path: mentions.jsonl\n"
        "server:\n"
        "  enabled: false\n"
        "store:\n"
        "  path: state.sqlite3\n"
        "notifiers:\n"
        "  hook:\n"
        "    type: webhook\n"
        f"    url: {hook}\n"
        "    timeout_seconds: 30\n"
        "alerting:\n"
        "  retry_initial_seconds: 0.05\n"
        "drain_timeout_seconds: 1\n",
        "utf-8",
    )
    return config


async def start(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "xwatch",
        "run",
        "-c",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "XWATCH_LOG_LEVEL": "warning"},
    )


@pytest.mark.asyncio
async def test_sigkill_during_delivery_then_restart_sends_what_was_pending(
    project: Path,
) -> None:
    receiver = Receiver()
    async with receiving(receiver) as hook:
        config = write_project(project, hook)
        first = await start(config)
        try:
            await asyncio.wait_for(receiver.arrived.wait(), 30)  # in flight now
        finally:
            first.send_signal(signal.SIGKILL)
            await first.wait()
        assert first.returncode == -signal.SIGKILL
        (in_flight,) = receiver.requests

        receiver.arrived.clear()
        receiver.answer.set()  # the far end is back
        second = await start(config)
        try:
            await asyncio.wait_for(receiver.arrived.wait(), 30)
            with Store.open(project / "state.sqlite3") as store:
                for _ in range(300):  # until the delivery is recorded (at most 30 s)
                    if not store.pending_notices():
                        break
                    await asyncio.sleep(0.1)
                record = store.incident_record(in_flight["notice"].split("/")[0])
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.wait_for(second.wait(), 30)

    # the pending notification went out again, once, with the same key; nothing else did
    assert receiver.requests == [in_flight, in_flight]
    assert in_flight["key"] == in_flight["notice"]
    assert record is not None
    (delivery,) = record.deliveries
    assert delivery.state == "delivered"
    assert record.incident.is_open  # the incident lives on across the crash
