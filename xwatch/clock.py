"""Clocks: wall time for the daemon's own doings, event time for the data.

Buckets close by **event time**: when the watermark (the newest post seen, minus
the allowed lateness) passes their end, not when a wall clock says so. In live
mode the daemon also ticks the event clock with wall time, so that buckets close
while the feed is silent (a silent feed is data too). Replay and backtest never
tick: their clock is driven by the data alone, so a week replays in seconds and
gives the same alerts the daemon would have sent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class EventClock:
    """The watermark: no post older than this is expected any more."""

    def __init__(self, allowed_lateness: timedelta) -> None:
        self.allowed_lateness = allowed_lateness
        self.newest: datetime | None = None  # the newest event time seen (or ticked)

    def observe(self, event_time: datetime) -> None:
        if self.newest is None or event_time > self.newest:
            self.newest = event_time

    def tick(self, now: datetime) -> None:
        """Live mode: wall time passing is as good as a post arriving now."""
        self.observe(now)

    @property
    def watermark(self) -> datetime | None:
        return None if self.newest is None else self.newest - self.allowed_lateness
