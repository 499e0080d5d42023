"""Clocks: wall time for the daemon's own doings, event time for the data.

Buckets close by **event time**: when the watermark (the newest post seen, minus
the allowed lateness) passes their end, not when a wall clock says so. In live
mode the daemon also ticks the event clock with wall time, so that buckets close
while the feed is silent (a silent feed is data too). Replay and backtest never
tick: their clock is driven by the data alone, so a week replays in seconds and
gives the same alerts the daemon would have sent.
"""

from __future__ import annotations

from collections.abc import Callable
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
        self.hold: datetime | None = None  # never past this (see LiveCompleteness)

    def observe(self, event_time: datetime) -> None:
        if self.newest is None or event_time > self.newest:
            self.newest = event_time

    def tick(self, now: datetime) -> None:
        """Live mode: wall time passing is as good as a post arriving now."""
        self.observe(now)

    @property
    def watermark(self) -> datetime | None:
        if self.newest is None:
            return None
        mark = self.newest - self.allowed_lateness
        return mark if self.hold is None else min(mark, self.hold)


class LiveCompleteness:
    """How far in event time the live sources have delivered everything.

    A live source that is down may still deliver posts from its gap once it is back:
    an MQTT broker redelivers what it kept for the session, the X stream backfills
    through search. Until then the buckets after the gap's start must stay open, or
    those posts would arrive late and the gap would look like a fall in volume.

    A source is complete again once it delivers a fresh post (created after it
    reconnected, less the allowed lateness) or ``catch_up`` after reconnecting,
    whichever comes first. At start every live source is "down since now".

    Nor does event time run ahead of the wall clock: a live source accepts posts dated
    up to a few minutes ahead (``sources.MAX_FUTURE_SKEW``: a producer's clock may be
    fast), and one such post must not close the buckets that the posts of the next
    minutes still belong to (they would all arrive late). With live sources, the hold
    is never later than ``now`` less the allowed lateness.
    """

    def __init__(self, allowed_lateness: timedelta, catch_up: timedelta) -> None:
        self.allowed_lateness = allowed_lateness
        self.catch_up = catch_up
        self._gap_start: dict[str, datetime] = {}  # sources that may owe posts
        self._reconnected: dict[str, datetime] = {}
        self._live = False  # a live source has started

    def pushing(self) -> None:
        """A live source that is pushed to (the webhook) serves: it owes nothing after a
        pause (its senders retry what failed), so it holds no gap, but event time must
        follow the wall clock as with any live source."""
        self._live = True

    def started(self, source: str, now: datetime) -> None:
        self._live = True
        self._gap_start[source] = now
        self._reconnected.pop(source, None)

    def connected(self, source: str, up: bool, now: datetime) -> None:
        if up:
            if source in self._gap_start:
                self._reconnected[source] = now
        else:
            self._gap_start.setdefault(source, now)
            self._reconnected.pop(source, None)

    def delivered(self, source: str, created_at: datetime) -> None:
        back = self._reconnected.get(source)
        if back is not None and created_at >= back - self.allowed_lateness:
            self._complete(source)

    def hold(self, now: datetime) -> datetime | None:
        """The latest event time buckets may close at (None: no live source, nothing owed)."""
        for source, back in list(self._reconnected.items()):
            if now - back >= self.catch_up:
                self._complete(source)
        holds = [start - self.allowed_lateness for start in self._gap_start.values()]
        if self._live:
            holds.append(now - self.allowed_lateness)
        return min(holds, default=None)

    def _complete(self, source: str) -> None:
        self._gap_start.pop(source, None)
        self._reconnected.pop(source, None)


class WallSteps:
    """The wall time to tick with: the wall clock, unless it has jumped ahead of the time
    that passed (``monotonic``), as an NTP step, a VM resumed or a bad clock does; then
    the time the daemon saw pass, until the wall clock is back in line. One tick at a
    wall time hours ahead would close those hours' buckets as empty (a false "volume
    drop"), and every post after it, until then, would be late: the daemon blind."""

    SLACK_SECONDS = 5.0  # steps smaller than this are the wall clock's usual corrections

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._anchor: tuple[datetime, float] | None = None  # (wall, monotonic) in line
        self._stepped = False

    def at(self, wall: datetime) -> tuple[datetime, float | None]:
        """The time to tick with, and the step in seconds when one has just begun."""
        mono = self._monotonic()
        if self._anchor is not None:
            anchor_wall, anchor_mono = self._anchor
            passed = anchor_wall + timedelta(seconds=mono - anchor_mono)
            ahead = (wall - passed).total_seconds()
            if ahead > self.SLACK_SECONDS:
                began = not self._stepped
                self._stepped = True
                return passed, ahead if began else None
        self._anchor = (wall, mono)  # in line, or behind (a step back moves nothing)
        self._stepped = False
        return wall, None
