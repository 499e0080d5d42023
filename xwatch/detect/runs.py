"""The run behind a CUSUM: what a sustained alarm stands on.

A CUSUM gathers evidence bucket after bucket from the last time it stood at zero; when
that evidence, not the bucket alone, makes a signal's likelihood, the bucket's own
numbers do not explain the alert ("volume 15, expected 21" for a drop alarm). The
detectors keep, beside each CUSUM, the sums of the buckets since it left zero, and a
signal the CUSUM decides carries them as a ``model.Run``: since when, how many
buckets, observed against expected in total.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from xwatch.model import Run


@dataclass(slots=True)
class RunTracker:
    """The sums of one CUSUM's run (none while the CUSUM stands at zero)."""

    start: float | None = None  # the first bucket's start (epoch seconds)
    buckets: int = 0
    observed: float = 0.0
    expected: float = 0.0
    posts: int = 0  # for a share: the posts its negatives are counted among

    def through(
        self,
        ongoing: bool,
        start: datetime,
        observed: float,
        expected: float,
        posts: int = 0,
    ) -> Run:
        """The run through a bucket: the one so far and the bucket if ``ongoing`` (the
        CUSUM stood above zero before the bucket), else the bucket alone."""
        if not ongoing or self.start is None:
            return Run(start, 1, float(observed), expected, posts)
        return Run(
            datetime.fromtimestamp(self.start, UTC),
            self.buckets + 1,
            self.observed + observed,
            self.expected + expected,
            self.posts + posts,
        )

    def advance(
        self,
        ongoing: bool,
        start: float,
        observed: float,
        expected: float,
        posts: int = 0,
        *,
        lasts: bool,
    ) -> None:
        """Learn a bucket: ``keep(through(...))`` if the CUSUM stays above zero after it
        (``lasts``), else ``keep(None)``; in place, without making a ``Run`` (this is
        done for every bucket of every series). ``start``: epoch seconds."""
        if not lasts:
            self.keep(None)
        elif not ongoing or self.start is None:
            self.start, self.buckets, self.posts = start, 1, posts
            self.observed, self.expected = float(observed), expected
        else:
            self.buckets += 1
            self.observed += observed
            self.expected += expected
            self.posts += posts

    def keep(self, run: Run | None) -> None:
        """Remember ``run`` (None: the CUSUM is back at zero, the run is over)."""
        if run is None:
            self.start, self.buckets = None, 0
            self.observed = self.expected = 0.0
            self.posts = 0
            return
        self.start = run.start.timestamp()
        self.buckets, self.posts = run.buckets, run.posts
        self.observed, self.expected = run.observed, run.expected
