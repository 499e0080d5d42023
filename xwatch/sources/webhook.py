r"""``POST /ingest``: mentions pushed to the daemon over HTTP, signed with a shared secret.

Anything that can make an HTTP request (a partner's listener, a scraper, a script)
can feed xwatch this way. The daemon mounts ``WebhookIngest.handle`` on its web
server (``xwatch.web``); ``WebhookSourceConfig`` says where the secret is and how
large a request may be.

Signing
-------
Every request carries two headers::

    X-Xwatch-Timestamp: <unix seconds>
    X-Xwatch-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

that is, the MAC covers the timestamp as decimal digits, one dot, then the body
bytes exactly as sent (``sign`` below computes it). The secret is the value of the
environment variable named by ``secret_env`` (``XWATCH_WEBHOOK_SECRET`` by
default); the daemon refuses to start a webhook source without it. From a shell::

    SECRET="$XWATCH_WEBHOOK_SECRET"
    BODY='{"id":"1","text":"my kettle smokes","created_at":"2026-11-16T09:00:12Z"}'
    TS=$(date +%s)
    SIG=$(printf '%s.%s' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.*= //')
    curl -sS http://127.0.0.1:9464/ingest \
      -H 'Content-Type: application/json' \
      -H "X-Xwatch-Timestamp: $TS" -H "X-Xwatch-Signature: sha256=$SIG" \
      --data-binary "$BODY"

(for a file, sign ``{ printf '%s.' "$TS"; cat mentions.jsonl; }`` and send
``--data-binary @mentions.jsonl``). A timestamp more than ``tolerance_seconds``
away from the daemon's clock, in either direction, is refused, so a captured
request cannot be replayed later; a replay inside the window is caught by the
pipeline's deduplication of post ids.

Body
----
One payload as ``xwatch.sources.payload`` defines it (xwatch's mention JSON or
an X API v2 payload), a JSON array of payloads, or JSON lines (one payload per
line; sent as ``application/x-ndjson``, or recognised because the body is several
lines that are each JSON). A batch is all or nothing: if any item is malformed,
nothing from the request is ingested and the answer names the item.

Answers
-------
=====  ======================================================================
202    ``{"accepted": n}``: all n mentions are in the pipeline's queue
400    malformed or empty, or a post dated more than ``MAX_FUTURE_SKEW`` ahead of
       the daemon's clock or more than ``MAX_PAST_AGE`` behind it:
       ``{"error": reason, "where": "line 3", "detail": ...}``
401    missing or wrong signature, or a timestamp outside the tolerance
413    body larger than ``max_body_bytes``
503    the queue is full; nothing was ingested, retry after ``Retry-After`` s
=====  ======================================================================

Every refusal is counted through the ``SourceReport`` (``problem`` for 401 and
503, ``rejected`` for 400 and 413). Post texts are kept as data: escaping
``<!channel>`` or HTML is the notifiers' job.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import orjson
from aiohttp import web

from xwatch.config import WebhookSourceConfig
from xwatch.errors import ConfigError, PayloadError, Problem
from xwatch.model import Mention
from xwatch.sources import MAX_FUTURE_SKEW, MAX_PAST_AGE, SourceReport
from xwatch.sources.payload import parse_payload

TIMESTAMP_HEADER = "X-Xwatch-Timestamp"
SIGNATURE_HEADER = "X-Xwatch-Signature"
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/jsonl"})
RETRY_AFTER_SECONDS = 1

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Xwatch-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class MissingSecretError(ConfigError):
    """The webhook's secret is not in the environment: the daemon must not start."""

    def __init__(self, source: str, variable: str) -> None:
        self.variable = variable
        message = f"{variable} is not set; the webhook source {source!r} needs its shared secret"
        super().__init__([Problem("environment", 0, message)])


class _Refused(Exception):
    """A request answered with an error; ``error`` is a short label, ``where`` the item."""

    def __init__(self, status: int, error: str, detail: str, where: str = "") -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.where = where


class WebhookIngest:
    """The ``POST /ingest`` handler: authenticate, read, parse, then offer the whole batch."""

    def __init__(
        self,
        config: WebhookSourceConfig,
        report: SourceReport,
        offer: Callable[[list[Mention]], bool],
        *,
        environ: Mapping[str, str] = os.environ,
        now: Callable[[], float] = time.time,
    ) -> None:
        secret = environ.get(config.secret_env, "")
        if not secret:
            raise MissingSecretError(config.name, config.secret_env)
        self.name = config.name
        self.config = config
        self.report = report
        self.offer = offer
        self._secret = secret.encode()
        self._now = now

    def __repr__(self) -> str:  # never show the secret
        return f"WebhookIngest(name={self.name!r})"

    async def handle(self, request: web.Request) -> web.Response:
        try:
            timestamp, signature = self._credentials(request)
            body = await self._read_body(request)
            if not hmac.compare_digest(sign(self._secret, timestamp, body), signature):
                raise _Refused(401, "unauthorized", "signature does not match")
            mentions = self._parse(body, request.content_type in NDJSON_TYPES)
        except _Refused as refused:
            return self._refuse(refused)
        if not self.offer(mentions):
            self.report.problem(self.name, "queue_full", f"{len(mentions)} mentions refused")
            return web.json_response(
                {"error": "busy", "detail": "the queue is full; nothing was ingested"},
                status=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        for _ in mentions:
            self.report.received(self.name)
        return web.json_response({"accepted": len(mentions)}, status=202)

    def _credentials(self, request: web.Request) -> tuple[int, str]:
        """The timestamp and signature headers, well formed and fresh; read before the body."""
        stamp = request.headers.get(TIMESTAMP_HEADER)
        signature = request.headers.get(SIGNATURE_HEADER)
        if stamp is None or signature is None:
            missing = TIMESTAMP_HEADER if stamp is None else SIGNATURE_HEADER
            raise _Refused(401, "unauthorized", f"{missing} is missing")
        if not _TIMESTAMP.fullmatch(stamp):
            raise _Refused(401, "unauthorized", f"{TIMESTAMP_HEADER} is not unix seconds")
        if not _SIGNATURE.fullmatch(signature):
            raise _Refused(401, "unauthorized", f"{SIGNATURE_HEADER} is not sha256=<hex>")
        skew = self._now() - int(stamp)
        if abs(skew) > self.config.tolerance_seconds:
            when = "old" if skew > 0 else "in the future"
            raise _Refused(
                401,
                "unauthorized",
                f"timestamp is {abs(skew):.0f} s {when} "
                f"(tolerance {self.config.tolerance_seconds} s)",
            )
        return int(stamp), signature

    async def _read_body(self, request: web.Request) -> bytes:
        """At most ``max_body_bytes``, never buffering more (chunked bodies included)."""
        limit = self.config.max_body_bytes
        declared = request.content_length
        if declared is not None and declared > limit:
            raise _Refused(413, "too_large", f"Content-Length {declared} exceeds {limit} bytes")
        body = bytearray()
        while len(body) <= limit:
            chunk = await request.content.read(limit + 1 - len(body))
            if not chunk:
                return bytes(body)
            body += chunk
        raise _Refused(413, "too_large", f"the body exceeds {limit} bytes")

    def _parse(self, body: bytes, ndjson: bool) -> list[Mention]:
        """Every mention in the body, or ``_Refused`` naming the first malformed item."""
        mentions: list[Mention] = []
        now = datetime.fromtimestamp(self._now(), UTC)
        latest, earliest = now + MAX_FUTURE_SKEW, now - MAX_PAST_AGE
        for where, payload in _payloads(body, ndjson):
            try:
                parsed = parse_payload(payload, self.name)
            except PayloadError as exc:
                raise _Refused(400, exc.reason, exc.detail, where) from None
            for mention in parsed:
                if mention.created_at > latest:
                    detail = f"post {mention.id} is from the future: {mention.created_at}"
                    raise _Refused(400, "bad_timestamp", detail, where)
                if mention.created_at < earliest:
                    detail = f"post {mention.id} is too old for a live source: {mention.created_at}"
                    raise _Refused(400, "bad_timestamp", detail, where)
            mentions.extend(parsed)
        if not mentions:
            raise _Refused(400, "empty", "no mentions in the request")
        return mentions

    def _refuse(self, refused: _Refused) -> web.Response:
        if refused.status == 401:
            self.report.problem(self.name, "unauthorized", refused.detail)
        else:
            where = f"{refused.where}: " if refused.where else ""
            self.report.rejected(self.name, refused.error, where + refused.detail)
        answer = {"error": refused.error, "detail": refused.detail}
        if refused.where:
            answer["where"] = refused.where
        response = web.json_response(answer, status=refused.status)
        if refused.status == 413:
            response.force_close()  # the rest of the body is not worth keeping the connection
        return response


def _payloads(body: bytes, ndjson: bool) -> list[tuple[str, bytes]]:
    """The payloads in a body, each with where it is: ``line 3``, ``index 2`` or ``body``.

    JSON lines are numbered from 1 (blank lines count and are skipped); array items
    are indexed from 0. Array items are re-encoded so that every item, whatever the
    body's shape, goes through ``parse_payload`` and its limits.
    """
    if ndjson:
        return _lines(body)
    if body.lstrip()[:1] == b"[":  # an array (only an array needs parsing here)
        try:
            document = orjson.loads(body)  # as parse_payload reads (RFC 8259, depth 1,024)
        except orjson.JSONDecodeError:
            document = None  # not one JSON document: JSON lines, or malformed
        if isinstance(document, list):
            return [(f"index {i}", _encoded(item, f"index {i}")) for i, item in enumerate(document)]
    # One document (parse_payload reads it) or JSON lines: a first line that is JSON on
    # its own with more after it cannot be the start of one document.
    lines = _lines(body)
    if len(lines) > 1 and _is_json(lines[0][1]):
        return lines
    return [("body", body)]  # parse_payload says precisely what is wrong, with the line


def _encoded(item: object, where: str) -> bytes:
    """An array item as a payload of its own; one nested deeper than orjson writes (it
    reads 1,024 levels, writes 254) is refused as any too-deep JSON is."""
    try:
        return orjson.dumps(item)
    except orjson.JSONEncodeError as exc:
        raise _Refused(400, "not_json", str(exc), where) from None


def _lines(body: bytes) -> list[tuple[str, bytes]]:
    return [
        (f"line {number}", line)
        for number, line in enumerate(body.splitlines(), start=1)
        if line.strip()
    ]


def _is_json(raw: bytes) -> bool:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return True
