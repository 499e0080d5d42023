"""Small builders for test data."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

import numpy

from xwatch.alerting.incidents import IncidentBook, Notice, NoticeKind, Policy
from xwatch.detect.share import NegativeShareDetector
from xwatch.model import (
    Alert,
    AlertEvent,
    Author,
    Bucket,
    EventKind,
    HistoryPoint,
    Measure,
    Mention,
    PlaybookRef,
    Sentiment,
    SeriesKey,
    Severity,
    Signal,
    TermSurge,
)

T0 = datetime(2026, 11, 16, tzinfo=UTC)  # a Monday


def mention(
    text: str = "my kettlebird is great",
    at: datetime | float = 0.0,
    *,
    id: str | None = None,
    lang: str | None = "en",
    followers: int = 100,
    negative: bool | None = None,
    brands: tuple[str, ...] = (),
) -> Mention:
    created = at if isinstance(at, datetime) else T0 + timedelta(seconds=at)
    sentiment = None
    if negative is not None:
        sentiment = Sentiment("negative", -0.8) if negative else Sentiment("neutral", 0.0)
    return Mention(
        id=id or f"{created.timestamp():.3f}-{abs(hash(text)) % 10_000}",
        text=text,
        created_at=created,
        source="test",
        author=Author(id="1", handle="tester", followers=followers),
        lang=lang,
        brands=brands,
        sentiment=sentiment,
    )


def bucket(
    start: datetime, count: int, negative: int = 0, *, scale: int = 300, brand: str = "b"
) -> Bucket:
    return Bucket(
        series=SeriesKey(brand, "", scale),
        start=start,
        end=start + timedelta(seconds=scale),
        count=count,
        negative=negative,
        reach=0,
    )


class RecordingReport:
    """A ``SourceReport`` that records every call, for the source tests."""

    def __init__(self) -> None:
        self.received_count = 0
        self.rejections: list[tuple[str, str]] = []  # (reason, detail)
        self.ups: list[bool] = []
        self.reconnects: list[tuple[float, str]] = []  # (delay, why)
        self.problems: list[tuple[str, str]] = []  # (kind, detail)
        self.rate_limits: list[tuple[str, int, float | None]] = []  # (endpoint, left, reset)

    def received(self, source: str) -> None:
        self.received_count += 1

    def rejected(self, source: str, reason: str, detail: str) -> None:
        self.rejections.append((reason, detail))

    def connected(self, source: str, up: bool) -> None:
        self.ups.append(up)

    def reconnecting(self, source: str, delay_seconds: float, why: str) -> None:
        self.reconnects.append((delay_seconds, why))

    def problem(self, source: str, kind: str, detail: str) -> None:
        self.problems.append((kind, detail))

    def rate_limit(
        self, source: str, endpoint: str, remaining: int, reset_at: float | None
    ) -> None:
        self.rate_limits.append((endpoint, remaining, reset_at))

    @property
    def up(self) -> bool:
        return bool(self.ups) and self.ups[-1]

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.problems]


class FixedClock:
    """A ``Clock`` whose wall time is ``at``, moved by the test."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


class GatedSource:
    """A finite source the test steers: it yields its mentions once ``go`` is set (at once
    unless ``held``), sets ``sent``, then waits for ``finish`` before it ends."""

    live = False

    def __init__(self, mentions: list[Mention], name: str = "gated", *, held: bool = False) -> None:
        self.name = name
        self.mentions = mentions
        self.go = asyncio.Event()
        if not held:
            self.go.set()
        self.sent = asyncio.Event()
        self.finish = asyncio.Event()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def __aiter__(self) -> AsyncIterator[Mention]:
        return self._run()

    async def _run(self) -> AsyncIterator[Mention]:
        await self.go.wait()
        for m in self.mentions:
            yield m
        self.sent.set()
        await self.finish.wait()


def alert(
    *,
    rule: str = "negative-share-spike",
    brand: str = "kettlebird",
    at: datetime | float = 13 * 3600.0,
    severity: str = "critical",
    measure: str = "negative_share",
    channels: tuple[str, ...] = ("console",),
    posts: tuple[Mention, ...] | None = None,
    labels: tuple[tuple[str, str], ...] = (),
    scale: int = 300,
    history_points: int = 24,
) -> Alert:
    """A realistic alert: a 5-minute bucket whose negative share jumped, with sample
    posts (most reach first), the brand's history and emerging terms."""
    end = at if isinstance(at, datetime) else T0 + timedelta(seconds=at)
    start = end - timedelta(seconds=scale)
    series = SeriesKey(brand, "", scale)
    if posts is None:
        posts = (
            _post("Kettle exploded on the counter, stay away! #kettlebird", end, 120_000, "a"),
            _post("still waiting for a refund after 3 weeks @kettlebird", end, 5_400, "b"),
            _post("ケトルの電源が入らない。3回目の交換でも直らない", end, 800, "c"),
        )
    share = Signal(
        series,
        Measure.NEGATIVE_SHARE,
        start,
        end,
        0.41,
        0.09,
        0.04,
        0.16,
        0.99999,
        "up",
        surprise=5.2,
    )
    volume = Signal(
        series, Measure.VOLUME, start, end, 143.0, 31.0, 18.0, 47.0, 0.9999, "up", surprise=4.1
    )
    negative = Signal(
        series,
        Measure.NEGATIVE_VOLUME,
        start,
        end,
        59.0,
        2.8,
        0.0,
        7.0,
        0.999999,
        "up",
        surprise=9.3,
    )
    fired = {"negative_share": share, "volume": volume, "negative_volume": negative}[measure]
    history = tuple(
        HistoryPoint(
            start=start - timedelta(seconds=scale * (history_points - 1 - i)),
            count=31 + (i % 5) if i < history_points - 1 else 143,
            expected=31.0,
            low=18.0,
            high=47.0,
            negative_share=0.08 if i < history_points - 1 else 0.41,
            usual_share=0.09,
        )
        for i in range(history_points)
    )
    return Alert(
        rule_id=rule,
        title="Negative share spike",
        severity=Severity(severity),
        series=series,
        signal=fired,
        bucket=Bucket(series, start, end, 143, 59, sum(p.reach for p in posts), posts),
        context=(volume, share, negative),
        playbook=PlaybookRef(
            "complaint-wave",
            "Customer complaint wave",
            "http://127.0.0.1:9464/playbooks/complaint-wave",
            30,
        ),
        channels=channels,
        labels=labels,
        terms=(TermSurge("exploded", 18, 0.2, 0.99999), TermSurge("refund", 12, 1.5, 0.999)),
        history=history,
    )


def _post(text: str, at: datetime, followers: int, key: str) -> Mention:
    return Mention(
        id=f"post-{key}",
        text=text,
        created_at=at - timedelta(seconds=30),
        source="test",
        author=Author(id=f"user-{key}", handle=f"user_{key}", followers=followers),
        lang="ja" if not text.isascii() else "en",
        url=f"https://x.com/user_{key}/status/{key}",
        brands=("kettlebird",),
        sentiment=Sentiment("negative", -0.7),
    )


def notice(
    kind: NoticeKind = NoticeKind.OPENED,
    *,
    channel: str = "console",
    alert_: Alert | None = None,
    who: str = "@maria",
) -> Notice:
    """A notice as the incident book makes it: opened, then (for other kinds) the action."""
    fired = alert_ or alert(channels=(channel,))
    book = IncidentBook(Policy())
    changes = book.observe(
        [AlertEvent(EventKind.FIRING, fired, fired.signal.end)], fired.signal.end
    )
    made = [n for c in changes for n in c.notices if n.channel == channel]
    incident_id = changes[0].incident.id
    later = fired.signal.end + timedelta(minutes=3)
    if kind is NoticeKind.ACKNOWLEDGED:
        changes = book.acknowledge(incident_id, who, later)
    elif kind is NoticeKind.RESOLVED:
        changes = book.resolve(incident_id, who, later)
    elif kind is NoticeKind.ESCALATED:
        changes = book.escalate(incident_id, who, later)
    elif kind is NoticeKind.SILENCED:
        changes = book.silence_incident(incident_id, who, later, timedelta(hours=1), "silence-1")[1]
    elif kind is not NoticeKind.OPENED:
        raise ValueError(f"no recipe for a {kind} notice")
    if kind is not NoticeKind.OPENED:
        made = [n for c in changes for n in c.notices if n.channel == channel]
    assert made, f"the book made no {kind} notice for {channel}"
    return made[-1]


def share_detector_after(days: int, per_bucket: int, share: float) -> NegativeShareDetector:
    """A negative-share detector that has learned ``days`` of 5-minute buckets of
    ``per_bucket`` posts, each negative with probability ``share`` (seeded)."""
    detector = NegativeShareDetector(300)
    rng = random.Random(7)
    for i in range(days * 288):
        k = sum(rng.random() < share for _ in range(per_bucket))
        b = bucket(T0 + timedelta(seconds=300 * i), per_bucket, k)
        detector.score_one(b)
        detector.learn_one(b)
    return detector


def rhythmic_share(
    days: int,
    *,
    amplitude: float,
    seed: int,
    concentration: float | None = None,
    scale: float = 1.0,
) -> list[tuple[int, int]]:
    """(posts, negatives) per 5-minute bucket from T0: 20 posts a bucket on average with
    a strong daily rhythm, and a negative share of 0.12 x (1 + amplitude x cos), highest
    at 03:00 UTC (the night's complaints), lowest at 15:00; binomial, or beta-binomial
    with ``concentration`` (the share wanders from bucket to bucket); nothing news.
    ``scale``: the share times this, whatever the hour."""
    rng = numpy.random.default_rng(seed)
    out = []
    for i in range(days * 288):
        at = T0 + timedelta(seconds=300 * i)
        hour = at.hour + at.minute / 60
        n = int(rng.poisson(20.0 * (1 + 0.9 * math.cos((hour - 14) / 24 * 2 * math.pi))))
        share = scale * 0.12 * (1 + amplitude * math.cos((hour - 3) / 24 * 2 * math.pi))
        if concentration is not None:
            share = rng.beta(share * concentration, (1 - share) * concentration)
        out.append((n, int(rng.binomial(n, share))))
    return out
