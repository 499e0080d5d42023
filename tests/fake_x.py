"""A local fake of the X API v2 endpoints that ``XStreamSource`` uses, scriptable by tests.

It follows X's documented behaviour closely enough to catch protocol mistakes:

* every endpoint wants ``Authorization: Bearer <token>`` (401 with X's problem JSON else);
* ``GET /2/tweets/search/stream`` plays one *script* per connection (``script(...)``):
  post lines (``{"data", "includes", "matching_rules"}`` + ``\\r\\n``), keep-alive blank
  lines, in-stream ``{"errors": [...]}`` lines, raw bytes (half a line), pauses, a dropped
  TCP connection, a hang (no byte any more) or an HTTP error reply. With no script left
  it idles like X: a keep-alive every ``keepalive_seconds`` until the client leaves;
* ``GET``/``POST /2/tweets/search/stream/rules`` keep the rules (ids, ``meta.sent``,
  ``meta.summary``), refuse duplicates and anything past ``rule_cap``;
* ``GET /2/tweets/search/recent`` searches every published post (``publish(...)``) with
  ``query`` (terms joined by ``OR``, quoted phrases), ``since_id``, ``start_time``,
  ``end_time`` (default: 30 s ago, like X), newest first, ``max_results`` a page, and
  ``next_token`` pagination; ``search_replies`` scripts HTTP errors (e.g. 429);
* ``GET /2/tweets/counts/recent`` counts the published posts matching ``query`` per
  ``granularity`` (minute, hour, day; default hour) from ``start_time`` (within the
  last 7 days) to ``end_time``, every bucket oldest first (0 where there is none: a
  bucket is ``start``, ``end``, ``tweet_count``), ``counts_page_buckets`` a page with
  ``next_token``, and ``meta.total_tweet_count``; ``counts_replies`` scripts errors,
  ``counts_hang`` a server that never answers.

Only the fields a request asks for (``tweet.fields``, ``expansions``, ``user.fields``)
are rendered, as X does. Times come from the injectable ``now``; post and rule ids are
increasing numeric strings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self

from aiohttp import web

TOKEN = "fake-bearer-token"
FIRST_POST_ID = 1_860_000_000_000_000_000
SEARCH_DEFAULT_LAG = timedelta(seconds=30)  # recent search's end_time defaults to now - 30 s
RULE_MAX_CHARS = 512
GRANULARITIES = {"minute": 60, "hour": 3600, "day": 86400}  # counts: seconds a bucket
COUNTS_TOKEN = "1jzu9lk96gu5npw"
JsonObject = dict[str, Any]


@dataclass(frozen=True)
class FakeUser:
    id: str
    username: str
    name: str
    followers: int = 0
    verified: bool = False


@dataclass(frozen=True)
class FakePost:
    id: str
    text: str
    created_at: datetime
    author: FakeUser
    lang: str = "en"
    likes: int = 0
    reposts: int = 0


@dataclass(frozen=True)
class FakeRule:
    id: str
    value: str
    tag: str


# --- what one stream connection does, step by step ------------------------------------


@dataclass(frozen=True)
class Send:
    """One post line."""

    post: FakePost


@dataclass(frozen=True)
class KeepAlive:
    """A blank ``\\r\\n`` line."""


@dataclass(frozen=True)
class Raw:
    """Bytes as they are (half a line, garbage)."""

    data: bytes


@dataclass(frozen=True)
class StreamError:
    """An in-stream ``{"errors": [...]}`` line."""

    errors: Sequence[JsonObject]


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Drop:
    """Close the TCP connection now: before the headers if first, else mid-body."""


@dataclass(frozen=True)
class Hang:
    """Send nothing more while the client stays."""


@dataclass(frozen=True)
class Status:
    """Reply with this HTTP status (an X problem body unless ``body`` is given)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: JsonObject | None = None


Action = Send | KeepAlive | Raw | StreamError | Pause | Drop | Hang | Status


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str]
    body: Any = None


class FakeX:
    def __init__(
        self,
        token: str = TOKEN,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        rule_cap: int = 25,
        keepalive_seconds: float = 20.0,
    ) -> None:
        self.token = token
        self.now = now
        self.rule_cap = rule_cap
        self.keepalive_seconds = keepalive_seconds
        self.posts: list[FakePost] = []
        self.rules: dict[str, FakeRule] = {}
        self.scripts: list[list[Action]] = []
        self.search_replies: list[Status] = []
        self.counts_replies: list[Status] = []
        self.counts_page_buckets = 1440  # X does not document its page size: a day of minutes
        self.counts_hang = False  # the counts endpoint answers nothing until the fake stops
        self.requests: list[Request] = []
        self.default_author = FakeUser("2244994945", "someone", "Someone", followers=10)
        self._next_post = FIRST_POST_ID
        self._next_rule = 1_800_000_000_000_000_000
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        app = web.Application(middlewares=[self._authenticate])
        app.router.add_get("/2/tweets/search/stream", self._stream)
        app.router.add_get("/2/tweets/search/stream/rules", self._get_rules)
        app.router.add_post("/2/tweets/search/stream/rules", self._post_rules)
        app.router.add_get("/2/tweets/search/recent", self._search)
        app.router.add_get("/2/tweets/counts/recent", self._counts)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- scripting --------------------------------------------------------------------------

    def publish(
        self,
        text: str,
        at: datetime,
        *,
        author: FakeUser | None = None,
        lang: str = "en",
        likes: int = 0,
        reposts: int = 0,
    ) -> FakePost:
        """A post that exists from now on (searchable once ``at`` is 30 s in the past)."""
        post = FakePost(
            str(self._next_post), text, at, author or self.default_author, lang, likes, reposts
        )
        self._next_post += 1
        self.posts.append(post)
        return post

    def add_rule(self, value: str, tag: str) -> FakeRule:
        rule = FakeRule(str(self._next_rule), value, tag)
        self._next_rule += 1
        self.rules[rule.id] = rule
        return rule

    def script(self, *actions: Action) -> None:
        """What the next stream connection does (scripts are played in order)."""
        self.scripts.append(list(actions))

    def requests_to(self, path: str, method: str = "GET") -> list[Request]:
        return [r for r in self.requests if r.path == path and r.method == method]

    # -- endpoints --------------------------------------------------------------------------

    @web.middleware
    async def _authenticate(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        body = None
        if request.can_read_body:
            with contextlib.suppress(ValueError):
                body = await request.json()
        self.requests.append(Request(request.method, request.path, dict(request.query), body))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _problem(401)
        response: web.StreamResponse = await handler(request)
        return response

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        script = self.scripts.pop(0) if self.scripts else []
        if script and isinstance(script[0], Status):
            return _reply(script[0])
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if script and isinstance(script[0], Drop):
            _abort(request)
            return response
        fields = _Fields(request.query)
        await response.prepare(request)
        try:
            for action in script:
                match action:
                    case Send(post):
                        await response.write(self._stream_line(post, fields))
                    case KeepAlive():
                        await response.write(b"\r\n")
                    case Raw(data):
                        await response.write(data)
                    case StreamError(errors):
                        await response.write(json.dumps({"errors": errors}).encode() + b"\r\n")
                    case Pause(seconds):
                        await asyncio.sleep(seconds)
                    case Drop():
                        _abort(request)
                        return response
                    case Hang():
                        await self._idle(request, response, keepalive=False)
                        return response
            await self._idle(request, response, keepalive=True)
        except ConnectionResetError:
            pass  # the client left
        return response

    async def _get_rules(self, request: web.Request) -> web.Response:
        rules = [_rule_json(r) for r in self.rules.values()]
        body: JsonObject = {"meta": {"sent": _x_time(self.now()), "result_count": len(rules)}}
        if rules:
            body["data"] = rules
        return web.json_response(body)

    async def _post_rules(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _problem(400, body=_invalid("body", "the body is not JSON"))
        dry_run = request.query.get("dry_run") == "true"
        if isinstance(body, dict) and isinstance(body.get("add"), list):
            return self._add_rules(body["add"], dry_run)
        if isinstance(body, dict) and isinstance(body.get("delete"), dict):
            return self._delete_rules(body["delete"].get("ids", []), dry_run)
        return _problem(400, body=_invalid("body", "expected 'add' or 'delete'"))

    def _add_rules(self, items: list[Any], dry_run: bool) -> web.Response:
        errors: list[JsonObject] = []
        valid: list[tuple[str, str]] = []
        values = {r.value: r.id for r in self.rules.values()}
        for item in items:
            value = str(item.get("value", "")) if isinstance(item, dict) else ""
            tag = str(item.get("tag", "")) if isinstance(item, dict) else ""
            if not value.strip() or len(value) > RULE_MAX_CHARS:
                errors.append(
                    {
                        "value": value,
                        "details": [f"Rules must be 1 to {RULE_MAX_CHARS} characters long"],
                        "title": "UnprocessableEntity",
                        "type": "https://api.twitter.com/2/problems/invalid-rules",
                    }
                )
            elif value in values:
                errors.append(
                    {
                        "value": value,
                        "id": values[value],
                        "title": "DuplicateRule",
                        "type": "https://api.twitter.com/2/problems/duplicate-rules",
                    }
                )
            else:
                valid.append((value, tag))
        invalid = len(errors)
        if len(self.rules) + len(valid) > self.rule_cap:
            errors += [
                {
                    "value": value,
                    "details": [f"Rule cap of {self.rule_cap} rules exceeded"],
                    "title": "RulesCapExceeded",
                    "type": "https://api.twitter.com/2/problems/rule-cap",
                }
                for value, _ in valid
            ]
            invalid, valid = len(items), []
        created = [FakeRule("dry-run", v, t) if dry_run else self.add_rule(v, t) for v, t in valid]
        summary = {
            "created": len(created),
            "not_created": len(items) - len(created),
            "valid": len(items) - invalid,
            "invalid": invalid,
        }
        body: JsonObject = {"meta": {"sent": _x_time(self.now()), "summary": summary}}
        if created:
            body["data"] = [_rule_json(r) for r in created]
        if errors:
            body["errors"] = errors
        cap_or_invalid = any(e["title"] != "DuplicateRule" for e in errors)
        return web.json_response(body, status=400 if cap_or_invalid else 200)

    def _delete_rules(self, ids: list[Any], dry_run: bool) -> web.Response:
        known = [str(i) for i in ids if str(i) in self.rules]
        if not dry_run:
            for rule_id in known:
                del self.rules[rule_id]
        summary = {"deleted": len(known), "not_deleted": len(ids) - len(known)}
        return web.json_response({"meta": {"sent": _x_time(self.now()), "summary": summary}})

    async def _search(self, request: web.Request) -> web.Response:
        if self.search_replies:
            return _reply(self.search_replies.pop(0))
        query = request.query
        try:
            terms = _query_terms(query["query"])
            size = int(query.get("max_results", "10"))
            if not 10 <= size <= 100:
                raise ValueError("max_results must be between 10 and 100")
            now = self.now()
            end = _parse_time(query.get("end_time")) or now - SEARCH_DEFAULT_LAG
            start = _parse_time(query.get("start_time")) or now - timedelta(days=7)
            if start >= end:
                raise ValueError("start_time must be before end_time")
            since = int(query.get("since_id", "0"))
            token = query.get("next_token")
            until = _token_id(token) if token else None
        except (KeyError, ValueError) as exc:
            return _problem(400, body=_invalid("query", str(exc)))
        found = [
            p
            for p in self.posts
            if start <= p.created_at < end
            and int(p.id) > since
            and (until is None or int(p.id) < until)
            and _matches(terms, p.text)
        ]
        found.sort(key=lambda p: int(p.id), reverse=True)
        page, more = found[:size], found[size:]
        if not page:
            return web.json_response({"meta": {"result_count": 0}})
        fields = _Fields(request.query)
        meta: JsonObject = {
            "newest_id": page[0].id,
            "oldest_id": page[-1].id,
            "result_count": len(page),
        }
        if more:
            meta["next_token"] = f"b26v89c19zqg8o3f{page[-1].id}"
        body: JsonObject = {"data": [fields.post(p) for p in page], "meta": meta}
        body.update(fields.includes(page))
        return web.json_response(body)

    async def _counts(self, request: web.Request) -> web.Response:
        if self.counts_hang:
            await self._stopping.wait()
        if self.counts_replies:
            return _reply(self.counts_replies.pop(0))
        query = request.query
        try:
            terms = _query_terms(query["query"])
            granularity = query.get("granularity", "hour")
            if granularity not in GRANULARITIES:
                raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}")
            step = GRANULARITIES[granularity]
            now = self.now()
            end = _parse_time(query.get("end_time")) or now - SEARCH_DEFAULT_LAG
            start = _parse_time(query.get("start_time")) or end - timedelta(days=7)
            if start >= end:
                raise ValueError("start_time must be before end_time")
            if start < now - timedelta(days=7):
                raise ValueError("start_time must be within the last 7 days")
            token = query.get("next_token")
            first = _counts_token_index(token) if token else 0
        except (KeyError, ValueError) as exc:
            return _problem(400, body=_invalid("query", str(exc)))
        origin = datetime.fromtimestamp(start.timestamp() // step * step, UTC)
        buckets = math.ceil((end - origin).total_seconds() / step)  # the last one may be partial
        counts = [0] * buckets
        for post in self.posts:
            if start <= post.created_at < end and _matches(terms, post.text):
                counts[int((post.created_at - origin).total_seconds() // step)] += 1
        page = range(first, min(first + self.counts_page_buckets, buckets))
        data = [
            {
                "end": _x_time(origin + (i + 1) * timedelta(seconds=step)),
                "start": _x_time(origin + i * timedelta(seconds=step)),
                "tweet_count": counts[i],
            }
            for i in page
        ]
        meta: JsonObject = {"total_tweet_count": sum(counts[i] for i in page)}
        if page.stop < buckets:
            meta["next_token"] = f"{COUNTS_TOKEN}{page.stop}"
        return web.json_response({"data": data, "meta": meta})

    # -- helpers ----------------------------------------------------------------------------

    def _stream_line(self, post: FakePost, fields: _Fields) -> bytes:
        terms = {rule.id: _query_terms(rule.value) for rule in self.rules.values()}
        matching = [
            {"id": rule.id, "tag": rule.tag}
            for rule in self.rules.values()
            if _matches(terms[rule.id], post.text)
        ]
        line: JsonObject = {"data": fields.post(post), "matching_rules": matching}
        line.update(fields.includes([post]))
        return json.dumps(line, ensure_ascii=False).encode() + b"\r\n"

    async def _idle(
        self, request: web.Request, response: web.StreamResponse, keepalive: bool
    ) -> None:
        """Wait while the client stays (and the server runs), sending keep-alives if asked."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not self._stopping.is_set() and not _gone(request):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 0.01)
            if keepalive and loop.time() - last >= self.keepalive_seconds:
                await response.write(b"\r\n")
                last = loop.time()


class _Fields:
    """The fields a request asked for; X renders only those (plus ``id`` and ``text``)."""

    def __init__(self, query: Mapping[str, str]) -> None:
        self.post_fields = set(query.get("tweet.fields", "").split(","))
        self.expansions = set(query.get("expansions", "").split(","))
        self.user_fields = set(query.get("user.fields", "").split(","))

    def post(self, post: FakePost) -> JsonObject:
        out: JsonObject = {"id": post.id, "text": post.text, "edit_history_tweet_ids": [post.id]}
        if "created_at" in self.post_fields:
            out["created_at"] = _x_time(post.created_at)
        if "lang" in self.post_fields:
            out["lang"] = post.lang
        if "author_id" in self.post_fields:
            out["author_id"] = post.author.id
        if "conversation_id" in self.post_fields:
            out["conversation_id"] = post.id
        if "public_metrics" in self.post_fields:
            out["public_metrics"] = {
                "retweet_count": post.reposts,
                "reply_count": 0,
                "like_count": post.likes,
                "quote_count": 0,
                "bookmark_count": 0,
                "impression_count": 0,
            }
        return out

    def includes(self, posts: Sequence[FakePost]) -> JsonObject:
        if "author_id" not in self.expansions:
            return {}
        users = {p.author.id: self.user(p.author) for p in posts}
        return {"includes": {"users": list(users.values())}}

    def user(self, user: FakeUser) -> JsonObject:
        out: JsonObject = {"id": user.id, "name": user.name, "username": user.username}
        if "verified" in self.user_fields:
            out["verified"] = user.verified
        if "public_metrics" in self.user_fields:
            out["public_metrics"] = {
                "followers_count": user.followers,
                "following_count": 0,
                "tweet_count": 0,
                "listed_count": 0,
                "like_count": 0,
            }
        return out


# --- X's query syntax, the small part rules use: terms, "quoted phrases", OR ---------------

_TOKEN_RE = re.compile(r'"((?:\\.|[^"\\])*)"|(\S+)')


def _query_terms(query: str) -> list[str]:
    if not query.strip():
        raise ValueError("query must not be empty")
    terms = []
    for quoted, bare in _TOKEN_RE.findall(query):
        if bare == "OR":
            continue
        terms.append(re.sub(r"\\(.)", r"\1", quoted) if quoted else bare)
    return terms


def _matches(terms: Sequence[str], text: str) -> bool:
    folded = text.casefold()
    return any(re.search(rf"(?<!\w){re.escape(term.casefold())}(?!\w)", folded) for term in terms)


# --- small helpers -----------------------------------------------------------------------


def _x_time(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


def _counts_token_index(token: str) -> int:
    if not token.startswith(COUNTS_TOKEN):
        raise ValueError("invalid next_token")
    return int(token.removeprefix(COUNTS_TOKEN))


def _token_id(token: str) -> int:
    if not token.startswith("b26v89c19zqg8o3f"):
        raise ValueError("invalid next_token")
    return int(token.removeprefix("b26v89c19zqg8o3f"))


def _rule_json(rule: FakeRule) -> JsonObject:
    return {"id": rule.id, "value": rule.value, "tag": rule.tag}


def _invalid(parameter: str, message: str) -> JsonObject:
    return {
        "errors": [{"parameters": {parameter: []}, "message": message}],
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": "https://api.twitter.com/2/problems/invalid-request",
    }


def _reply(scripted: Status) -> web.Response:
    return _problem(scripted.status, scripted.headers, scripted.body)


def _problem(
    status: int, headers: Mapping[str, str] | None = None, body: JsonObject | None = None
) -> web.Response:
    phrase = HTTPStatus(status).phrase
    default = {"title": phrase, "detail": phrase, "type": "about:blank", "status": status}
    return web.json_response(body or default, status=status, headers=headers)


def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()
