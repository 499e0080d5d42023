"""Replay a file of mentions: JSON lines (xwatch's format or X API v2 payloads), gzip or not.

``speed`` paces the replay by the posts' own times: 60 plays a minute of posts
per second of wall time; 0 plays as fast as the pipeline takes them. A malformed
line is reported (counted, logged) and skipped; the replay goes on. So is a post dated
after the wall clock (more than ``MAX_FUTURE_SKEW`` ahead, as a live source allows): a
replay is history, and one post from year 9999 would move the event clock there.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from io import BufferedReader
from pathlib import Path
from types import TracebackType
from typing import IO, Self, cast

from xwatch.errors import PayloadError, XwatchError
from xwatch.model import Mention
from xwatch.sources import MAX_FUTURE_SKEW, SourceReport
from xwatch.sources.payload import parse_payload

MIN_SLEEP_SECONDS = 0.005  # pacing sleeps shorter than this are batched
YIELD_EVERY_LINES = 500  # let the rest of the daemon run while replaying at full speed


class ReplayError(XwatchError):
    """A replay file that cannot be read: missing, a folder, not gzip, cut short. The
    lines before the damage have been replayed; a backtest stops with this message."""


GZIP_MAGIC = b"\x1f\x8b"


def _why(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


class ReplaySource:
    live = False

    def __init__(
        self,
        path: Path,
        name: str,
        speed: float,
        report: SourceReport,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.path = path
        self.name = name
        self.speed = speed
        self.report = report
        self._sleep = sleep
        self._monotonic = monotonic
        self._now = now
        self._file: IO[bytes] | None = None  # what lines are read from
        self._raw: BufferedReader | None = None  # the file itself

    async def __aenter__(self) -> Self:
        """Open the file, gzip'd or not by what it holds (its first bytes), so that a
        pipe of gzip (``--input - < history.jsonl.gz``) is read too; a file named
        ``.gz`` must be gzip."""
        try:
            self._raw = self.path.open("rb")
            if self._raw.peek(len(GZIP_MAGIC))[: len(GZIP_MAGIC)] == GZIP_MAGIC:
                compressed = gzip.GzipFile(fileobj=self._raw)
                self._file = cast(IO[bytes], compressed)
                compressed.peek(1)  # damaged from the start: say so now, not mid-replay
            elif self.path.suffix == ".gz":
                raise gzip.BadGzipFile("Not a gzipped file")
            else:
                self._file = self._raw
        except (OSError, EOFError) as exc:
            self._close()
            raise ReplayError(f"{self.path}: cannot read: {_why(exc)}") from None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    def _close(self) -> None:
        for file in (self._file, self._raw):  # a GzipFile leaves the file it reads open
            if file is not None:
                file.close()
        self._file = self._raw = None

    def __aiter__(self) -> AsyncIterator[Mention]:
        return self._replay()

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        if self._file is None:
            raise RuntimeError("ReplaySource used outside 'async with'")
        line_no = 0
        try:
            for line_no, line in enumerate(self._file, start=1):
                yield line_no, line
        except (OSError, EOFError) as exc:  # a gzip file cut short or damaged
            where = f"{self.path}: cannot read past line {line_no}"
            raise ReplayError(f"{where}: {_why(exc)}") from None

    async def _replay(self) -> AsyncIterator[Mention]:
        first_event: float | None = None
        started = self._monotonic()
        latest = self._now() + MAX_FUTURE_SKEW  # the latest date a post can have
        for line_no, line in self._lines():
            if line_no % YIELD_EVERY_LINES == 0:
                await asyncio.sleep(0)
                latest = self._now() + MAX_FUTURE_SKEW
            if not line.strip():
                continue  # blank lines separate nothing; not an error
            try:
                mentions = parse_payload(line, self.name)
            except PayloadError as exc:
                self.report.rejected(self.name, exc.reason, f"{self.path}:{line_no}: {exc.detail}")
                continue
            for mention in mentions:
                if mention.created_at > latest:
                    self.report.rejected(
                        self.name,
                        "bad_timestamp",
                        f"{self.path}:{line_no}: post {mention.id} is from the future: "
                        f"{mention.created_at}",
                    )
                    continue
                self.report.received(self.name)
                if self.speed > 0:
                    event = mention.created_at.timestamp()
                    if first_event is None:
                        first_event = event
                    due = started + (event - first_event) / self.speed
                    delay = due - self._monotonic()
                    if delay >= MIN_SLEEP_SECONDS:
                        await self._sleep(delay)
                yield mention
