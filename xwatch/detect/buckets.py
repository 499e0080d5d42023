"""Event-time bucketing: mentions in, closed buckets out, per series and time scale.

Each series keeps the buckets that are still open (a post may arrive late, up to
the allowed lateness) and closes them, in order, when the watermark passes their
end, including the empty ones: a quiet minute is a bucket with a count of 0.
A post for a bucket that is already closed is *late*: it is counted, not added.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import UTC, datetime

from xwatch.model import Bucket, Mention, SeriesKey


@dataclass(slots=True)
class _OpenBucket:
    count: int = 0
    negative: int = 0
    reach: int = 0
    # min-heap of the posts to show: negatives first, then by reach
    top: list[tuple[bool, int, str, Mention]] = field(default_factory=list)


@dataclass(slots=True)
class SeriesBuckets:
    """The open buckets of one series at one scale."""

    key: SeriesKey
    next_index: int  # the index (start // width) of the next bucket to close
    samples: int = 5
    open: dict[int, _OpenBucket] = field(default_factory=dict)

    def add(self, mention: Mention, timestamp: float) -> bool:
        """Add a post; False if its bucket has already closed (it is late)."""
        index = int(timestamp // self.key.scale_seconds)
        if index < self.next_index:
            return False
        bucket = self.open.get(index)
        if bucket is None:
            bucket = self.open[index] = _OpenBucket()
        bucket.count += 1
        reach = mention.reach
        bucket.reach += reach
        negative = mention.is_negative
        if negative:
            bucket.negative += 1
        entry = (negative, reach, mention.id, mention)
        if len(bucket.top) < self.samples:
            heapq.heappush(bucket.top, entry)
        elif entry[:3] > bucket.top[0][:3]:
            heapq.heapreplace(bucket.top, entry)
        return True

    def close_until(self, watermark: float) -> list[Bucket]:
        """Close every bucket whose end is at or before ``watermark``, empty ones included."""
        width = self.key.scale_seconds
        last = int(watermark // width)  # buckets with index < last have end <= watermark
        closed = []
        for index in range(self.next_index, last):
            state = self.open.pop(index, None) or _OpenBucket()
            samples = tuple(m for *_, m in sorted(state.top, key=lambda e: e[:3], reverse=True))
            closed.append(
                Bucket(
                    series=self.key,
                    start=datetime.fromtimestamp(index * width, UTC),
                    end=datetime.fromtimestamp((index + 1) * width, UTC),
                    count=state.count,
                    negative=state.negative,
                    reach=state.reach,
                    samples=samples,
                )
            )
        self.next_index = max(self.next_index, last)
        return closed


class Aggregator:
    """Every series at every scale; the series start at the first post's bucket."""

    def __init__(self, scales_seconds: tuple[int, ...], samples: int = 5) -> None:
        self.scales = scales_seconds
        self.samples = samples
        self.series: dict[SeriesKey, SeriesBuckets] = {}
        self.start: float | None = None  # event time of the first post

    def _series(self, brand: str, topic: str, scale: int) -> SeriesBuckets:
        key = SeriesKey(brand, topic, scale)
        series = self.series.get(key)
        if series is None:
            start = self.start if self.start is not None else 0.0
            series = SeriesBuckets(key, int(start // scale), self.samples)
            self.series[key] = series
        return series

    def declare(self, brand: str, topic: str = "") -> None:
        """Make a series exist (so it has buckets, with zeros, before any post)."""
        for scale in self.scales:
            self._series(brand, topic, scale)

    def add(self, mention: Mention, brand: str, topic: str = "") -> bool:
        """Add a post to a series at every scale; False if it is late at the finest scale."""
        timestamp = mention.created_at.timestamp()
        if self.start is None:
            self.start = timestamp
            for key, series in self.series.items():
                series.next_index = int(timestamp // key.scale_seconds)
        on_time = True
        for scale in self.scales:
            on_time = self._series(brand, topic, scale).add(mention, timestamp) and on_time
        return on_time

    def close_until(self, watermark: datetime) -> list[Bucket]:
        """Every bucket the watermark has passed, oldest first (finest scale first on ties)."""
        if self.start is None:
            return []
        mark = watermark.timestamp()
        closed = [b for series in self.series.values() for b in series.close_until(mark)]
        closed.sort(key=lambda b: (b.end, b.series.scale_seconds, b.series.brand, b.series.topic))
        return closed
