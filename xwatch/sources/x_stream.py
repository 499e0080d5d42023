"""The X API v2 filtered stream as a source: rules from the brands, backfill by search.

How it works, in the order things happen:

1. **Rules.** Each brand becomes one stream rule, tagged with the brand id, whose value
   is the brand's terms joined with ``OR`` (multi-word, non-ASCII or unusual terms are
   quoted); terms that do not fit X's 512 characters go to more rules with the same tag.
   At start (``sync_rules``) the app's rules are made to match exactly: missing rules
   are added and every other rule is deleted (an app's rules feed its one stream, so a
   rule xwatch did not derive is stale). Problems are reported (``rule_cap`` when X's
   rule cap is hit, ``rules`` otherwise) and streaming goes on with the rules there are.
2. **Stream.** ``GET /2/tweets/search/stream`` sends one JSON document per ``\\r\\n``-ended
   line and a blank line about every 20 s as a keep-alive. Bytes are buffered until a
   line is complete; a connection that breaks mid-line loses only that partial line. A
   post line becomes mentions (author from ``includes.users``, brands from the tags of
   ``matching_rules``); an ``{"errors": [...]}`` line is reported (``stream_error``) and
   the stream goes on; anything else is rejected. No byte at all for ``stall_seconds``
   means the connection is dead (``stall``).
3. **Reconnect.** ``Backoff`` is X's documented schedule: after a network error (refused,
   reset, closed, stalled) reconnect at once, then 250 ms more per attempt up to 16 s;
   after an HTTP error 5 s, doubling up to 320 s; after 429 60 s, doubling, or until
   ``x-rate-limit-reset`` when that is later. A connection that delivers a post, or stays
   up for a minute, resets it. 401/403 get a hint in the report and the HTTP schedule:
   an operator may fix the token or the plan, and nothing ever loops tightly.
4. **Backfill.** What was posted while the stream was down is lost to the stream. So a
   disconnect opens a *gap* (from the newest post seen, or from the source's start; after
   a restart, from the newest post the daemon had ingested, ``resume_after``), and
   once reconnected ``GET /2/tweets/search/recent`` is asked, rule by rule, for the posts
   after it (``since_id``, else ``start_time``; never more than ``backfill_max_seconds``
   back), page by page; they are yielded oldest first before the stream resumes. Recent
   search only sees posts older than 30 s, so the last seconds before the reconnect come
   from a second, *tail* search 40 s after it (triggered by the stream's next line). A
   failed search (429 included) is retried later on its own schedule; the stream goes on.
5. **Exactly once.** A post can come from the stream and from a search; the ids of the
   last 100 000 posts are kept and a post is yielded the first time only.

With ``warm_start``, before all this (at ``async with``), ``GET /2/tweets/counts/recent``
is asked, brand by brand (its rules' queries, page by page), for its posts per minute over
the last 7 days, up to a minute that search already sees. They are kept in
``warm_counts`` for the daemon to teach the brands' volume detectors
(``Pipeline.warm_start``), and the first gap starts where they end, so that the posts
after it come through search, none counted twice. A brand whose counts fail (an HTTP
error, a 429, a bad page) or do not arrive within ``warm_start_timeout_seconds`` is
reported (``warm_start``) and starts cold; after a 429 the others are not asked. After a
restart (``resume_after``) the counts end at the minute of the position taken up from,
and the posts after it come through search (a brand new since then misses at most the
seconds of that minute before the position).

The bearer token is read from ``config.bearer_token_env`` (missing when the source is made:
``MissingTokenError``, and the daemon does not start) and only ever put in the
``Authorization`` header, never in a log line or a report.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from types import TracebackType
from typing import Any, NamedTuple, Self, TypeGuard

import aiohttp

from xwatch.config import Brand, XStreamSourceConfig
from xwatch.errors import ConfigError, PayloadError, Problem, XwatchError
from xwatch.model import Mention, SourcePosition
from xwatch.sources import RateLimitReport, SourceReport
from xwatch.sources.payload import mentions_from_x, parse_payload

log = logging.getLogger("xwatch.sources.x_stream")

STREAM_PATH = "/2/tweets/search/stream"
RULES_PATH = "/2/tweets/search/stream/rules"
SEARCH_PATH = "/2/tweets/search/recent"
COUNTS_PATH = "/2/tweets/counts/recent"
ENDPOINTS = {
    STREAM_PATH: "stream",
    RULES_PATH: "rules",
    SEARCH_PATH: "search",
    COUNTS_PATH: "counts",
}
"""The endpoint label of each path's rate limit (``RateLimitReport``)."""
FIELDS = {
    "tweet.fields": (
        "created_at,lang,public_metrics,author_id,referenced_tweets,entities,conversation_id"
    ),
    "expansions": "author_id,referenced_tweets.id",
    "user.fields": "username,name,verified,public_metrics",
}
RULE_MAX_CHARS = 512
SEARCH_PAGE_SIZE = 100
SEARCH_MAX_PAGES = 50  # per rule and backfill: a longer gap keeps its newest 5 000 posts
SEARCH_LAG = timedelta(seconds=30)  # recent search's end_time defaults to 30 s ago
CLOCK_MARGIN = timedelta(seconds=10)  # for our clock against X's
SEARCH_WINDOW = timedelta(days=7) - timedelta(minutes=5)  # recent search covers 7 days
COUNTS_MAX_PAGES = 200  # per query: a week of minutes, however X pages them
MINUTE = timedelta(minutes=1)
HEALTHY = timedelta(minutes=1)  # a connection up this long resets the backoff, posts or not
REMEMBERED_IDS = 100_000
MAX_LINE_BYTES = 1024 * 1024
CONNECT_TIMEOUT_SECONDS = 30.0  # until the stream's response headers
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30.0)  # rules and search requests
USER_AGENT = "xwatch"


class XStreamError(XwatchError):
    """The X stream source cannot start."""


class MissingTokenError(ConfigError):
    """The bearer token is not in the environment: the daemon must not start (it would
    try again every 5 minutes for good, the brands unwatched)."""

    def __init__(self, source: str, variable: str) -> None:
        self.variable = variable
        message = (
            f"{variable} is not set; the x_stream source {source!r} needs the X API bearer token"
        )
        super().__init__([Problem("environment", 0, message)])


class Backoff:
    """X's reconnect schedule. Pure: it counts attempts and says how long to wait.

    * network error: 0 s, 0.25 s, 0.5 s, ... (+250 ms an attempt), at most 16 s;
    * HTTP error: 5 s, 10 s, 20 s, ... (doubling), at most 320 s;
    * HTTP 429: 60 s, 120 s, ... (doubling, at most 15 min), or the time until the rate
      limit resets if that is longer.

    The three counters are independent; ``reset()`` restarts them all.
    """

    NETWORK_STEP = 0.25
    NETWORK_MAX = 16.0
    HTTP_FIRST = 5.0
    HTTP_MAX = 320.0
    RATE_LIMIT_FIRST = 60.0
    RATE_LIMIT_MAX = 900.0
    RESET_MAX = 86400.0  # a reset header further away than this is not believed

    def __init__(self) -> None:
        self.network_errors = 0
        self.http_errors = 0
        self.rate_limits = 0

    def after_network_error(self) -> float:
        delay = min(self.NETWORK_STEP * self.network_errors, self.NETWORK_MAX)
        self.network_errors += 1
        return delay

    def after_http_error(self) -> float:
        delay = min(self.HTTP_FIRST * 2.0 ** min(self.http_errors, 30), self.HTTP_MAX)
        self.http_errors += 1
        return delay

    def after_rate_limit(self, reset_in: float | None = None) -> float:
        delay = min(self.RATE_LIMIT_FIRST * 2.0 ** min(self.rate_limits, 30), self.RATE_LIMIT_MAX)
        self.rate_limits += 1
        if reset_in is not None:
            delay = max(delay, min(reset_in, self.RESET_MAX))
        return delay

    def reset(self) -> None:
        self.network_errors = self.http_errors = self.rate_limits = 0


class StreamRule(NamedTuple):
    value: str
    tag: str


_PLAIN_TERM = re.compile(r"[#@]?[A-Za-z0-9_]+|\$[A-Za-z][A-Za-z0-9_]*")


def rule_term(term: str) -> str:
    """A brand term as X rule syntax: plain words, #hashtags, @handles and $cashtags as
    they are; anything else (several words, non-ASCII, punctuation, ``OR``) quoted."""
    term = " ".join(term.split())
    if _PLAIN_TERM.fullmatch(term) and term not in ("OR", "AND"):
        return term
    return '"' + term.replace("\\", "\\\\").replace('"', '\\"') + '"'


def stream_rules(brands: Iterable[Brand]) -> list[StreamRule]:
    """One rule per brand (tag: its id); more when its terms exceed ``RULE_MAX_CHARS``."""
    rules: list[StreamRule] = []
    for brand in brands:
        value = ""
        for term in dict.fromkeys(rule_term(t) for t in brand.terms):
            longer = f"{value} OR {term}" if value else term
            if value and len(longer) > RULE_MAX_CHARS:
                rules.append(StreamRule(value, brand.id))
                longer = term
            value = longer
        rules.append(StreamRule(value, brand.id))
    return list(dict.fromkeys(rules))


@dataclasses.dataclass
class _Gap:
    """Posts after ``since_id`` (or, without one, ``since_time``) may be missing."""

    since_id: str | None
    since_time: datetime
    covered_from: datetime | None = None  # the stream has delivered everything since then
    not_before: datetime | None = None  # no search before then (tail, or after a failure)


class _Failure(Exception):
    """Why a connection or a request failed; ``kind`` is the report's problem label."""

    def __init__(self, kind: str, detail: str, reset_at: float | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.reset_at = reset_at  # unix time the rate limit resets (429)


class _RecentIds:
    """The last ``capacity`` ids seen: "was this post yielded already?"."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._order: deque[str] = deque()
        self._ids: set[str] = set()

    def add(self, post_id: str) -> bool:
        """Remember ``post_id``; False if it was already known."""
        if post_id in self._ids:
            return False
        self._ids.add(post_id)
        self._order.append(post_id)
        if len(self._order) > self.capacity:
            self._ids.discard(self._order.popleft())
        return True


def _utcnow() -> datetime:
    return datetime.now(UTC)


class XStreamSource:
    live = True

    def __init__(
        self,
        config: XStreamSourceConfig,
        brands: Sequence[Brand],
        report: SourceReport,
        *,
        environ: Mapping[str, str] = os.environ,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], datetime] = _utcnow,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.report = report
        self._rate_limit = report.rate_limit if isinstance(report, RateLimitReport) else None
        self.rules = stream_rules(brands)
        self.backoff = Backoff()  # the stream's
        self._search_backoff = Backoff()
        self._brand_ids = frozenset(b.id for b in brands)
        self._environ = environ
        if not environ.get(config.bearer_token_env, "").strip():
            raise MissingTokenError(config.name, config.bearer_token_env)
        self._sleep = sleep
        self._now = now
        self._session = session
        self._own_session = False
        self._headers: dict[str, str] = {}
        self._seen = _RecentIds(REMEMBERED_IDS)
        self._newest: tuple[int, datetime] | None = None  # newest post id and its time
        self._resume: SourcePosition | None = None  # where a restart takes up (resume_after)
        self._gap: _Gap | None = None
        self._up = False
        self._iterator: AsyncGenerator[Mention, None] | None = None
        # with warm_start: each brand's posts per minute, the last 7 days (set at entry)
        self.warm_counts: dict[str, list[tuple[datetime, int]]] = {}

    async def __aenter__(self) -> Self:
        env = self.config.bearer_token_env
        token = self._environ.get(env, "").strip()
        if not token:
            raise XStreamError(
                f"source {self.name!r}: the X API bearer token is missing; "
                f"set the environment variable {env}"
            )
        self._headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        missed_since = self._now()
        if self.config.warm_start:
            missed_since = await self._warm_start()
        if self.config.backfill:  # whatever the first connection misses is a gap too
            self._gap = self._first_gap(missed_since)
        return self

    def resume_after(self, position: SourcePosition) -> None:
        """Take up after ``position`` (``sources.Resumable``): the first backfill fetches
        the posts made since, while xwatch was down (``backfill_max_seconds`` back at
        most); told before ``async with``."""
        self._resume = position
        number = _id_number(position.post_id)
        if number is not None:
            self._newest = (number, position.created_at)

    def _first_gap(self, missed_since: datetime) -> _Gap:
        """What the first connection may miss: the posts since the position the daemon
        resumes after (a restart), else since the source started (or its counts end)."""
        resume = self._resume
        if resume is None:
            return _Gap(since_id=None, since_time=missed_since)
        log.info(
            "source %s: taking up after post %s of %s: the posts since come through search",
            self.name,
            resume.post_id,
            f"{resume.created_at:%Y-%m-%d %H:%M:%S} UTC",
            extra={"event": "source_resumed", "source": self.name},
        )
        number = _id_number(resume.post_id)
        return _Gap(since_id=None if number is None else str(number), since_time=resume.created_at)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._iterator is not None:
            await self._iterator.aclose()
            self._iterator = None
        self._set_up(False)
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
            self._own_session = False

    def __aiter__(self) -> AsyncIterator[Mention]:
        if self._iterator is None:
            self._iterator = self._run()
        return self._iterator

    # -- the loop: connect, read, fail, wait, again ------------------------------------------

    async def _run(self) -> AsyncGenerator[Mention, None]:
        if self._session is None:
            raise RuntimeError("XStreamSource used outside 'async with'")
        if self.config.sync_rules:
            await self._sync_rules()
        while True:
            failure = _Failure("network", "the server closed the stream")
            try:
                async with contextlib.aclosing(self._connection()) as mentions:
                    async for mention in mentions:
                        yield mention
            except _Failure as exc:
                failure = exc
            except (aiohttp.ClientError, OSError) as exc:  # OSError: refused, timeouts
                failure = _Failure("network", _describe(exc))
            self._set_up(False)
            if self.config.backfill and self._gap is None:
                self._gap = self._gap_from_newest()
            delay = self._delay(self.backoff, failure)
            self.report.problem(self.name, failure.kind, failure.detail)
            self.report.reconnecting(self.name, delay, failure.kind)
            await self._sleep(delay)

    async def _connection(self) -> AsyncGenerator[Mention, None]:
        """One stream connection: the backfill it is due, then its posts, until it ends."""
        async with await self._open_stream() as response:
            connected_at = self._now()
            self._set_up(True)
            if self._gap is not None:
                self._gap.covered_from = connected_at
            for mention in await self._backfill_if_due():
                yield mention
            buffer = b""
            while True:
                try:
                    async with asyncio.timeout(self.config.stall_seconds):
                        chunk = await response.content.readany()
                except TimeoutError:
                    stalled = f"nothing received for {self.config.stall_seconds:g} s"
                    raise _Failure("stall", stalled) from None
                if not chunk:
                    return  # the server ended the stream (a partial line is dropped)
                *lines, buffer = (buffer + chunk).split(b"\n")
                if len(buffer) > MAX_LINE_BYTES:
                    raise _Failure("network", f"a line longer than {MAX_LINE_BYTES} bytes")
                for line in lines:
                    for mention in await self._backfill_if_due():
                        yield mention
                    mentions = self._read_line(line)
                    if mentions or self._now() - connected_at >= HEALTHY:
                        self.backoff.reset()
                    for mention in self._fresh(mentions):
                        yield mention

    async def _open_stream(self) -> aiohttp.ClientResponse:
        assert self._session is not None
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
            response = await self._session.get(
                self._url(STREAM_PATH), params=FIELDS, headers=self._headers
            )
            self._note_rate_limit(STREAM_PATH, response)
            if response.status == 200:
                return response
            async with response:
                raise self._http_failure(response.status, await _json_body(response), response)

    def _read_line(self, line: bytes) -> list[Mention]:
        """The mentions in one stream line: none for a keep-alive, an error or a bad line."""
        line = line.strip()
        if not line:
            return []
        document = _json_object(line)
        if document is not None and "errors" in document and "data" not in document:
            self.report.problem(self.name, "stream_error", _errors_text(document["errors"]))
            return []
        try:
            mentions = parse_payload(line, self.name)
        except PayloadError as exc:
            self.report.rejected(self.name, exc.reason, exc.detail)
            return []
        brands = self._brands_of(document or {})
        return [m if m.brands else dataclasses.replace(m, brands=brands) for m in mentions]

    def _brands_of(self, document: Mapping[str, Any]) -> tuple[str, ...]:
        """The brands whose rules a stream line matched (``matching_rules`` tags)."""
        rules = document.get("matching_rules")
        if not isinstance(rules, list):
            return ()
        tags = (rule.get("tag") for rule in rules if isinstance(rule, dict))
        return tuple(
            dict.fromkeys(tag for tag in tags if isinstance(tag, str) and tag in self._brand_ids)
        )

    def _fresh(self, mentions: Iterable[Mention]) -> list[Mention]:
        """Count and remember ``mentions``; those not yielded before."""
        fresh = []
        for mention in mentions:
            self.report.received(self.name)
            number = _id_number(mention.id)
            if number is not None and (self._newest is None or number > self._newest[0]):
                self._newest = (number, mention.created_at)
            if self._seen.add(mention.id):
                fresh.append(mention)
        return fresh

    def _delay(self, backoff: Backoff, failure: _Failure) -> float:
        if failure.kind == "http_429":
            reset_at = failure.reset_at
            return backoff.after_rate_limit(
                None if reset_at is None else reset_at - self._now().timestamp()
            )
        if failure.kind.startswith("http_"):
            return backoff.after_http_error()
        return backoff.after_network_error()

    def _set_up(self, up: bool) -> None:
        if up != self._up:
            self._up = up
            self.report.connected(self.name, up)

    # -- backfill -------------------------------------------------------------------------

    def _gap_from_newest(self) -> _Gap:
        if self._newest is None:
            return _Gap(since_id=None, since_time=self._now())
        number, created_at = self._newest
        return _Gap(since_id=str(number), since_time=created_at)

    async def _backfill_if_due(self) -> list[Mention]:
        """The missed posts search can give now (oldest first); [] when nothing is due."""
        gap, now = self._gap, self._now()
        if gap is None or gap.covered_from is None:
            return []
        if gap.not_before is not None and now < gap.not_before:
            return []
        searched_until = now - SEARCH_LAG - CLOCK_MARGIN  # what search sees, at least
        tail_due = max(gap.covered_from, gap.since_time) + SEARCH_LAG + CLOCK_MARGIN
        if searched_until <= gap.since_time:
            gap.not_before = tail_due  # too recent for search yet
            return []
        try:
            found = await self._search(self._cursor(gap, now))
        except (_Failure, aiohttp.ClientError, OSError) as exc:
            failure = _as_failure(exc)
            delay = self._delay(self._search_backoff, failure)
            gap.not_before = now + timedelta(seconds=delay)
            self.report.problem(self.name, failure.kind, f"backfill search: {failure.detail}")
            return []
        self._search_backoff.reset()
        # what is left: after the newest post found, or (none found) after searched_until
        newest = max(found, key=lambda m: _id_number(m.id) or 0, default=None)
        gap.since_id = None if newest is None else newest.id
        gap.since_time = searched_until
        if searched_until >= gap.covered_from:
            self._gap = None
        else:
            gap.not_before = tail_due
        log.info("source %s: backfill found %d posts", self.name, len(found))
        return self._fresh(found)

    def _cursor(self, gap: _Gap, now: datetime) -> dict[str, str]:
        """``since_id`` or ``start_time`` for a search, at most ``backfill_max_seconds`` back."""
        floor = now - min(timedelta(seconds=self.config.backfill_max_seconds), SEARCH_WINDOW)
        if gap.since_time < floor:
            log.warning(
                "source %s: gap since %s, backfilled from %s", self.name, gap.since_time, floor
            )
            return {"start_time": _x_time(floor)}
        if gap.since_id is not None:
            return {"since_id": gap.since_id}
        return {"start_time": _x_time(gap.since_time)}

    async def _search(self, cursor: Mapping[str, str]) -> list[Mention]:
        """Every post matching a rule after ``cursor``, oldest first, with its brands."""
        found: dict[str, Mention] = {}
        for rule in self.rules:
            params = {"query": rule.value, "max_results": str(SEARCH_PAGE_SIZE), **FIELDS}
            params.update(cursor)
            for _ in range(SEARCH_MAX_PAGES):
                document = await self._get_json(SEARCH_PATH, params)
                for mention in self._search_page(document):
                    known = found.get(mention.id, mention)
                    brands = tuple(dict.fromkeys((*known.brands, rule.tag)))
                    found[mention.id] = dataclasses.replace(known, brands=brands)
                meta = document.get("meta")
                token = meta.get("next_token") if isinstance(meta, dict) else None
                if not isinstance(token, str):
                    break
                params["next_token"] = token
            else:
                self.report.problem(
                    self.name,
                    "backfill_truncated",
                    f"rule {rule.tag!r}: more than {SEARCH_MAX_PAGES} pages; older posts skipped",
                )
        return sorted(found.values(), key=lambda m: (m.created_at, _id_number(m.id) or 0))

    def _search_page(self, document: Mapping[str, Any]) -> list[Mention]:
        data = document.get("data")
        includes = document.get("includes", {})
        mentions: list[Mention] = []
        for post in data if isinstance(data, list) else []:
            try:
                mentions += mentions_from_x({"data": post, "includes": includes}, self.name)
            except PayloadError as exc:
                self.report.rejected(self.name, exc.reason, f"search: {exc.detail}")
        return mentions

    # -- warm start -------------------------------------------------------------------------

    async def _warm_start(self) -> datetime:
        """Fill ``warm_counts``: each brand's posts per minute from 7 days ago to the newest
        minute recent search sees (returned: the posts after it are the first gap's).
        Never raises: what fails is reported, and those brands start cold."""
        now = self._now()
        until = _minute(now - SEARCH_LAG - CLOCK_MARGIN)
        since = _minute(now - SEARCH_WINDOW) + MINUTE
        if self._resume is not None and self._resume.created_at - since >= MINUTE:
            # a restart: the posts after the position come through search, not counts
            until = min(until, _minute(self._resume.created_at))
        queries: dict[str, list[str]] = {}
        for rule in self.rules:
            queries.setdefault(rule.tag, []).append(rule.value)
        try:
            async with asyncio.timeout(self.config.warm_start_timeout_seconds):
                for brand, values in queries.items():
                    try:
                        self.warm_counts[brand] = await self._brand_counts(values, since, until)
                    except (_Failure, aiohttp.ClientError, OSError) as exc:
                        failure = _as_failure(exc)
                        self.report.problem(
                            self.name, "warm_start", f"brand {brand!r}: {failure.detail}"
                        )
                        if failure.kind == "http_429":
                            break  # the others would be refused too
        except TimeoutError:
            self.report.problem(
                self.name,
                "warm_start",
                f"the counts took longer than {self.config.warm_start_timeout_seconds:g} s",
            )
        cold = [repr(brand) for brand in queries if brand not in self.warm_counts]
        if cold:
            log.warning(
                "source %s: no warm start for %s (they warm up live)", self.name, ", ".join(cold)
            )
        posts = sum(count for counts in self.warm_counts.values() for _, count in counts)
        log.info(
            "source %s: counts of %d brands' last %s (%d posts) for their warm start",
            self.name,
            len(self.warm_counts),
            until - since,
            posts,
        )
        return until

    async def _brand_counts(
        self, queries: Sequence[str], since: datetime, until: datetime
    ) -> list[tuple[datetime, int]]:
        """A brand's posts per minute in [since, until), every minute (0 where X has none),
        its queries' counts added up."""
        per_minute: dict[datetime, int] = {}
        for query in queries:
            for start, count in await self._counts(query, since, until):
                per_minute[start] = per_minute.get(start, 0) + count
        minutes = int((until - since) / MINUTE)
        return [
            (start, per_minute.get(start, 0))
            for start in (since + i * MINUTE for i in range(minutes))
        ]

    async def _counts(
        self, query: str, since: datetime, until: datetime
    ) -> list[tuple[datetime, int]]:
        """X's recent counts of one query, a minute each, page by page."""
        params = {
            "query": query,
            "granularity": "minute",
            "start_time": _x_time(since),
            "end_time": _x_time(until),
        }
        found: list[tuple[datetime, int]] = []
        for _ in range(COUNTS_MAX_PAGES):
            document = await self._get_json(COUNTS_PATH, params)
            data = document.get("data", [])
            for item in data if isinstance(data, list) else [data]:
                start = _count_start(item)
                count = item.get("tweet_count") if isinstance(item, dict) else None
                if start is None or not _is_count(count):
                    raise _Failure("bad_response", f"counts: not a count: {str(item)[:100]}")
                found.append((start, count))
            meta = document.get("meta")
            token = meta.get("next_token") if isinstance(meta, dict) else None
            if not isinstance(token, str):
                return found
            params["next_token"] = token
        raise _Failure("bad_response", f"counts: more than {COUNTS_MAX_PAGES} pages")

    # -- rules ----------------------------------------------------------------------------

    async def _sync_rules(self) -> None:
        """Make the app's stream rules exactly ``self.rules``; report problems, never raise."""
        try:
            status, document, response = await self._request("GET", RULES_PATH)
            if status != 200 or document is None:
                failure = self._http_failure(status, document, response)
                self.report.problem(self.name, "rules", f"reading the rules: {failure.detail}")
                return
            data = document.get("data")
            existing = [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []
            have = {StreamRule(str(r.get("value", "")), str(r.get("tag", ""))): r for r in existing}
            stale = [str(r.get("id")) for rule, r in have.items() if rule not in self.rules]
            missing = [rule for rule in self.rules if rule not in have]
            if stale:
                await self._change_rules({"delete": {"ids": stale}})
            if missing:
                await self._change_rules({"add": [rule._asdict() for rule in missing]})
            log.info(
                "source %s: rules synced (%d kept, %d added, %d deleted)",
                self.name,
                len(self.rules) - len(missing),
                len(missing),
                len(stale),
            )
        except (aiohttp.ClientError, OSError) as exc:
            self.report.problem(self.name, "rules", f"rule sync failed: {_describe(exc)}")

    async def _change_rules(self, body: Mapping[str, Any]) -> None:
        status, document, response = await self._request("POST", RULES_PATH, body=body)
        errors = (document or {}).get("errors")
        if isinstance(errors, list) and errors:
            for error in errors:
                kind = "rule_cap" if _is_rule_cap(error) else "rules"
                self.report.problem(self.name, kind, f"changing the rules: {_errors_text([error])}")
        elif status >= 300:
            failure = self._http_failure(status, document, response)
            self.report.problem(self.name, "rules", f"changing the rules: {failure.detail}")

    # -- HTTP -----------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + path

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> tuple[int, dict[str, Any] | None, aiohttp.ClientResponse]:
        assert self._session is not None
        async with self._session.request(
            method,
            self._url(path),
            params=params,
            json=body,
            headers=self._headers,
            timeout=REQUEST_TIMEOUT,
        ) as response:
            self._note_rate_limit(path, response)
            return response.status, await _json_body(response), response

    def _note_rate_limit(self, path: str, response: aiohttp.ClientResponse) -> None:
        """Tell the report what X's ``x-rate-limit-remaining``/``-reset`` headers say."""
        remaining = _natural(response.headers.get("x-rate-limit-remaining", ""))
        if self._rate_limit is None or remaining is None:
            return
        reset = _natural(response.headers.get("x-rate-limit-reset", ""))
        self._rate_limit(
            self.name,
            ENDPOINTS.get(path, "other"),
            remaining,
            float(reset) if reset is not None else None,
        )

    async def _get_json(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        status, document, response = await self._request("GET", path, params=params)
        if status != 200:
            raise self._http_failure(status, document, response)
        if document is None:
            raise _Failure("bad_response", f"{path}: the response is not a JSON object")
        return document

    def _http_failure(
        self, status: int, document: Mapping[str, Any] | None, response: aiohttp.ClientResponse
    ) -> _Failure:
        """A failure naming the status and X's explanation (and a hint for 401/403)."""
        document = document or {}
        title = document.get("title") or _phrase(status)
        detail = f"HTTP {status} {title}"
        if document.get("detail") and document.get("detail") != title:
            detail += f": {document['detail']}"
        if document.get("errors"):
            detail += f" ({_errors_text(document['errors'])})"
        if status == 401:
            detail += f"; check the bearer token in ${self.config.bearer_token_env}"
        elif status == 403:
            detail += "; the app's project may lack access to this endpoint (X plan)"
        kind = "http_429" if status == 429 else "http_5xx" if status >= 500 else "http_4xx"
        reset = _natural(response.headers.get("x-rate-limit-reset", ""))
        return _Failure(kind, detail[:500], float(reset) if reset is not None else None)


# --- small helpers -------------------------------------------------------------------------


async def _json_body(response: aiohttp.ClientResponse) -> dict[str, Any] | None:
    try:
        return _json_object(await response.read())
    except aiohttp.ClientPayloadError:
        return None


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):  # ValueError: JSON and UTF-8 errors
        return None
    return document if isinstance(document, dict) else None


def _errors_text(errors: object) -> str:
    """X's error objects in one short line: title, detail or message, value."""
    parts = []
    for error in errors if isinstance(errors, list) else [errors]:
        if isinstance(error, dict):
            words = [error.get(k) for k in ("title", "detail", "message", "value")]
            details = error.get("details")
            words += details if isinstance(details, list) else []
            parts.append(": ".join(str(w) for w in words if w))
        else:
            parts.append(str(error))
    return "; ".join(parts)[:500]


def _is_rule_cap(error: object) -> bool:
    if not isinstance(error, dict):
        return False
    text = " ".join(str(error.get(k, "")) for k in ("title", "type", "details")).lower()
    return "rulescap" in text or "rule-cap" in text or "rule cap" in text


def _id_number(post_id: str) -> int | None:
    return _natural(post_id)


def _natural(text: str, digits: int = 19) -> int | None:
    """A whole number written in ASCII digits, at most ``digits`` of them (X's ids and
    headers); None for anything else ("²" is a digit to ``str.isdigit``, not to ``int``,
    and 5,000 digits are no count or time)."""
    text = text.strip()
    if not (0 < len(text) <= digits and text.isascii() and text.isdigit()):
        return None
    return int(text)


def _minute(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


def _count_start(item: object) -> datetime | None:
    """The start of a count's minute (X: ``2026-11-16T09:00:00.000Z``), or None."""
    start = item.get("start") if isinstance(item, dict) else None
    if not isinstance(start, str):
        return None
    try:
        parsed = datetime.fromisoformat(start)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else None


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _x_time(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _as_failure(exc: BaseException) -> _Failure:
    """A request's failure as one: itself, or a network one (refused, reset, timed out)."""
    return exc if isinstance(exc, _Failure) else _Failure("network", _describe(exc))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
