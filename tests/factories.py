"""Small builders for test data."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

from xwatch.model import Author, Bucket, Mention, Sentiment, SeriesKey

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
