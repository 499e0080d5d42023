"""Detection: event-time buckets per series, and the online detectors that judge them.

Every detector follows river's contract on closed buckets: ``score_one(bucket)``
first (it must not look at anything later), then ``learn_one(bucket)``. The
score is a ``Signal`` whose ``likelihood`` is calibrated: under normal behaviour
a likelihood of at least ``1 - q`` is seen in about a fraction ``q`` of buckets,
so one threshold (say 0.999) means the same for a big brand and a small one.
"""

from __future__ import annotations

from typing import Protocol

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
