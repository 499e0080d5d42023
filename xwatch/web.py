"""The daemon's HTTP face: /metrics, /healthz, /readyz and the playbooks.

GET /metrics            Prometheus text format, from the injected registry
GET /healthz            200 while the process is alive and its loop turns
GET /readyz             200 when it is ready to take mentions, else 503 with why
GET /playbooks/         the playbook index
GET /playbooks/<id>     one playbook (Markdown as text)
POST /ingest            the signed webhook source, when one is configured
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from xwatch.playbooks import PlaybookIndex

REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)
PLAYBOOKS_KEY = web.AppKey("playbooks", PlaybookIndex)
ReadyCheck = Callable[[], tuple[bool, str]]
READY_KEY: web.AppKey[ReadyCheck] = web.AppKey("ready")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(
    registry: CollectorRegistry,
    playbooks: PlaybookIndex,
    ready: Callable[[], tuple[bool, str]],
    *,
    ingest: Handler | None = None,
) -> web.Application:
    app = web.Application()
    app[REGISTRY_KEY] = registry
    app[PLAYBOOKS_KEY] = playbooks
    app[READY_KEY] = ready
    app.router.add_get("/", index)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/playbooks/", playbook_index)
    app.router.add_get("/playbooks/{id}", playbook)
    if ingest is not None:
        app.router.add_post("/ingest", ingest)
    return app


async def index(request: web.Request) -> web.Response:
    return web.Response(
        text="xwatch\n\n/metrics\n/healthz\n/readyz\n/playbooks/\n", content_type="text/plain"
    )


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ok, why = request.app[READY_KEY]()
    return web.json_response({"ready": ok, "reason": why}, status=200 if ok else 503)


async def playbook_index(request: web.Request) -> web.Response:
    items = "".join(
        f'<li><a href="/playbooks/{html.escape(p.id)}">{html.escape(p.meta.title)}</a></li>'
        for p in request.app[PLAYBOOKS_KEY].playbooks.values()
    )
    return web.Response(
        text=f"<!doctype html><title>Playbooks</title><h1>Playbooks</h1><ul>{items}</ul>",
        content_type="text/html",
    )


async def playbook(request: web.Request) -> web.Response:
    found = request.app[PLAYBOOKS_KEY].get(request.match_info["id"])
    if found is None:
        raise web.HTTPNotFound(text="no such playbook\n")
    return web.Response(text=found.body, content_type="text/markdown", charset="utf-8")
