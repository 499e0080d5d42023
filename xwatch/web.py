"""The daemon's HTTP face: /metrics, /healthz, /readyz and the playbooks.

GET /metrics            Prometheus text format, from the injected registry
GET /healthz            200 while the process is alive and its loop turns
GET /readyz             200 when it is ready to take mentions, else 503 with why
GET /playbooks/         the playbook index
GET /playbooks/<id>     one playbook (Markdown as text)
POST /ingest            the signed webhook source, when one is configured
POST /api/labels        sentiment labels for alerts' sample posts (``LabelsApi``)
GET  /api/labels        the stored labels, paged: ?after=<id>&limit=<n>
GET  /api/labels.jsonl  the training set, as ``xwatch train --input`` reads it

The daemon adds the incident pages and API (``xwatch.web_incidents``: /incidents/,
/api/incidents, /api/silences) and Slack's buttons (POST /slack/actions).

Slow clients cannot hold connections for good (``runner``): a connection that sends no
complete request, or stays idle after an answer, is closed after ``KEEPALIVE_SECONDS``;
a request whose handling (the reading of its body included) takes longer than
``REQUEST_SECONDS`` is answered 408 and its connection closed (``deadline``) once the
rest of its body has been dropped for ``LINGER_SECONDS``.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from xwatch import logs
from xwatch.feedback import Feedback, LabelInputError, PostNotFoundError, parse_label_requests
from xwatch.playbooks import PlaybookIndex
from xwatch.store import Store, StoreError, training_line

REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)
PLAYBOOKS_KEY = web.AppKey("playbooks", PlaybookIndex)
ReadyCheck = Callable[[], tuple[bool, str]]
READY_KEY: web.AppKey[ReadyCheck] = web.AppKey("ready")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = logging.getLogger("xwatch.web")

KEEPALIVE_SECONDS = 15.0
"""A connection without a complete request (headers sent slowly, or nothing at all), or
idle after an answer, is closed after this (aiohttp's timer runs from the connection's
start; its default, an hour, let 1,500 half-sent requests hold 1,500 descriptors)."""
REQUEST_SECONDS = 30.0
"""A request's handling, its body's reading included, ends within this: a client that
declares a body and never sends it no longer holds a handler and a connection."""
MAX_BODY_BYTES = 1024**2
"""The largest request body read whole (aiohttp's default; the webhook has its own,
``max_body_bytes``, and reads no more)."""
LINGER_SECONDS = 2.0
"""After an answer given before the body was read (a 401, a 408), the rest of the body is
read and dropped for at most this long, then the connection is closed (aiohttp: 10 s)."""


def deadline(seconds: float = REQUEST_SECONDS) -> Middleware:
    """A middleware: 408, and the connection closed, for a request not handled in time."""

    @web.middleware
    async def within(request: web.Request, handler: Handler) -> web.StreamResponse:
        timeout = asyncio.timeout(seconds)
        try:
            async with timeout:
                return await handler(request)
        except TimeoutError:
            if not timeout.expired():
                raise  # the handler's own timeout, not ours
        log.warning(
            "%s %s: not handled within %g s (a body sent slowly, or never): 408",
            request.method,
            request.path,
            seconds,
            extra={"event": "http_request_timeout"},
        )
        response = web.Response(status=408, text="request timeout\n")
        response.force_close()
        return response

    return within


def runner(
    app: web.Application,
    *,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
    linger_seconds: float = LINGER_SECONDS,
) -> web.AppRunner:
    """The app's runner as the daemon serves it: no access log, idle connections closed."""
    return web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=keepalive_seconds,
        lingering_time=linger_seconds,
    )


def make_app(
    registry: CollectorRegistry,
    playbooks: PlaybookIndex,
    ready: Callable[[], tuple[bool, str]],
    *,
    ingest: Handler | None = None,
    labels: LabelsApi | None = None,
    request_seconds: float = REQUEST_SECONDS,
) -> web.Application:
    app = web.Application(middlewares=[deadline(request_seconds)], client_max_size=MAX_BODY_BYTES)
    app[REGISTRY_KEY] = registry
    app[PLAYBOOKS_KEY] = playbooks
    app[READY_KEY] = ready
    app.router.add_get("/", index)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/playbooks", to_playbook_index)
    app.router.add_get("/playbooks/", playbook_index)
    app.router.add_get("/playbooks/{id}", playbook)
    if ingest is not None:
        app.router.add_post("/ingest", ingest)
    if labels is not None:
        app.router.add_post("/api/labels", labels.post)
        app.router.add_get("/api/labels", labels.listing)
        app.router.add_get("/api/labels.jsonl", labels.export)
    return app


async def index(request: web.Request) -> web.Response:
    return web.Response(
        text="xwatch\n\n/metrics\n/healthz\n/readyz\n/playbooks/\n/incidents/\n",
        content_type="text/plain",
    )


async def to_playbook_index(request: web.Request) -> web.Response:
    """``/playbooks`` is the index's folder: a relative redirect, which holds behind a proxy
    that serves the daemon under a prefix too."""
    raise web.HTTPPermanentRedirect("playbooks/")


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


# -- the JSON API ---------------------------------------------------------------------------


class BearerToken:
    """The JSON API's credential: ``Authorization: Bearer <token>``, the value of the
    environment variable ``api.token_env`` names, compared in constant time. Without
    the variable the API is off (503)."""

    def __init__(self, token: str | None, token_env: str = "XWATCH_API_TOKEN") -> None:
        self._token = token.encode() if token else None
        self.token_env = token_env

    def __repr__(self) -> str:  # never show the token
        return f"BearerToken(enabled={self._token is not None})"

    def refusal(self, request: web.Request) -> web.Response | None:
        """None when the request carries the token, else the response that refuses it."""
        if self._token is None:
            return json_error(503, "disabled", f"the API is off: {self.token_env} is not set")
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        given = credentials.strip().encode("utf-8", "replace")  # any bytes a client sends
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, self._token):
            log.warning(  # the request names no secret: a wrong token is never shown
                "%s %s refused: %s",
                request.method,
                request.path,
                "a wrong bearer token" if given else "no bearer token",
                extra={"event": "api_unauthorized"},
            )
            response = json_error(
                401, "unauthorized", "a valid 'Authorization: Bearer' is required"
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="xwatch"'
            return response
        return None


# -- sentiment labels ---------------------------------------------------------------------

DEFAULT_PAGE = 100
MAX_PAGE = 1000


class LabelsApi:
    """``/api/labels``: the team labels alerts' sample posts (see ``xwatch.feedback``).

    Every request carries ``Authorization: Bearer <token>``, the value of the
    environment variable ``api.token_env`` names (compared in constant time). Answers:

    =====  ================================================================
    201    ``{"stored": [label, ...]}``: every label of the request is stored
    200    a page of labels, or the training set as JSON lines
    400    ``{"error": "invalid", "field": ..., "where": "item 2", "detail": ...}``
    401    no or wrong bearer token
    404    a post that is not among the recent alerts' samples, sent without text
    503    the API is off (no token in the environment) or no store is configured
    =====  ================================================================
    """

    def __init__(
        self,
        token: str | None,
        feedback: Feedback,
        store: Callable[[], Store | None],
        *,
        token_env: str = "XWATCH_API_TOKEN",
        on_stored: Callable[[int], object] = lambda count: None,
    ) -> None:
        self.auth = BearerToken(token, token_env)
        self.feedback = feedback
        self.store = store  # the daemon's store while it is open, else None
        self.on_stored = on_stored  # told how many labels each request stored (metrics)

    def __repr__(self) -> str:  # never show the token
        return f"LabelsApi({self.auth!r})"

    def _authorised_store(self, request: web.Request) -> Store | web.Response:
        """The store to answer from, or the response that refuses the request."""
        refused = self.auth.refusal(request)
        if refused is not None:
            return refused
        store = self.store()
        if store is None:
            return json_error(503, "no_store", "no store configured (set store.enabled)")
        return store

    async def post(self, request: web.Request) -> web.Response:
        store = self._authorised_store(request)
        if isinstance(store, web.Response):
            return store
        try:  # orjson: RFC 8259, nested at most 1,024 deep, no lone surrogates
            body = orjson.loads(await request.read())
        except web.HTTPRequestEntityTooLarge:
            return json_error(
                413,
                "too_large",
                f"the body exceeds {MAX_BODY_BYTES:,} bytes: send the labels in smaller batches",
                field="body",
            )
        except orjson.JSONDecodeError as exc:
            return json_error(400, "invalid", f"the body is not JSON: {exc}", field="body")
        try:
            requests = parse_label_requests(body)
            stored = await self.feedback.submit(store, requests, "api")
        except LabelInputError as exc:
            return json_error(400, "invalid", exc.detail, field=exc.field, where=exc.where)
        except PostNotFoundError as exc:
            return json_error(404, "unknown_post", str(exc), post_ids=exc.post_ids)
        except StoreError as exc:
            return json_error(503, "store_failed", str(exc))
        self.on_stored(len(stored))
        log.info(
            "%d label(s) stored via the API by %s",
            len(stored),
            ", ".join(sorted({logs.excerpt(item.who, 40) for item in stored})),
            extra={"event": "labels_stored"},
        )
        return web.json_response({"stored": [item.to_json() for item in stored]}, status=201)

    async def listing(self, request: web.Request) -> web.Response:
        store = self._authorised_store(request)
        if isinstance(store, web.Response):
            return store
        try:
            after = _int_param(request, "after", 0, 0, None)
            limit = _int_param(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        except LabelInputError as exc:
            return json_error(400, "invalid", exc.detail, field=exc.field)
        try:
            page = await asyncio.to_thread(store.labels, after=after, limit=limit)
            total = await asyncio.to_thread(store.label_count)
        except StoreError as exc:
            return json_error(503, "store_failed", str(exc))
        return web.json_response(
            {
                "labels": [item.to_json() for item in page],
                "total": total,
                "next": page[-1].id if len(page) == limit else None,  # ?after= for the next
            }
        )

    async def export(self, request: web.Request) -> web.Response:
        store = self._authorised_store(request)
        if isinstance(store, web.Response):
            return store
        try:
            items = await asyncio.to_thread(store.training_set)
        except StoreError as exc:
            return json_error(503, "store_failed", str(exc))
        return web.Response(
            text="".join(training_line(item) for item in items),
            content_type="application/x-ndjson",
            charset="utf-8",
            headers={"Content-Disposition": 'attachment; filename="labels.jsonl"'},
        )


def _int_param(request: web.Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise LabelInputError(name, "must be a whole number")
    value = int(raw)
    if value < low or (high is not None and value > high):
        limits = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise LabelInputError(name, f"must be {limits}")
    return value


def json_error(status: int, error: str, detail: str, **fields: object) -> web.Response:
    """The API's error shape: ``{"error", "detail", ...fields}``."""
    body: dict[str, object] = {"error": error, "detail": detail}
    body.update({key: value for key, value in fields.items() if value not in (None, "")})
    return web.json_response(body, status=status)
