"""The X filtered-stream source against a local fake of X's API (tests/fake_x.py).

Nothing waits for real except the stall test (a fraction of a second): the source's
``sleep`` records the delay and returns, and its clock is a ``Clock`` the test moves.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from tests.factories import RecordingReport
from tests.fake_x import (
    TOKEN,
    Drop,
    FakePost,
    FakeUser,
    FakeX,
    Hang,
    KeepAlive,
    Pause,
    Raw,
    Send,
    Status,
    StreamError,
)
from tests.ports import free_port
from xwatch.config import Brand, XStreamSourceConfig
from xwatch.errors import ConfigError
from xwatch.model import Mention, SourcePosition
from xwatch.sources.x_stream import (
    COUNTS_PATH,
    RULE_MAX_CHARS,
    RULES_PATH,
    SEARCH_PATH,
    STREAM_PATH,
    Backoff,
    MissingTokenError,
    StreamRule,
    XStreamSource,
    stream_rules,
)

T0 = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
ENV = "XWATCH_X_BEARER_TOKEN"
KETTLEBIRD = Brand(id="kettlebird", name="Kettlebird", terms=("kettlebird", "kettle bird"))
ACME = Brand(id="acme", name="Acme", terms=("acme", "acme corp"))
FAN = FakeUser("1001", "kettlefan", "Kettle Fan", followers=12345, verified=True)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Clock:
    def __init__(self) -> None:
        self.current = T0

    def now(self) -> datetime:
        return self.current


class Enough(Exception):
    """Raised by ``Sleeps`` to end a source that would otherwise retry forever."""


class Sleeps:
    """The source's ``sleep``: records each delay, yields to the loop, returns at once."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.delays: list[float] = []
        self.stop_after = stop_after

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.stop_after is not None and len(self.delays) >= self.stop_after:
            raise Enough
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def report() -> RecordingReport:
    return RecordingReport()


@pytest_asyncio.fixture
async def fake(clock: Clock) -> AsyncIterator[FakeX]:
    async with FakeX(now=clock.now) as server:
        yield server


def x_source(
    fake: FakeX,
    clock: Clock,
    report: RecordingReport,
    sleeps: Sleeps,
    *,
    brands: Sequence[Brand] = (KETTLEBIRD,),
    environ: Mapping[str, str] | None = None,
    **config: Any,
) -> XStreamSource:
    settings = XStreamSourceConfig(type="x_stream", base_url=fake.url, **config)
    return XStreamSource(
        settings,
        brands,
        report,
        environ={ENV: TOKEN} if environ is None else environ,
        sleep=sleeps,
        now=clock.now,
    )


async def take(
    source: XStreamSource,
    count: int,
    clock: Clock | None = None,
    moves: Mapping[str, float] | None = None,
) -> list[Mention]:
    """The first ``count`` mentions; on mention ``k`` in ``moves``, the clock goes to moves[k]."""
    got: list[Mention] = []
    async with source:
        async for mention in source:
            got.append(mention)
            if clock is not None and moves and mention.id in moves:
                clock.current = at(moves[mention.id])
            if len(got) == count:
                break
    return got


def ids(items: Sequence[Mention | FakePost]) -> list[str]:
    return [item.id for item in items]


# --- pure parts ---------------------------------------------------------------------------


def test_a_position_is_after_another_by_time_then_by_id_as_a_number() -> None:
    first = SourcePosition("9", at(0))
    assert SourcePosition("10", at(0)).is_after(first)  # X's ids grow with time
    assert not first.is_after(SourcePosition("10", at(0)))
    assert SourcePosition("8", at(1)).is_after(first)
    assert not first.is_after(first)


def test_backoff_follows_x_reconnect_schedules() -> None:
    backoff = Backoff()
    network = [backoff.after_network_error() for _ in range(70)]
    assert network[:4] == [0.0, 0.25, 0.5, 0.75]
    assert network[64] == 16.0 and max(network) == 16.0 and network[-1] == 16.0
    http = [backoff.after_http_error() for _ in range(9)]
    assert http == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 320.0, 320.0]
    assert [backoff.after_rate_limit() for _ in range(3)] == [60.0, 120.0, 240.0]
    assert backoff.after_rate_limit(reset_in=30.0) == 480.0  # the longer of the two
    assert backoff.after_rate_limit(reset_in=1000.0) == 1000.0
    backoff.reset()
    assert backoff.after_network_error() == 0.0
    assert backoff.after_http_error() == 5.0
    assert backoff.after_rate_limit(reset_in=300.0) == 300.0


def test_stream_rules_quote_terms_and_split_at_the_length_limit() -> None:
    brand = Brand(
        id="kb",
        name="Kettlebird",
        terms=("kettlebird", "kettle  bird", "ケトルバード", "#kettlebird", "@kettlebird",
               'the "bird"', "OR", "kettle-bird"),
    )  # fmt: skip
    assert stream_rules([brand]) == [
        StreamRule(
            'kettlebird OR "kettle bird" OR "ケトルバード" OR #kettlebird OR @kettlebird'
            ' OR "the \\"bird\\"" OR "OR" OR "kettle-bird"',
            "kb",
        )
    ]
    many = Brand(id="many", name="Many", terms=tuple(f"term{i:03d}xxxxxxxxxxxx" for i in range(80)))
    rules = stream_rules([many])
    assert len(rules) > 1
    assert all(rule.tag == "many" and len(rule.value) <= RULE_MAX_CHARS for rule in rules)
    assert [t for rule in rules for t in rule.value.split(" OR ")] == list(many.terms)


# --- streaming -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_mentions_carry_the_author_from_includes_and_keepalives_keep_it_alive(
    fake: FakeX, clock: Clock, report: RecordingReport
) -> None:
    first = fake.publish("my kettlebird whistles", at(1), author=FAN, likes=7, reposts=2)
    second = fake.publish("kettle bird and acme corp", at(2))
    pauses = [step for _ in range(6) for step in (KeepAlive(), Pause(0.1))]
    fake.script(*pauses, Send(first), KeepAlive(), Send(second))
    source = x_source(fake, clock, report, Sleeps(), brands=(KETTLEBIRD, ACME), stall_seconds=0.5)

    got = await take(source, 2)

    assert ids(got) == [first.id, second.id]
    mention = got[0]
    assert mention.author.handle == "kettlefan" and mention.author.id == "1001"
    assert mention.author.followers == 12345 and mention.author.verified
    assert (mention.likes, mention.reposts) == (7, 2)
    assert mention.created_at == at(1) and mention.lang == "en"
    assert mention.url == f"https://x.com/kettlefan/status/{first.id}"
    assert mention.brands == ("kettlebird",)  # from matching_rules
    assert got[1].brands == ("kettlebird", "acme")
    assert report.problems == [] and report.rejections == []
    assert report.ups == [True, False]  # down again when the source is closed
    (stream,) = fake.requests_to(STREAM_PATH)
    assert "public_metrics" in stream.query["user.fields"].split(",")
    assert set(stream.query["expansions"].split(",")) == {"author_id", "referenced_tweets.id"}
    assert "created_at" in stream.query["tweet.fields"].split(",")


@pytest.mark.asyncio
async def test_an_in_stream_error_is_counted_and_the_stream_goes_on(
    fake: FakeX, clock: Clock, report: RecordingReport
) -> None:
    first = fake.publish("kettlebird one", at(1))
    second = fake.publish("kettlebird two", at(2))
    error = {"title": "ConnectionException", "detail": "upstream is slow", "type": "about:blank"}
    fake.script(
        Send(first),
        StreamError([error]),
        Raw(b"{not json\r\n"),
        Raw(b'{"data": {"id": "5", "created_at": "2026-11-16T09:00:00Z"}}\r\n'),
        Raw(b'{"data": {"id": "77", "text": "kettlebird split", "created'),
        Pause(0.05),  # the rest of the line comes in another chunk
        Raw(b'_at": "2026-11-16T09:00:03.000Z"}, "matching_rules": []}\r\n'),
        Send(second),
    )
    got = await take(x_source(fake, clock, report, Sleeps()), 3)

    assert ids(got) == [first.id, "77", second.id]
    assert report.problems == [("stream_error", "ConnectionException: upstream is slow")]
    assert [reason for reason, _ in report.rejections] == ["not_json", "missing_field"]
    assert report.reconnects == []


@pytest.mark.asyncio
async def test_a_disconnect_mid_line_is_backfilled_by_search_and_every_post_arrives_once(
    fake: FakeX, clock: Clock, report: RecordingReport
) -> None:
    sleeps = Sleeps()
    p1 = fake.publish("kettlebird one", at(1), author=FAN)
    p2 = fake.publish("kettlebird two", at(50))
    gap = [fake.publish(f"kettle bird gap {i}", at(60 + i)) for i in range(120)]
    fake.publish("nothing to do with us", at(200))
    hole = fake.publish("kettlebird just before the reconnect", at(590))
    fresh = fake.publish("kettlebird after the reconnect", at(601))
    half_line = b'{"data": {"id": "' + gap[0].id.encode() + b'", "text": "kettle bi'
    fake.script(Send(p1), KeepAlive(), Send(p2), Raw(half_line), Drop())
    fake.script(Send(gap[-1]), Send(fresh), KeepAlive(), KeepAlive())
    # the clock moves as posts arrive: past the first connection's tail search (T0+40 s),
    # ten minutes on while disconnected, then past the second connection's tail (+40 s)
    moves = {p1.id: 45, p2.id: 600, fresh.id: 645}
    source = x_source(fake, clock, report, sleeps)

    got = await take(source, 3 + len(gap) + 1, clock, moves)

    assert ids(got) == [p1.id, p2.id, *ids(gap), fresh.id, hole.id]
    assert len(set(ids(got))) == len(got)
    assert all(m.brands == ("kettlebird",) for m in got)
    assert got[0].author.followers == FAN.followers  # backfilled posts have authors too
    assert report.rejections == []  # the half line was dropped, not parsed
    assert report.kinds() == ["network"]
    assert sleeps.delays == [0.0]  # the first reconnect after data is immediate
    assert report.ups == [True, False, True, False]
    searches = [r.query for r in fake.requests_to(SEARCH_PATH)]
    assert [s.get("since_id") or s.get("start_time") for s in searches] == [
        "2026-11-16T09:00:00Z",  # the start of the first connection: found p1 again
        p2.id,  # the gap: 120 posts on two pages
        p2.id,
        gap[-1].id,  # the tail: the hole (and fresh, a duplicate)
    ]
    assert "next_token" in searches[2] and "next_token" not in searches[1]
    assert all(s["query"] == 'kettlebird OR "kettle bird"' for s in searches)
    assert all(s["max_results"] == "100" and "user.fields" in s for s in searches)


@pytest.mark.asyncio
async def test_a_rate_limited_search_is_retried_later_while_the_stream_goes_on(
    fake: FakeX, clock: Clock, report: RecordingReport
) -> None:
    sleeps = Sleeps()
    p1 = fake.publish("kettlebird one", at(1))
    missed = [fake.publish(f"kettlebird missed {i}", at(100 * i)) for i in (1, 2)]
    p2 = fake.publish("kettlebird two", at(601))
    reset = int(at(720).timestamp())
    fake.search_replies.append(
        Status(429, {"x-rate-limit-reset": str(reset), "x-rate-limit-remaining": "0"})
    )
    fake.script(Send(p1), Drop())
    fake.script(Send(p2), KeepAlive())
    source = x_source(fake, clock, report, sleeps)

    got = await take(source, 4, clock, {p1.id: 600, p2.id: 730})

    assert ids(got) == [p1.id, p2.id, *ids(missed)]
    assert report.kinds() == ["network", "http_429"]
    assert "backfill search: HTTP 429" in report.problems[1][1]
    assert sleeps.delays == [0.0]  # the search waits for its reset, the stream does not
    assert len(fake.requests_to(SEARCH_PATH)) == 2


@pytest.mark.asyncio
async def test_backfill_goes_back_no_further_than_backfill_max_seconds(
    fake: FakeX, clock: Clock, report: RecordingReport
) -> None:
    p1 = fake.publish("kettlebird one", at(1))
    p2 = fake.publish("kettlebird two", at(50))
    fake.publish("kettlebird long ago", at(100))  # in the gap, but older than 5 minutes
    p3 = fake.publish("kettlebird three", at(3601))
    p4 = fake.publish("kettlebird four", at(3646))
    fake.script(Send(p1), KeepAlive(), Send(p2), Drop())
    fake.script(Send(p3), KeepAlive(), Send(p4))
    source = x_source(fake, clock, report, Sleeps(), backfill_max_seconds=300)

    got = await take(source, 4, clock, {p1.id: 45, p2.id: 3600, p3.id: 3645})

    assert ids(got) == [p1.id, p2.id, p3.id, p4.id]
    searches = [r.query for r in fake.requests_to(SEARCH_PATH)]
    assert [s.get("since_id") or s["start_time"] for s in searches] == [
        "2026-11-16T09:00:00Z",  # the first connection's tail
        "2026-11-16T09:55:00Z",  # the gap, from 5 minutes back, not since p2
        "2026-11-16T09:59:20Z",  # the tail, from where the gap's search ended
    ]


@pytest.mark.asyncio
async def test_a_restart_fetches_the_posts_made_since_the_position_it_takes_up_after(
    fake: FakeX, clock: Clock, report: RecordingReport
) -> None:
    """Told where the daemon's restored state stopped (``resume_after``), the first
    connection searches for the posts after that post (``since_id``): those made while
    xwatch was down arrive, oldest first, before the stream's; none before it again."""
    seen = fake.publish("kettlebird, seen before the stop", at(-900))
    last = fake.publish("kettlebird, the last one ingested", at(-600))
    down = [fake.publish(f"kettle bird while down {i}", at(-500 + 100 * i)) for i in range(4)]
    live = fake.publish("kettlebird, live again", at(1))
    fake.script(Send(live), KeepAlive())
    source = x_source(fake, clock, report, Sleeps())
    source.resume_after(SourcePosition(last.id, last.created_at))

    got = await take(source, len(down) + 1)

    assert ids(got) == [*ids(down), live.id]
    assert seen.id not in ids(got) and last.id not in ids(got)
    (search,) = [r.query for r in fake.requests_to(SEARCH_PATH)]
    assert search["since_id"] == last.id and "start_time" not in search
    assert report.problems == []


@pytest.mark.asyncio
async def test_a_restart_after_a_long_outage_fetches_no_more_than_backfill_max_seconds(
    fake: FakeX, clock: Clock, report: RecordingReport, caplog: pytest.LogCaptureFixture
) -> None:
    last = fake.publish("kettlebird before a long outage", at(-86400))
    fake.publish("kettlebird, a day ago", at(-80000))  # older than the 6 hours fetched
    recent = fake.publish("kettlebird, an hour ago", at(-3600))
    fake.script(KeepAlive(), KeepAlive())
    source = x_source(fake, clock, report, Sleeps(), backfill_max_seconds=6 * 3600)
    source.resume_after(SourcePosition(last.id, last.created_at))
    caplog.set_level(logging.WARNING, logger="xwatch")

    got = await take(source, 1)

    assert ids(got) == [recent.id]
    (search,) = [r.query for r in fake.requests_to(SEARCH_PATH)]
    assert search["start_time"] == "2026-11-16T03:00:00Z" and "since_id" not in search
    assert "backfilled from 2026-11-16 03:00:00" in caplog.text


@pytest.mark.asyncio
async def test_a_restart_s_warm_start_counts_up_to_the_position_and_search_does_the_rest(
    fake: FakeX, clock: Clock, report: RecordingReport
) -> None:
    """With ``warm_start``, the counts end at the minute of the position taken up after
    (the posts after it come through search, none counted twice)."""
    for i in range(39, 2, -1):  # in time order: X's ids grow with time
        fake.publish("kettlebird", at(-i * 600))
    last = fake.publish("kettlebird, the last one ingested", at(-1750))  # 08:30:50
    after = fake.publish("kettle bird, after it", at(-1700))
    newer = [fake.publish("kettlebird", at(-i * 600)) for i in (2, 1)]
    fake.script(KeepAlive(), KeepAlive())
    source = x_source(fake, clock, report, Sleeps(), warm_start=True)
    source.resume_after(SourcePosition(last.id, last.created_at))

    got = await asyncio.wait_for(take(source, 3), 5)

    minutes = [start for start, _ in source.warm_counts["kettlebird"]]
    assert minutes[-1] == datetime(2026, 11, 16, 8, 29, tzinfo=UTC)  # up to 08:30:00
    assert ids(got) == [after.id, *ids(newer)]
    (search,) = [r.query for r in fake.requests_to(SEARCH_PATH)]
    assert search["since_id"] == last.id


# --- reconnecting -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_429_waits_until_the_rate_limit_resets_then_backs_off_exponentially(
    fake: FakeX, clock: Clock, report: RecordingReport
) -> None:
    sleeps = Sleeps()
    post = fake.publish("kettlebird", at(1))
    reset = str(int(at(300).timestamp()))
    fake.script(Status(429, {"x-rate-limit-reset": reset, "x-rate-limit-remaining": "0"}))
    fake.script(Status(429))
    fake.script(Send(post))

    got = await take(x_source(fake, clock, report, sleeps), 1)

    assert ids(got) == [post.id]
    assert sleeps.delays == [300.0, 120.0]
    assert report.kinds() == ["http_429", "http_429"]
    assert report.reconnects == [(300.0, "http_429"), (120.0, "http_429")]


@pytest.mark.asyncio
async def test_server_errors_back_off_exponentially_and_data_resets_the_schedule(
    fake: FakeX, clock: Clock, report: RecordingReport
) -> None:
    sleeps = Sleeps()
    first = fake.publish("kettlebird one", at(1))
    second = fake.publish("kettlebird two", at(2))
    for _ in range(3):
        fake.script(Status(503))
    fake.script(Send(first), Drop())
    fake.script(Status(500))
    fake.script(Send(second))

    got = await take(x_source(fake, clock, report, sleeps), 2)

    assert ids(got) == [first.id, second.id]
    assert sleeps.delays == [5.0, 10.0, 20.0, 0.0, 5.0]
    assert report.kinds() == ["http_5xx"] * 3 + ["network", "http_5xx"]
    assert report.problems[0][1] == "HTTP 503 Service Unavailable"


@pytest.mark.asyncio
async def test_network_errors_reconnect_at_once_then_linearly(
    fake: FakeX, clock: Clock, report: RecordingReport
) -> None:
    sleeps = Sleeps()
    post = fake.publish("kettlebird", at(1))
    # closed before the headers: aiohttp retries a GET once by itself, so one failed
    # attempt of the source costs two scripted drops
    fake.script(Drop())
    fake.script(Drop())
    for _ in range(3):
        fake.script(KeepAlive(), Drop())  # mid-body; a keep-alive does not reset the schedule
    fake.script(Send(post))
    source = x_source(fake, clock, report, sleeps)

    got = await take(source, 1)

    assert ids(got) == [post.id]
    assert sleeps.delays == [0.0, 0.25, 0.5, 0.75]
    assert report.kinds() == ["network"] * 4
    assert report.ups == [True, False] * 4  # up for each mid-body drop, then for the post


@pytest.mark.asyncio
async def test_connection_refused_is_a_network_error(clock: Clock, report: RecordingReport) -> None:
    port = free_port()  # nobody listens on it
    sleeps = Sleeps(stop_after=3)
    settings = XStreamSourceConfig(type="x_stream", base_url=f"http://127.0.0.1:{port}")
    source = XStreamSource(
        settings, [KETTLEBIRD], report, environ={ENV: TOKEN}, sleep=sleeps, now=clock.now
    )
    with pytest.raises(Enough):
        await take(source, 1)
    assert sleeps.delays == [0.0, 0.25, 0.5]
    assert report.kinds() == ["rules", "network", "network", "network"]
    assert report.ups == []


@pytest.mark.asyncio
async def test_a_stalled_stream_is_dropped_and_reconnected(
    fake: FakeX, clock: Clock, report: RecordingReport
) -> None:
    sleeps = Sleeps()
    first = fake.publish("kettlebird one", at(1))
    second = fake.publish("kettlebird two", at(2))
    fake.script(Send(first), Hang())
    fake.script(Send(second))

    got = await take(x_source(fake, clock, report, sleeps, stall_seconds=0.2), 2)

    assert ids(got) == [first.id, second.id]
    assert report.problems == [("stall", "nothing received for 0.2 s")]
    assert sleeps.delays == [0.0]
    assert len(fake.requests_to(STREAM_PATH)) == 2


@pytest.mark.asyncio
async def test_unauthorized_is_reported_and_retried_slowly_without_leaking_the_token(
    fake: FakeX, clock: Clock, report: RecordingReport, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "wrong-token-3fa9c1"
    sleeps = Sleeps(stop_after=2)
    source = x_source(fake, clock, report, sleeps, environ={ENV: secret})
    with caplog.at_level(logging.DEBUG), pytest.raises(Enough):
        await take(source, 1)
    assert sleeps.delays == [5.0, 10.0]
    assert report.kinds() == ["rules", "http_4xx", "http_4xx"]
    assert f"HTTP 401 Unauthorized; check the bearer token in ${ENV}" == report.problems[1][1]
    assert secret not in caplog.text
    assert all(secret not in detail for _, detail in report.problems)


def test_a_missing_token_stops_the_start_naming_the_variable(
    fake: FakeX, clock: Clock, report: RecordingReport
) -> None:
    """A config error, as the webhook's missing secret: the daemon does not start (it
    started, then tried again every 5 minutes for good, the brands unwatched)."""
    with pytest.raises(MissingTokenError, match=ENV) as caught:
        x_source(fake, clock, report, Sleeps(), environ={ENV: " "})
    assert isinstance(caught.value, ConfigError)
    assert fake.requests == []


# --- rules --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_rule_sync_adds_missing_rules_and_deletes_stale_ones(
    fake: FakeX, clock: Clock, report: RecordingReport
) -> None:
    kept = fake.add_rule('kettlebird OR "kettle bird"', "kettlebird")
    stale = fake.add_rule("oldbrand", "oldbrand")
    outdated = fake.add_rule("acme", "acme")  # acme's terms are now acme, "acme corp"
    post = fake.publish("kettlebird", at(1))
    fake.script(Send(post))
    source = x_source(fake, clock, report, Sleeps(), brands=(KETTLEBIRD, ACME))

    got = await take(source, 1)

    assert ids(got) == [post.id]
    assert {(r.value, r.tag) for r in fake.rules.values()} == {
        ('kettlebird OR "kettle bird"', "kettlebird"),
        ('acme OR "acme corp"', "acme"),
    }
    assert kept.id in fake.rules
    posts = [r.body for r in fake.requests_to(RULES_PATH, "POST")]
    assert posts == [
        {"delete": {"ids": [stale.id, outdated.id]}},
        {"add": [{"value": 'acme OR "acme corp"', "tag": "acme"}]},
    ]
    assert report.problems == []


@pytest.mark.asyncio
async def test_the_rule_cap_is_reported_and_streaming_goes_on(
    clock: Clock, report: RecordingReport
) -> None:
    async with FakeX(now=clock.now, rule_cap=1) as fake:
        post = fake.publish("kettlebird", at(1))
        fake.script(Send(post))
        source = x_source(fake, clock, report, Sleeps(), brands=(KETTLEBIRD, ACME))
        got = await take(source, 1)
    assert ids(got) == [post.id]
    assert fake.rules == {}
    assert report.kinds() == ["rule_cap", "rule_cap"]
    assert "RulesCapExceeded" in report.problems[0][1]


@pytest.mark.asyncio
async def test_without_rule_sync_the_rules_are_left_alone(
    fake: FakeX, clock: Clock, report: RecordingReport
) -> None:
    other = fake.add_rule("somebody else's rule", "other")
    post = fake.publish("kettlebird", at(1))
    fake.script(Send(post))
    got = await take(x_source(fake, clock, report, Sleeps(), sync_rules=False), 1)
    assert ids(got) == [post.id]
    assert got[0].brands == ()  # no rule of ours matched: the pipeline finds the brands
    assert list(fake.rules) == [other.id]
    assert fake.requests_to(RULES_PATH) == []


# --- warm start ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_warm_start_brings_each_brand_s_last_week_a_minute_at_a_time(
    fake: FakeX, clock: Clock, report: RecordingReport
) -> None:
    """X's recent counts, page by page, every minute of the last 7 days up to one that
    search sees; the posts after it come through the first backfill, none counted twice."""
    week = [fake.publish("kettlebird", at(-i * 37 * 60 - 90)) for i in range(272)]  # 7 days
    fake.publish("kettlebird, eight days ago", at(-8 * 86400))
    acme = [fake.publish("acme corp news", at(-i * 3600 - 30)) for i in range(1, 5)]
    after = fake.publish("kettle bird, after the counts", at(-50))  # 08:59:10
    fake.script(KeepAlive(), KeepAlive())
    source = x_source(fake, clock, report, Sleeps(), brands=(KETTLEBIRD, ACME), warm_start=True)

    got = await take(source, 1)

    counts = source.warm_counts
    assert sorted(counts) == ["acme", "kettlebird"]
    minutes = [start for start, _ in counts["kettlebird"]]
    assert minutes[-1] == datetime(2026, 11, 16, 8, 58, tzinfo=UTC)  # 09:00 - 40 s, floored
    assert minutes[0] == datetime(2026, 11, 9, 9, 6, tzinfo=UTC)  # 7 days - 5 minutes, on
    assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(minutes))
    assert sum(n for _, n in counts["kettlebird"]) == len(week)
    assert sum(n for _, n in counts["acme"]) == len(acme)
    assert ids(got) == [after.id]  # searched from where the counts end
    searches = fake.requests_to(SEARCH_PATH)  # a rule each
    assert [s.query["start_time"] for s in searches] == ["2026-11-16T08:59:00Z"] * 2
    requests = [r.query for r in fake.requests_to(COUNTS_PATH)]
    assert len(requests) == 2 * 7  # a day of minutes a page, for each brand
    assert requests[0]["query"] == 'kettlebird OR "kettle bird"'
    assert all(r["granularity"] == "minute" for r in requests)
    assert "next_token" in requests[1] and "next_token" not in requests[0]
    assert report.problems == []


@pytest.mark.asyncio
async def test_a_brand_whose_counts_fail_starts_cold_and_is_reported(
    fake: FakeX, clock: Clock, report: RecordingReport
) -> None:
    fake.publish("acme corp news", at(-3600))
    fake.counts_replies.append(Status(403))  # the first brand's first page
    source = x_source(fake, clock, report, Sleeps(), brands=(KETTLEBIRD, ACME), warm_start=True)

    async with source:
        assert sorted(source.warm_counts) == ["acme"]
        assert sum(n for _, n in source.warm_counts["acme"]) == 1
    assert report.kinds() == ["warm_start"]
    assert "brand 'kettlebird': HTTP 403" in report.problems[0][1]
    assert "X plan" in report.problems[0][1]


@pytest.mark.asyncio
async def test_a_rate_limited_warm_start_asks_no_more_and_the_source_starts(
    fake: FakeX, clock: Clock, report: RecordingReport
) -> None:
    fake.counts_replies.append(Status(429, {"x-rate-limit-remaining": "0"}))
    p1 = fake.publish("kettlebird one", at(1))
    fake.script(Send(p1), KeepAlive())
    source = x_source(fake, clock, report, Sleeps(), brands=(KETTLEBIRD, ACME), warm_start=True)

    got = await take(source, 1)

    assert ids(got) == [p1.id] and source.warm_counts == {}
    assert len(fake.requests_to(COUNTS_PATH)) == 1  # acme was not asked after the 429
    assert report.kinds() == ["warm_start"] and "HTTP 429" in report.problems[0][1]
    assert ("counts", 0, None) in report.rate_limits


@pytest.mark.asyncio
async def test_counts_that_are_not_counts_are_refused_for_that_brand(
    fake: FakeX, clock: Clock, report: RecordingReport
) -> None:
    body = {"data": [{"start": "yesterday", "end": "today", "tweet_count": "many"}]}
    fake.counts_replies.append(Status(200, body=body))
    source = x_source(fake, clock, report, Sleeps(), warm_start=True)

    async with source:
        assert source.warm_counts == {}
    assert report.kinds() == ["warm_start"]
    assert "not a count" in report.problems[0][1]


@pytest.mark.asyncio
async def test_counts_that_do_not_come_in_time_leave_the_brands_cold(
    fake: FakeX, clock: Clock, report: RecordingReport
) -> None:
    fake.counts_hang = True
    source = x_source(
        fake, clock, report, Sleeps(), warm_start=True, warm_start_timeout_seconds=0.2
    )

    async with source:
        assert source.warm_counts == {}
    assert report.kinds() == ["warm_start"]
    assert "longer than 0.2 s" in report.problems[0][1]


# --- what X may send that it should not -----------------------------------------------------


@pytest.mark.asyncio
async def test_odd_tags_and_ids_on_stream_lines_do_not_end_the_stream(
    fake: FakeX, clock: Clock, report: RecordingReport
) -> None:
    """A tag that is not a string, an id of non-ASCII digits: the post is taken (without a
    brand from that tag); an id of 5,000 digits is refused. The stream goes on (each
    used to raise)."""
    after = fake.publish("kettlebird after", at(3))
    lines: list[dict[str, Any]] = [
        {"id": "1860000000000000999", "tag": ["kettlebird"]},
        {"id": "18600000000000009\u00b2", "tag": "kettlebird"},
        {"id": "9" * 5000, "tag": {"brand": "kettlebird"}},
    ]
    fake.script(
        *(
            Raw(
                json.dumps(
                    {
                        "data": {
                            "id": line["id"],
                            "text": "kettlebird smokes",
                            "created_at": "2026-11-16T09:00:01.000Z",
                        },
                        "matching_rules": [{"id": "1", "tag": line["tag"]}],
                    }
                ).encode()
                + b"\r\n"
            )
            for line in lines
        ),
        Send(after),
    )
    got = await take(x_source(fake, clock, report, Sleeps(stop_after=1)), 3)
    assert ids(got) == [str(lines[0]["id"]), str(lines[1]["id"]), after.id]
    assert [m.brands for m in got[:2]] == [(), ("kettlebird",)]
    assert [reason for reason, _ in report.rejections] == ["wrong_type"]  # the long id
    assert report.reconnects == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("headers", "told"),
    [
        ({"x-rate-limit-remaining": "\u00b2"}, []),
        ({"x-rate-limit-remaining": "9" * 5000, "x-rate-limit-reset": "9" * 400}, []),
        ({"x-rate-limit-remaining": "0", "x-rate-limit-reset": "\u00b2"}, [("stream", 0, None)]),
    ],
)
async def test_rate_limit_headers_that_are_not_numbers_are_ignored(
    fake: FakeX,
    clock: Clock,
    report: RecordingReport,
    headers: dict[str, str],
    told: list[tuple[str, int, float | None]],
) -> None:
    post = fake.publish("kettlebird", at(1))
    fake.script(Status(429, headers))
    fake.script(Send(post))
    got = await take(x_source(fake, clock, report, Sleeps()), 1)
    assert ids(got) == [post.id]
    assert report.kinds() == ["http_429"]
    assert report.rate_limits == told  # nothing that is not a count


@pytest.mark.asyncio
@pytest.mark.parametrize("data", [5, True, "1,2", [["a"]]])
async def test_a_rules_answer_of_the_wrong_shape_does_not_end_the_stream(
    clock: Clock, report: RecordingReport, data: object
) -> None:
    async def odd_rules(request: web.Request) -> web.Response:
        return web.json_response({"data": data, "meta": {}})

    fake = FakeX(now=clock.now)
    fake._get_rules = odd_rules  # type: ignore[method-assign]  # bound when it starts
    async with fake:
        post = fake.publish("kettlebird", at(1))
        fake.script(Send(post))
        got = await take(x_source(fake, clock, report, Sleeps(stop_after=1)), 1)
    assert ids(got) == [post.id]
