"""The incident pages and the incidents JSON API, on the daemon's web app.

``add_incident_routes`` adds them to the app ``xwatch.web.make_app`` builds. They see
the daemon only through ``xwatch.alerting.service`` (``Incidents`` to read, ``Actions``
to act), so they are tested against an in-memory implementation.

Pages (HTML from ``xwatch.incident_page``; no JavaScript, a strict CSP)::

    GET  /incidents/                   open incidents, then the recent ones
    GET  /incidents/<id>               one incident: context, playbook, action buttons
    GET  /incidents/<id>/chart.png     its chart (404 when its lead alert has no history)
    POST /incidents/<id>/<action>      acknowledge | silence (1 h) | resolve | escalate
                                       form fields: who, token; answers 303 to the page

The pages have no login (like the playbooks: whoever reaches the port reads them).
The forms carry a CSRF token, HMAC-SHA256(page_secret, incident id), checked in constant
time: another site cannot make a visitor's browser act (403), since it cannot read the
page to learn the token. An unknown or resolved incident answers 409.

JSON API (``Authorization: Bearer <token>``, as ``LabelsApi``: 503 when the token
variable is not set, 401 when the token is missing or wrong; errors are
``{"error": ..., "detail": ..., "field": ...}``)::

    GET    /api/incidents?state=&brand=&limit=   newest first; state: open (any but
                                                 resolved), firing, acknowledged,
                                                 silenced, resolved
    GET    /api/incidents/<id>                   the incident, its timeline, deliveries
    POST   /api/incidents/<id>/<action>          {"who": ..., "minutes": for silence}
                                                 404 unknown, 409 not open, 400 bad body
    GET    /api/silences                         the silences
    POST   /api/silences                         {"who", "minutes" | "ends_at", "brand"?,
                                                 "rules"?, "labels"?, "comment"?} -> 201
    DELETE /api/silences/<id>?who=...            (or {"who": ...}) 404 when unknown

Times are ISO 8601; a silence lasts at most ``MAX_SILENCE``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from xwatch.alerting.chart import incident_chart
from xwatch.alerting.codec import to_json
from xwatch.alerting.incidents import Incident, Silence, UnknownIncident
from xwatch.alerting.render import clean
from xwatch.alerting.service import ACTIONS, DEFAULT_SILENCE, Action, Actions, Incidents
from xwatch.alerting.summary import summarize
from xwatch.incident_page import (
    CONTENT_SECURITY_POLICY,
    render_incident,
    render_incident_list,
    render_message,
)
from xwatch.playbooks import PlaybookIndex
from xwatch.store import StoreError
from xwatch.web import BearerToken, json_error

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # the state changes; the page holds a form token
}
STATES = ("open", "firing", "acknowledged", "silenced", "resolved")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_SILENCE = timedelta(days=30)
WHO_CHARS = 80
NAME_CHARS = 100  # a brand, a rule id, a label key or value
INCIDENT_ID_CHARS = 400  # a brand id and the time it opened
COMMENT_CHARS = 500
_ACTIONS: dict[str, Action] = {action: action for action in ACTIONS}
_ACTION_PATTERN = "|".join(ACTIONS)


def action_token(secret: bytes, incident_id: str) -> str:
    """The CSRF token of an incident page's forms."""
    return hmac.new(secret, incident_id.encode(), hashlib.sha256).hexdigest()


def add_incident_routes(
    app: web.Application,
    *,
    incidents: Incidents,
    actions: Actions,
    playbooks: Callable[[], PlaybookIndex],
    api_token: str | None,
    page_secret: bytes,
    incident_url_base: str,
    token_env: str,
) -> None:
    """Serve the incident pages and the incidents API (``api_token`` None: the API says 503).

    ``playbooks`` returns the current index (it changes on reload); ``incident_url_base``
    is the public address of ``/incidents/``, as the notifiers link it.
    """
    if not page_secret:
        raise ValueError("page_secret must not be empty: it signs the pages' action forms")
    pages = IncidentPages(incidents, actions, playbooks, page_secret, incident_url_base)
    api = IncidentsApi(incidents, actions, api_token, incident_url_base, token_env)
    router = app.router
    router.add_get("/incidents", _page_guard(pages.listing))
    router.add_get("/incidents/", _page_guard(pages.listing))
    router.add_get("/incidents/{id}", _page_guard(pages.page))
    router.add_get("/incidents/{id}/chart.png", _page_guard(pages.chart))
    router.add_post(f"/incidents/{{id}}/{{action:{_ACTION_PATTERN}}}", _page_guard(pages.act))
    router.add_get("/api/incidents", _json_guard(api.listing))
    router.add_get("/api/incidents/{id}", _json_guard(api.detail))
    router.add_post(f"/api/incidents/{{id}}/{{action:{_ACTION_PATTERN}}}", _json_guard(api.act))
    router.add_get("/api/silences", _json_guard(api.silences))
    router.add_post("/api/silences", _json_guard(api.add_silence))
    router.add_delete("/api/silences/{id}", _json_guard(api.remove_silence))


# -- the pages ---------------------------------------------------------------------------


class IncidentPages:
    def __init__(
        self,
        incidents: Incidents,
        actions: Actions,
        playbooks: Callable[[], PlaybookIndex],
        secret: bytes,
        incident_url_base: str,
    ) -> None:
        self.incidents = incidents
        self.actions = actions
        self.playbooks = playbooks
        self._secret = secret
        self.incident_url_base = incident_url_base

    def __repr__(self) -> str:  # never show the secret
        return "IncidentPages()"

    async def listing(self, request: web.Request) -> web.Response:
        """The open incidents (``MAX_LIMIT`` a page; ``?before=<id>``: the next page, of
        older ones) and, on the first page, the latest others."""
        try:
            before = _incident_id(request.query.get("before", ""), "before") or None
        except InputError as exc:
            return _page(render_message("Bad request", exc.detail), 400)
        open_now = await self.incidents.incidents(state="open", limit=MAX_LIMIT, before=before)
        recent = await self.incidents.incidents(limit=DEFAULT_LIMIT) if before is None else []
        by_id = {incident.id: incident for incident in (*recent, *open_now)}
        more = open_now[-1].id if len(open_now) == MAX_LIMIT else None
        return _page(render_incident_list(by_id.values(), older_open=more))

    async def page(self, request: web.Request) -> web.Response:
        incident_id = request.match_info["id"]
        record = await self.incidents.incident(incident_id)
        if record is None:
            return _page(render_message("No such incident", f"No incident {incident_id}."), 404)
        page = render_incident(
            record,
            self.playbooks().get(record.incident.playbook.id),
            incident_url=self.incident_url_base + quote(incident_id, safe=""),
            action_token=action_token(self._secret, incident_id),
        )
        return _page(page)

    async def chart(self, request: web.Request) -> web.Response:
        record = await self.incidents.incident(request.match_info["id"])
        png = None if record is None else await asyncio.to_thread(incident_chart, record.incident)
        if png is None:
            return web.Response(status=404, text="no chart for this incident\n")
        return web.Response(
            body=png,
            content_type="image/png",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    async def act(self, request: web.Request) -> web.Response:
        incident_id = request.match_info["id"]
        action = _ACTIONS[request.match_info["action"]]
        form = await request.post()
        token = form.get("token")
        expected = action_token(self._secret, incident_id).encode()
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), expected):
            message = (
                "This form did not come from this incident's page: open the page and try again."
            )
            return _page(render_message("Refused", message, incident_id=incident_id), 403)
        try:
            who = _who(form.get("who"))
        except InputError as exc:
            message = f"Please give your name ({exc.detail})."
            return _page(render_message("Your name, please", message, incident_id=incident_id), 400)
        try:
            await self.actions.act(incident_id, action, who, via="page")
        except UnknownIncident:
            message = f"Incident {incident_id} is not open: it is unknown or resolved already."
            return _page(render_message("Not open", message, incident_id=incident_id), 409)
        raise web.HTTPSeeOther(location="/incidents/" + quote(incident_id, safe=""))


def _page(text: str, status: int = 200) -> web.Response:
    return web.Response(
        text=text, status=status, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
    )


def _page_guard(handler: Handler) -> Handler:
    """The handler, answering a 503 page when the store fails (the detail goes to the log,
    not to a page anyone can read)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except StoreError as exc:
            log.warning("incident page: the store failed: %s", exc, extra={"event": "store_failed"})
            message = "The incident store is not available right now; please try again shortly."
            return _page(render_message("Unavailable", message), 503)

    return guarded


# -- the JSON API ------------------------------------------------------------------------


class InputError(ValueError):
    """A request's parameter or body field is missing or wrong."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class IncidentsApi:
    def __init__(
        self,
        incidents: Incidents,
        actions: Actions,
        token: str | None,
        incident_url_base: str,
        token_env: str,
    ) -> None:
        self.incidents = incidents
        self.actions = actions
        self.auth = BearerToken(token, token_env)
        self.incident_url_base = incident_url_base

    def __repr__(self) -> str:  # never show the token
        return f"IncidentsApi({self.auth!r})"

    def _url(self, incident_id: str) -> str:
        return self.incident_url_base + quote(incident_id, safe="")

    def _item(self, incident: Incident) -> dict[str, Any]:
        """An incident in a list: what it is, where it stands, and its parts in words."""
        url = self._url(incident.id)
        return {
            "id": incident.id,
            "brand": incident.brand,
            "state": incident.state.value,
            "severity": incident.severity.value,
            "title": incident.title,
            "opened_at": incident.opened_at.isoformat(),
            "updated_at": incident.updated_at.isoformat(),
            "resolved_at": _iso(incident.resolved_at),
            "acknowledged_by": incident.acknowledged_by,
            "escalated_at": _iso(incident.escalated_at),
            "url": url,
            "parts": to_json(summarize(incident, url).parts),
        }

    async def listing(self, request: web.Request) -> web.Response:
        refused = self.auth.refusal(request)
        if refused is not None:
            return refused
        try:
            state = request.query.get("state") or None
            if state is not None and state not in STATES:
                raise InputError("state", f"must be one of {', '.join(STATES)}")
            brand = _name(request.query.get("brand", ""), "brand")
            limit = _limit(request.query.get("limit"))
            before = _incident_id(request.query.get("before", ""), "before") or None
        except InputError as exc:
            return json_error(400, "invalid", exc.detail, field=exc.field)
        found = await self.incidents.incidents(
            state=state, brand=brand or None, limit=limit, before=before
        )
        more = found[-1].id if len(found) == limit else None  # pass it as ``before``
        return web.json_response({"incidents": [self._item(i) for i in found], "next": more})

    async def detail(self, request: web.Request) -> web.Response:
        refused = self.auth.refusal(request)
        if refused is not None:
            return refused
        incident_id = request.match_info["id"]
        record = await self.incidents.incident(incident_id)
        if record is None:
            return json_error(404, "unknown_incident", f"no incident {incident_id!r}")
        return web.json_response({"url": self._url(incident_id), **to_json(record)})

    async def act(self, request: web.Request) -> web.Response:
        refused = self.auth.refusal(request)
        if refused is not None:
            return refused
        incident_id = request.match_info["id"]
        action = _ACTIONS[request.match_info["action"]]
        try:
            body = await _json_object(request)
            _only(body, ("who", "minutes") if action == "silence" else ("who",))
            who = _who(body.get("who"))
            duration = _minutes(body["minutes"]) if "minutes" in body else DEFAULT_SILENCE
        except InputError as exc:
            return json_error(400, "invalid", exc.detail, field=exc.field)
        record = await self.incidents.incident(incident_id)
        if record is None:
            return json_error(404, "unknown_incident", f"no incident {incident_id!r}")
        if not record.incident.is_open:
            return _not_open(incident_id)
        try:
            incident = await self.actions.act(
                incident_id, action, who, via="api", silence_for=duration
            )
        except UnknownIncident:  # resolved in the meantime
            return _not_open(incident_id)
        return web.json_response({"incident": self._item(incident)})

    async def silences(self, request: web.Request) -> web.Response:
        refused = self.auth.refusal(request)
        if refused is not None:
            return refused
        found = await self.incidents.silences()
        return web.json_response({"silences": [_silence_json(s) for s in found]})

    async def add_silence(self, request: web.Request) -> web.Response:
        refused = self.auth.refusal(request)
        if refused is not None:
            return refused
        now = datetime.now(UTC)
        fields = ("who", "minutes", "ends_at", "brand", "rules", "labels", "comment")
        try:
            body = await _json_object(request)
            _only(body, fields)
            who = _who(body.get("who"))
            if ("minutes" in body) == ("ends_at" in body):
                raise InputError("minutes", "give either minutes or ends_at (one of them)")
            if "minutes" in body:
                ends_at = now + _minutes(body["minutes"])
            else:
                ends_at = _ends_at(body["ends_at"], now)
            brand = _name(body.get("brand", ""), "brand")
            rules = _names(body.get("rules", []), "rules")
            labels = _labels(body.get("labels", {}))
            comment = _text(body.get("comment", ""), "comment", COMMENT_CHARS)
            if not (brand or rules or labels):
                raise InputError(
                    "brand, rules, labels",
                    "a silence needs something to match: a brand, rules or labels",
                )
        except InputError as exc:
            return json_error(400, "invalid", exc.detail, field=exc.field)
        silence = await self.incidents.add_silence(
            who=who, ends_at=ends_at, brand=brand, rules=rules, labels=labels, comment=comment
        )
        return web.json_response({"silence": _silence_json(silence)}, status=201)

    async def remove_silence(self, request: web.Request) -> web.Response:
        refused = self.auth.refusal(request)
        if refused is not None:
            return refused
        silence_id = request.match_info["id"]
        try:
            who_given: object = request.query.get("who")
            if who_given is None and (await request.read()).strip():
                body = await _json_object(request)
                _only(body, ("who",))
                who_given = body.get("who")
            who = _who(who_given)
        except InputError as exc:
            return json_error(400, "invalid", exc.detail, field=exc.field)
        if not await self.incidents.remove_silence(silence_id, who):
            return json_error(404, "unknown_silence", f"no silence {silence_id!r}")
        return web.json_response({"removed": silence_id})


def _json_guard(handler: Handler) -> Handler:
    """The handler, answering 503 when the store fails (as ``LabelsApi`` does)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except StoreError as exc:
            return json_error(503, "store_failed", str(exc))

    return guarded


def _not_open(incident_id: str) -> web.Response:
    return json_error(409, "not_open", f"incident {incident_id!r} is resolved already")


# -- reading what people send ------------------------------------------------------------


async def _json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        raise InputError("body", "expected a JSON object, found nothing")
    try:  # orjson: RFC 8259, nested at most 1,024 deep, no lone surrogates
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError("body", f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InputError("body", f"expected a JSON object, found {type(body).__name__}")
    return body


def _only(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InputError(unknown[0], f"unknown field (allowed: {', '.join(allowed)})")


def _text(value: object, field: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InputError(field, f"must be a string, found {type(value).__name__}")
    text = clean(value, limit + 1)  # one line, no control characters
    if len(text) > limit:
        raise InputError(field, f"must be at most {limit} characters")
    return text


def _who(value: object) -> str:
    if value is None:
        raise InputError("who", "required: who does this (a name or a handle)")
    who = _text(value, "who", WHO_CHARS)
    if not who:
        raise InputError("who", "must not be empty")
    return who


def _name(value: object, field: str) -> str:
    """A brand, rule id or label: one word, without spaces or control characters."""
    if not isinstance(value, str):
        raise InputError(field, f"must be a string, found {type(value).__name__}")
    if len(value) > NAME_CHARS:
        raise InputError(field, f"must be at most {NAME_CHARS} characters")
    if not value.isprintable() or any(c.isspace() for c in value):
        raise InputError(field, "must be one word, without spaces or control characters")
    return value


def _incident_id(value: str, field: str) -> str:
    """An incident id, as the list's ``next`` gives it ("" for none)."""
    if len(value) > INCIDENT_ID_CHARS or not value.isprintable() or " " in value:
        raise InputError(field, f"must be an incident id (at most {INCIDENT_ID_CHARS} characters)")
    return value


def _names(value: object, field: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InputError(field, f"must be a list of strings, found {type(value).__name__}")
    names = tuple(_name(item, f"{field}[{i}]") for i, item in enumerate(value))
    if any(not name for name in names):
        raise InputError(field, "must not hold empty strings")
    return names


def _labels(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise InputError("labels", f"must be an object of strings, found {type(value).__name__}")
    labels = tuple(
        (_name(key, "labels"), _name(item, f"labels.{key}")) for key, item in value.items()
    )
    if any(not key for key, _ in labels):
        raise InputError("labels", "keys must not be empty")
    return tuple(sorted(labels))


def _minutes(value: object) -> timedelta:
    most = int(MAX_SILENCE.total_seconds() // 60)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError("minutes", f"must be a whole number of minutes, found {value!r}")
    if not 1 <= value <= most:
        raise InputError("minutes", f"must be between 1 and {most} (30 days)")
    return timedelta(minutes=value)


def _ends_at(value: object, now: datetime) -> datetime:
    example = "e.g. 2026-11-20T15:00:00Z"
    if not isinstance(value, str):
        raise InputError("ends_at", f"must be an ISO 8601 time ({example})")
    try:
        ends_at = datetime.fromisoformat(value)
    except ValueError:
        raise InputError("ends_at", f"{value!r} is not an ISO 8601 time ({example})") from None
    if ends_at.tzinfo is None:
        raise InputError("ends_at", f"needs a time zone ({example})")
    try:
        ends_at = ends_at.astimezone(UTC)
    except OverflowError:  # "9999-12-31T23:59:59-05:00" is after year 9999 in UTC
        raise InputError("ends_at", f"{value!r} is out of the range of dates") from None
    if ends_at <= now:
        raise InputError("ends_at", "must be in the future")
    if ends_at > now + MAX_SILENCE:
        raise InputError("ends_at", "must be at most 30 days from now")
    return ends_at


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit() or len(raw) > 6:
        raise InputError("limit", "must be a whole number")
    value = int(raw)
    if not 1 <= value <= MAX_LIMIT:
        raise InputError("limit", f"must be between 1 and {MAX_LIMIT}")
    return value


def _silence_json(silence: Silence) -> dict[str, Any]:
    """A silence as JSON, its labels as an object (as ``POST /api/silences`` takes them)."""
    data: dict[str, Any] = to_json(silence)
    data["labels"] = dict(silence.labels)
    return data


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None
