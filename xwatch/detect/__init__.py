"""Detection: event-time buckets per series, and the online detectors that judge them.

Every detector follows river's contract on closed buckets: ``score_one(bucket)``
first (it must not look at anything later), then ``learn_one(bucket)``. The
score is a ``Signal`` whose ``likelihood`` is calibrated: under normal behaviour
a likelihood of at least ``1 - q`` is seen in about a fraction ``q`` of buckets,
so one threshold (say 0.999) means the same for a big brand and a small one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from xwatch.model import Bucket, Measure, Signal


class Detector(Protocol):
    measure: Measure

    def score_one(self, bucket: Bucket) -> Signal:
        """Judge a closed bucket against what was learned before it."""
        ...

    def learn_one(self, bucket: Bucket) -> None:
        """Learn from a closed bucket (after ``score_one`` on it)."""
        ...

    def skip_hole(self, seconds: float) -> None:
        """A hole of ``seconds`` in the data: none of its buckets will come. It is not time
        watched (a warm-up goes on where it was)."""
        ...


@runtime_checkable
class Settling(Protocol):
    """A detector that adopts a lasting change as its new normal (the count and share
    detectors), and says how far from the old one it settled."""

    def settled(self, at: datetime, since: datetime) -> float | None:
        """The normal now over the normal before the last adopted change, if it was
        adopted at ``since`` or later and is still remembered at ``at``; else None."""
        ...
