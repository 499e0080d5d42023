"""Event-time bucketing: mentions in, closed buckets out, per series and time scale.

Each series keeps the buckets that are still open (a post may arrive late, up to
the allowed lateness) and closes them, in order, when the watermark passes their
end, including the empty ones: a quiet minute is a bucket with a count of 0.
A post for a bucket that is already closed, or due to close (its end at or before the
watermark before the post, when its close waits for the end of a batch), is *late*: it
is counted, not added.

Both calls are on the daemon's hot path: ``add`` runs for every post at each scale,
``close_until`` after every batch, however small. ``Aggregator`` therefore keeps each
(brand, topic)'s series in a list (no key is built per post) and the earliest time at
which any bucket can close, so that a batch that closes nothing costs one comparison
instead of a walk over every series (10,000 series: milliseconds per batch).
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any

from xwatch.model import Bucket, Mention, SeriesKey


@dataclass(slots=True)
class _OpenBucket:
    count: int = 0
    negative: int = 0
    reach: int = 0
    # min-heap of the posts to show: negatives first, then by reach
    top: list[tuple[bool, int, str, Mention]] = field(default_factory=list)
    # what has been judged of it while open (``Pipeline._judge_early``), gone with it
    judged_early: Any = None


@dataclass(slots=True)
class SeriesBuckets:
    """The open buckets of one series at one scale."""

    key: SeriesKey
    next_index: int  # the index (start // width) of the next bucket to close
    samples: int = 5
    open: dict[int, _OpenBucket] = field(default_factory=dict)

    def add(self, mention: Mention, timestamp: float, watermark: float = -math.inf) -> bool:
        """Add a post; False if it is late: its bucket has closed, or would have (it ends
        at or before ``watermark``, epoch seconds) had the posts before come one at a time."""
        return self.add_scored(mention, timestamp, mention.is_negative, mention.reach, watermark)

    def add_scored(
        self,
        mention: Mention,
        timestamp: float,
        negative: bool,
        reach: int,
        watermark: float = -math.inf,
    ) -> bool:
        """``add`` with the post's negativity and reach already worked out (once per post,
        not once per series)."""
        width = self.key.scale_seconds
        index = int(timestamp // width)
        if index < self.next_index or (index + 1) * width <= watermark:
            return False
        bucket = self.open.get(index)
        if bucket is None:
            bucket = self.open[index] = _OpenBucket()
        bucket.count += 1
        bucket.reach += reach
        if negative:
            bucket.negative += 1
        top = bucket.top
        if len(top) < self.samples:
            heapq.heappush(top, (negative, reach, mention.id, mention))
        else:
            lowest = top[0]
            if (negative, reach, mention.id) > (lowest[0], lowest[1], lowest[2]):
                heapq.heapreplace(top, (negative, reach, mention.id, mention))
        return True

    def peek(self, index: int, until: datetime) -> Bucket | None:
        """Open bucket ``index`` as it stands, as a bucket ending at ``until`` (its posts so
        far, its samples ranked as a closed bucket's); None if it has no post or is closed."""
        state = self.open.get(index)
        if state is None:
            return None
        width = self.key.scale_seconds
        start = datetime.fromtimestamp(index * width, UTC)
        samples = tuple(entry[3] for entry in sorted(state.top, key=_rank, reverse=True))
        return Bucket(self.key, start, until, state.count, state.negative, state.reach, samples)

    @property
    def due(self) -> float:
        """The watermark (epoch seconds) at which this series' next bucket closes."""
        return float((self.next_index + 1) * self.key.scale_seconds)

    def close_until(self, watermark: float) -> list[Bucket]:
        """Close every bucket whose end is at or before ``watermark``, empty ones included."""
        width = self.key.scale_seconds
        last = int(watermark // width)  # buckets with index < last have end <= watermark
        if last <= self.next_index:
            return []
        closed = []
        key, open_buckets, step = self.key, self.open, timedelta(seconds=width)
        end = datetime.fromtimestamp(self.next_index * width, UTC)
        for index in range(self.next_index, last):
            start, end = end, end + step
            state = open_buckets.pop(index, None)
            if state is None:  # a quiet bucket: data too
                closed.append(Bucket(key, start, end, 0, 0, 0))
                continue
            samples = tuple(entry[3] for entry in sorted(state.top, key=_rank, reverse=True))
            closed.append(
                Bucket(key, start, end, state.count, state.negative, state.reach, samples)
            )
        self.next_index = last
        return closed


def _rank(entry: tuple[bool, int, str, Mention]) -> tuple[bool, int, str]:
    """How a sample post ranks: negative first, then by reach, then by id."""
    return entry[0], entry[1], entry[2]


def _tie_order(series: SeriesBuckets) -> tuple[int, str, str]:
    return series.key.scale_seconds, series.key.brand, series.key.topic


_end = attrgetter("end")


class Aggregator:
    """Every series at every scale; the series start at the first post's bucket."""

    def __init__(
        self, scales_seconds: tuple[int, ...], samples: int = 5, rewind_seconds: float = 0.0
    ) -> None:
        self.scales = scales_seconds
        self.samples = samples
        self.series: dict[SeriesKey, SeriesBuckets] = {}
        # the same by scale, each in the order of buckets that end at one instant (brand,
        # topic), and the watermark from which each scale's next bucket closes: a round of
        # closes at the finest scale looks at its series only (a backlog's batches end at
        # each round: all 7,000 series of 500 brands at each minute cost a fifth of them)
        self._by_scale: dict[int, list[SeriesBuckets]] = {}
        self._due_of: dict[int, float] = {}
        self.start: float | None = None  # event time of the first post
        # until a bucket has closed, an earlier post moves the start back, by at most this
        self.rewind_seconds = rewind_seconds
        self._floor = -math.inf  # ... from the first post
        self._closed = False
        self._mark = -math.inf  # the newest watermark ``close_until`` was given
        self._scales_of: dict[tuple[str, str], list[SeriesBuckets]] = {}  # one per scale
        self._due = math.inf  # no watermark below this closes a bucket
        self.held = False  # no bucket closes (a checkpoint is being taken: ``closed_through``)

    def _series(self, brand: str, topic: str, scale: int) -> SeriesBuckets:
        key = SeriesKey(brand, topic, scale)
        series = self.series.get(key)
        if series is None:
            # from the start; or, once buckets have closed (a topic rule added by a
            # reload), from the bucket the watermark is in: from the start, the next
            # round closed every bucket since it, empty (4,300 of them after three days
            # at one minute), and the new topic's detectors learned days of silence it
            # never had, then read its first posts as a surge
            start = self.start if self.start is not None else 0.0
            if self._closed:
                start = max(start, self._mark)
            series = SeriesBuckets(key, int(start // scale), self.samples)
            self.series[key] = series
            bisect.insort(self._by_scale.setdefault(scale, []), series, key=_tie_order)
            self._due_of[scale] = min(self._due_of.get(scale, math.inf), series.due)
            self._due = min(self._due, series.due)
        return series

    def _all_scales(self, brand: str, topic: str) -> list[SeriesBuckets]:
        found = self._scales_of.get((brand, topic))
        if found is None:
            found = [self._series(brand, topic, scale) for scale in self.scales]
            self._scales_of[(brand, topic)] = found
        return found

    def declare(self, brand: str, topic: str = "", scales: Iterable[int] | None = None) -> None:
        """Make a series exist (so it has buckets, with zeros, before any post) at
        ``scales`` (default: every scale). Its posts are counted at those scales only
        (a topic's rule may look at 5 and 15 minutes only); declaring it again adds
        scales (``drop`` takes them away)."""
        wanted = set(self.scales if scales is None else scales) & set(self.scales)
        found = self._scales_of.setdefault((brand, topic), [])
        wanted -= {series.key.scale_seconds for series in found}
        found.extend(self._series(brand, topic, scale) for scale in sorted(wanted))
        found.sort(key=lambda series: series.key.scale_seconds)

    def drop(self, keys: Iterable[SeriesKey]) -> None:
        """Forget these series (a topic, or one of its scales, that no rule looks at after
        a reload), their open buckets with them: left in place, each closed a bucket per
        round for nothing, for as long as the daemon ran. One declared again later starts
        from the bucket the watermark is in, as a new one does."""
        gone = {key for key in keys if self.series.pop(key, None) is not None}
        if not gone:
            return
        scales = sorted({key.scale_seconds for key in gone})
        for scale in scales:
            self._by_scale[scale] = [s for s in self._by_scale[scale] if s.key not in gone]
        for pair in {(key.brand, key.topic) for key in gone}:
            kept = [s for s in self._scales_of.get(pair, ()) if s.key not in gone]
            if kept:
                self._scales_of[pair] = kept
            else:
                self._scales_of.pop(pair, None)
        self._update_due(scales)

    def scales_of(self, brand: str, topic: str = "") -> list[SeriesBuckets]:
        """The series of a brand (or one of its topics) at each scale it is counted at."""
        return self._scales_of.get((brand, topic), [])

    def add(
        self, mention: Mention, brand: str, topic: str = "", watermark: float = -math.inf
    ) -> bool:
        """Add a post to a series at each of its scales; False if it is late at one (see
        ``SeriesBuckets.add``: ``watermark`` makes that the same however posts are batched)."""
        timestamp = mention.created_at.timestamp()
        if self.start is None or (timestamp < self.start and not self._closed):
            self.begin(timestamp)  # (or not: see there)
        negative, reach = mention.is_negative, mention.reach
        on_time = True
        for series in self._all_scales(brand, topic):
            on_time = series.add_scored(mention, timestamp, negative, reach, watermark) and on_time
        return on_time

    def begin(self, timestamp: float) -> None:
        """Start every series at the bucket of ``timestamp``: the first post's, or, until a
        bucket has closed, an earlier post's up to ``rewind_seconds`` before the first (a
        first post from a fast clock must not make the posts of the next minutes late; a
        straggler from days ago must not make the detectors learn days of empty buckets).
        A pipeline that judges some brands only calls it for the posts about the others."""
        if self.start is None:
            self._floor = timestamp - self.rewind_seconds
        elif self._closed or not self._floor <= timestamp < self.start:
            return
        self.start = timestamp
        for key, series in self.series.items():
            series.next_index = int(timestamp // key.scale_seconds)
        self._update_due(list(self._by_scale))

    def resume(self, timestamp: float) -> None:
        """Every series goes on from the bucket of ``timestamp``, the buckets before it
        never closed: after a hole in the data (``Pipeline._skip_gap``), once every
        bucket holding a post has closed."""
        for key, series in self.series.items():
            series.next_index = max(series.next_index, int(timestamp // key.scale_seconds))
        self._update_due(list(self._by_scale))

    def closed_through(self) -> dict[int, float]:
        """Each scale's first bucket not closed yet (its start, epoch seconds): the detectors
        have learned every bucket before it, and none from it on. Empty before the first
        post. Keep ``held`` while the detectors' states are taken, so that it stays true."""
        if self.start is None:
            return {}
        return {
            scale: float(min(s.next_index for s in series) * scale)
            for scale, series in self._by_scale.items()
            if series
        }

    def continue_from(self, closed: dict[int, float]) -> None:
        """Go on where a checkpoint's detectors stopped (``closed_through`` then): each
        series' next bucket is its scale's first not closed, and a post before it is late
        there (it was counted, or late, before the restart). A scale the checkpoint did
        not know starts at the earliest of them."""
        if not closed:
            return
        earliest = min(closed.values())
        self.start = earliest
        self._closed = True  # an earlier post moves nothing back
        self._mark = earliest
        for key, series in self.series.items():
            series.next_index = int(closed.get(key.scale_seconds, earliest) // key.scale_seconds)
        self._update_due(list(self._by_scale))

    def due_by(self, watermark: datetime) -> bool:
        """Whether ``watermark`` lets a bucket close."""
        return not self.held and self.start is not None and watermark.timestamp() >= self._due

    def close_until(self, watermark: datetime) -> list[Bucket]:
        """Every bucket the watermark has passed, oldest first (finest scale first on ties)."""
        if self.start is None or self.held:
            return []
        mark = watermark.timestamp()
        self._mark = max(self._mark, mark)
        if mark < self._due:
            return []  # the usual case: no bucket boundary passed since the last call
        due = sorted(scale for scale, at in self._due_of.items() if at <= mark)  # finest first
        closed = [
            b for scale in due for series in self._by_scale[scale] for b in series.close_until(mark)
        ]
        closed.sort(key=_end)  # stable: at one end, finest scale first, then brand, topic
        self._closed = self._closed or bool(closed)
        self._update_due(due)
        return closed

    def _update_due(self, scales: list[int]) -> None:
        """The watermark from which the next bucket of each of ``scales`` closes, and of any."""
        for scale in scales:
            self._due_of[scale] = min((s.due for s in self._by_scale[scale]), default=math.inf)
        self._due = min(self._due_of.values(), default=math.inf)
