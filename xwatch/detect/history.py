"""The recent buckets of each series, kept small, for the chart an alert carries.

An alert shows the last few hours of its brand: volume against its expected band
and the negative share against its usual level (``HistoryPoint``). Every series
keeps its last ``size`` buckets in one flat ``array`` of floats (about 2.7 kB per
series at the default 48 points), so 10,000 series cost tens of megabytes, not
hundreds.
"""

from __future__ import annotations

from array import array
from datetime import UTC, datetime

from xwatch.model import Bucket, HistoryPoint, Measure, SeriesKey, Signal

FIELDS = 7  # start (epoch s), count, expected, low, high, negative share, usual share
DEFAULT_POINTS = 48


class Ring:
    """The last ``size`` points of one series, oldest overwritten first."""

    __slots__ = ("filled", "next", "size", "values")

    def __init__(self, size: int) -> None:
        self.size = size
        self.values = array("d", bytes(8 * FIELDS * size))
        self.next = 0
        self.filled = 0

    def add(self, point: tuple[float, ...]) -> None:
        offset = self.next * FIELDS
        self.values[offset : offset + FIELDS] = array("d", point)
        self.next = (self.next + 1) % self.size
        self.filled = min(self.filled + 1, self.size)

    def points(self) -> tuple[HistoryPoint, ...]:
        first = (self.next - self.filled) % self.size
        result = []
        for i in range(self.filled):
            offset = ((first + i) % self.size) * FIELDS
            start, count, expected, low, high, share, usual = self.values[offset : offset + FIELDS]
            result.append(
                HistoryPoint(
                    start=datetime.fromtimestamp(start, UTC),
                    count=int(count),
                    expected=expected,
                    low=low,
                    high=high,
                    negative_share=share,
                    usual_share=usual,
                )
            )
        return tuple(result)


class History:
    """``HistoryPoint``s per series: ``record`` each judged bucket, ``points`` for an alert."""

    def __init__(self, size: int = DEFAULT_POINTS) -> None:
        self.size = size
        self.rings: dict[SeriesKey, Ring] = {}

    def record(self, bucket: Bucket, signals: list[Signal]) -> None:
        volume = share = None
        for signal in signals:
            if signal.measure is Measure.VOLUME:
                volume = signal
            elif signal.measure is Measure.NEGATIVE_SHARE:
                share = signal
        ring = self.rings.get(bucket.series)
        if ring is None:
            ring = self.rings[bucket.series] = Ring(self.size)
        ring.add(
            (
                bucket.start.timestamp(),
                float(bucket.count),
                volume.expected if volume else float(bucket.count),
                volume.low if volume else float(bucket.count),
                volume.high if volume else float(bucket.count),
                bucket.negative_share,
                share.expected if share else bucket.negative_share,
            )
        )

    def points(self, series: SeriesKey) -> tuple[HistoryPoint, ...]:
        ring = self.rings.get(series)
        return ring.points() if ring is not None else ()
