r"""The webhook notifier: one signed JSON POST per notice, for any tool that takes one.

``format: xwatch`` posts the body below (for Microsoft Teams through a Power Automate
"when a HTTP request is received" flow, Opsgenie, n8n, a script...);
``format: pagerduty`` posts a PagerDuty Events API v2 event to ``url``
(``https://events.pagerduty.com/v2/enqueue``) with the integration key from the
environment variable ``routing_key_env`` names.

Headers
-------
Every request carries::

    Content-Type: application/json
    Idempotency-Key: <notice id>          the same on every retry of a notice
    X-Xwatch-Timestamp: <unix seconds>    \ when secret_env is set: the ingest
    X-Xwatch-Signature: sha256=<hex>      / webhook's scheme, so one verifier serves both

The signature is HMAC-SHA256 with the secret over ``"<timestamp>." + body``, the body
bytes exactly as sent (``xwatch.sources.webhook.sign``; its docstring shows how to check
one from a shell). Receivers should refuse a timestamp far from their clock, and drop
a notice whose ``Idempotency-Key`` they have seen: after a crash the outbox sends a
notice again rather than lose it.

The ``xwatch`` body
-------------------
Version 1. The top level is stable: fields are added, never renamed or removed
without a new ``version``::

    {
      "version": 1,
      "notice":   {"id", "kind", "at", "text", "line"},
                  kind: opened, updated, reminder, escalated, acknowledged, silenced,
                  resolved; "line": "Resolved: back to normal"
      "incident": {"id", "brand", "state", "severity", "title", "opened_at",
                   "resolved_at", "acknowledged_by", "url"}
      "headline": "[CRITICAL] acme: negative share 41% (usual 9%)",
      "status":   "firing since 2026-11-16 13:00 UTC",
      "summary":  what every notifier shows (``xwatch.alerting.summary.Summary``):
                  parts, negative_share, usual_share, terms, posts, ...
      "links":    [{"href", "text"}]: the incident page, the playbook
      "detail":   the whole incident as the store keeps it (``xwatch.alerting.codec``);
                  its shape follows the code and may change between releases
    }

Times are ISO 8601 with their offset (UTC). Texts are raw, exactly as posted: escape
them for whatever displays them.

The ``pagerduty`` body
----------------------
``dedup_key`` is the incident id, so PagerDuty keeps one alert per incident;
``event_action`` is ``trigger`` for opened, updated, reminder and escalated (on an
open alert a trigger only adds to its log), ``acknowledge`` for acknowledged and
silenced (a silence means "we know, stop paging"), ``resolve`` for resolved. Triggers
carry ``payload`` (``summary``: the headline; ``source``: ``xwatch``; ``component``:
the brand; ``class``: the lead rule; ``severity``: critical, warning or info;
``timestamp``; ``custom_details``: status, notice, parts, negative share, terms, top
posts), ``links``, ``client`` and ``client_url``.

Answers
-------
2xx is delivered. 429 is a ``TemporaryFailure`` with its ``Retry-After``; 5xx, a
timeout or a network error is a ``TemporaryFailure``; a redirect or any other 4xx is a
``PermanentFailure`` (a wrong URL, a revoked key, a body the tool refuses). Redirects
are not followed: the URL often carries a token, and the signed body should not wander.
Messages name the URL's host only, never its path or query, for the same reason.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from xwatch.alerting import PermanentFailure, TemporaryFailure, env_secret
from xwatch.alerting.codec import to_json
from xwatch.alerting.incidents import Notice, NoticeKind
from xwatch.alerting.summary import Summary, notice_line, share_when, summarize
from xwatch.config import WebhookNotifierConfig
from xwatch.errors import ConfigError, Problem
from xwatch.sources.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

VERSION = 1
IDEMPOTENCY_HEADER = "Idempotency-Key"
PAGERDUTY_SUMMARY_CHARS = 1024
PAGERDUTY_ACTIONS = {
    NoticeKind.OPENED: "trigger",
    NoticeKind.UPDATED: "trigger",
    NoticeKind.REMINDER: "trigger",
    NoticeKind.ESCALATED: "trigger",
    NoticeKind.ACKNOWLEDGED: "acknowledge",
    NoticeKind.SILENCED: "acknowledge",
    NoticeKind.RESOLVED: "resolve",
}
ERROR_CHARS = 200  # of the far end's answer, in a failure's message


class WebhookNotifier:
    def __init__(
        self,
        config: WebhookNotifierConfig,
        name: str,
        secret: str | None,
        routing_key: str | None,
        incident_url_base: str,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        if config.format == "pagerduty" and not routing_key:
            message = f"notifiers.{name}: the pagerduty format needs routing_key_env"
            raise ConfigError([Problem("config", 0, message)])
        self.name = name
        self.config = config
        self.incident_url_base = incident_url_base
        self._secret = secret.encode() if secret else None
        self._routing_key = routing_key or ""
        self._now = now
        self._host = urlsplit(config.url).netloc.rpartition("@")[2] or "the webhook"

    @classmethod
    def from_config(
        cls,
        name: str,
        config: WebhookNotifierConfig,
        *,
        incident_url_base: str,
        env: Mapping[str, str] = os.environ,
    ) -> WebhookNotifier:
        secret = _secret(env, name, config.secret_env, "signing secret")
        routing_key = _secret(env, name, config.routing_key_env, "PagerDuty routing key")
        return cls(config, name, secret, routing_key, incident_url_base)

    def __repr__(self) -> str:  # never show the secrets, nor the URL (it may hold a token)
        return f"WebhookNotifier(name={self.name!r}, host={self._host!r})"

    def body(self, notice: Notice) -> dict[str, Any]:
        """The JSON document for ``notice`` in this notifier's format."""
        summary = summarize(
            notice.incident, self.incident_url_base + quote(notice.incident.id, safe="")
        )
        if self.config.format == "pagerduty":
            return pagerduty_body(notice, summary, self._routing_key)
        return xwatch_body(notice, summary)

    async def send(self, notice: Notice) -> None:
        body = json.dumps(self.body(notice), ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: notice.id}
        if self._secret is not None:
            timestamp = int(self._now())
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_seconds)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(
                    self.config.url, data=body, headers=headers, allow_redirects=False
                ) as response,
            ):
                status = response.status
                retry_after = response.headers.get("Retry-After")
                answer = (await response.text(errors="replace"))[:ERROR_CHARS]
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TemporaryFailure(f"POST to {self._host}: {type(exc).__name__}") from None
        if 200 <= status < 300:
            return
        message = f"POST to {self._host}: {status} {' '.join(answer.split())}".rstrip()
        if status == 429:
            raise TemporaryFailure(message, retry_after=parse_retry_after(retry_after, self._now))
        if status >= 500:
            raise TemporaryFailure(message)
        raise PermanentFailure(message)


def xwatch_body(notice: Notice, summary: Summary) -> dict[str, Any]:
    incident = notice.incident
    return {
        "version": VERSION,
        "notice": {
            "id": notice.id,
            "kind": notice.kind.value,
            "at": notice.at.isoformat(),
            "text": notice.text,
            "line": notice_line(notice),
        },
        "incident": {
            "id": incident.id,
            "brand": incident.brand,
            "state": incident.state.value,
            "severity": incident.severity.value,
            "title": incident.title,
            "opened_at": incident.opened_at.isoformat(),
            "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
            "acknowledged_by": incident.acknowledged_by,
            "url": summary.incident_url,
        },
        "headline": summary.headline,
        "status": summary.status_line,
        "summary": to_json(summary),
        "links": _links(summary),
        "detail": to_json(incident),
    }


def pagerduty_body(notice: Notice, summary: Summary, routing_key: str) -> dict[str, Any]:
    action = PAGERDUTY_ACTIONS[notice.kind]
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": notice.incident.id,
    }
    if action != "trigger":
        return event
    details: dict[str, Any] = {
        "status": summary.status_line,
        "notice": notice_line(notice),
        "parts": [f"[{p.severity}] {p.title} ({p.status}): {p.what}" for p in summary.parts],
        "terms": list(summary.terms),
        "posts": [
            {"handle": p.handle, "followers": p.followers, "text": p.text, "url": p.url}
            for p in summary.posts
        ],
        "incident": summary.incident_url,
        "playbook": summary.playbook_url,
    }
    if summary.negative_share is not None and summary.usual_share is not None:
        details["negative_share"] = (
            f"{summary.negative_share:.0%} {share_when(summary)}, usually {summary.usual_share:.0%}"
        )
    return {
        **event,
        "payload": {
            "summary": summary.headline[:PAGERDUTY_SUMMARY_CHARS],
            "source": "xwatch",
            "component": summary.brand,
            "class": notice.incident.lead.first.rule_id,
            "severity": summary.severity,  # critical, warning and info are PagerDuty's too
            "timestamp": notice.at.isoformat(),
            "custom_details": details,
        },
        "links": _links(summary),
        "client": "xwatch",
        "client_url": summary.incident_url,
    }


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; None when absent or odd."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²" is a digit too, and int() refuses it
        return float(value)  # as long as it is: the daemon waits no longer than it would retry
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


def _links(summary: Summary) -> list[dict[str, str]]:
    return [
        {"href": summary.incident_url, "text": f"Incident {summary.incident_id}"},
        {"href": summary.playbook_url, "text": f"Playbook: {summary.playbook_title}"},
    ]


def _secret(env: Mapping[str, str], name: str, variable: str | None, what: str) -> str | None:
    if variable is None:
        return None
    return env_secret(env, variable, f" (or empty); the webhook notifier {name!r} needs its {what}")
