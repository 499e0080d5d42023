"""New terms: words and hashtags that were rare for a brand and are suddenly everywhere.

Per brand and time scale, a ``TermTracker`` counts, in each event-time bucket, the
posts that use each term (``terms_of``: lower-cased Latin words of 3+ letters that
are not stop words, hashtags, cashtags, and for Japanese the katakana runs and kanji
runs of 2+ characters; no tokenizer library). Its ``TermModel`` keeps, per term, an
exponentially decayed count of the posts that used it (half-life: a week), and the
decayed count of all posts, so a term's usual *share* of the brand's posts is their
ratio. Shares, not counts: when the whole brand gets busier, its everyday words get
busier with it, and that is the volume rule's news, not a new term.

A closed bucket with ``n`` posts is judged term by term: a term used in ``k`` posts
is compared with a Poisson of mean ``n x share``. A term never seen (or evicted) gets
the share of one post in the decayed history, or of the strongest term evicted if
that is more: the floor for "rare". The tail probability is multiplied by the number
of different terms in the bucket (Bonferroni): a bucket tests hundreds of terms at
once, and the likelihood must keep its meaning for rules, "about one false alarm per
``1 / (1 - likelihood)`` buckets" of the brand, however many words those hold.

The vocabulary is bounded: past ``capacity`` terms (plus a quarter, so that eviction
is rare) the weakest are dropped. Every term is interned (``sys.intern``) when a post's
terms are read: a word is one string in the process, however many brands' models and
open buckets hold it, and a bucket's counting keeps no string of its own (10,000
brands share one English vocabulary; an interned string is freed with its last use).
The model is checkpointed with the detectors (``xwatch.detect.state``): new-term rules
do not warm up again after a restart.
Rules decide what is a surge worth an alert (``when: new_term`` in ``xwatch.rules``);
``emerging`` is the context every alert of the brand shows.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from sys import intern
from typing import Any

from xwatch.detect.tails import nbinom_band, nbinom_sf
from xwatch.model import Measure, Mention, SeriesKey, Signal, TermSurge

WEEK = 7 * 86400.0

# Words that carry no news: English function words of 3+ letters, and what every post has.
_STOP_WORDS = """
    about above after again against all also and any are aren because been before being
    below between both but can cannot could couldn did didn does doesn doing don during
    each few for from further get got had hadn has hasn have haven having her here hers
    herself him himself his how into isn its itself just let like more most mustn myself
    nor not now off once only other our ours ourselves out over own same shan she should
    shouldn some such than that the their theirs them themselves then there these they
    this those through too under until very via was wasn were weren what when where which
    while who whom why will with won would wouldn you your yours yourself yourselves
    amp http https www com rt lol omg
"""
STOP_WORDS = frozenset(_STOP_WORDS.split())

# Skipped: links and @handles. Kept (group 1): hashtags, cashtags, Latin words, katakana
# runs, kanji runs. Applied to ``xwatch.rules.normalize``d text (NFKC, case-folded).
_TOKENS = re.compile(
    r"https?://\S+|@\w+|"
    r"(#\w+|\$[a-z]{1,6}(?![a-z0-9])"
    r"|[a-z\u00e0-\u024f][a-z0-9\u00e0-\u024f]{2,}"
    # katakana: from a full-size kana (not a small one, not the long-vowel mark), the
    # mark once at a time: "ケトルバードーー" is "ケトルバード", "ーーー" is no term
    r"|[\u30a2\u30a4\u30a6\u30a8\u30aa-\u30c2\u30c4-\u30e2\u30e4\u30e6\u30e8-\u30ed"
    r"\u30ef-\u30f4\u30f7-\u30fa](?:[\u30a1-\u30fa]|\u30fc(?!\u30fc))+"
    r"|[\u3400-\u4dbf\u4e00-\u9fff\u3005]{2,})"
)


def terms_of(folded_text: str) -> set[str]:
    """The distinct terms of a post, from its folded text (``xwatch.rules.normalize``),
    interned: the same word is the same string object in every post."""
    return {intern(t) for t in _TOKENS.findall(folded_text) if t and t not in STOP_WORDS}


def brand_stop_terms(folded_terms: Iterable[str]) -> frozenset[str]:
    """A brand's own names (and their hashtags): in nearly every post, never news."""
    words = set()
    for term in folded_terms:
        words |= terms_of(term)
        words |= terms_of(term.lstrip("@#"))
    return frozenset(words | {f"#{w.lstrip('#')}" for w in words})


@dataclass(frozen=True, slots=True)
class TermParams:
    halflife_seconds: float = WEEK  # how long a term's past use keeps it "usual"
    capacity: int = 5000  # terms remembered per brand and scale
    floor_posts: float = 1.0  # a never-seen term counts as if seen in this many posts
    emerging_min_count: int = 3  # what alerts show as emerging terms: used at least this often
    emerging_likelihood: float = 0.999  # ... and at least this unlikely
    emerging_top: int = 5  # ... at most this many, most surprising first
    warmup_seconds: float = 86400.0  # no emerging terms before this much history


@dataclass(slots=True)
class TermModel:
    """What a tracker has learned: decayed counts of posts per term (plain data).

    Every count decays by the same factor per bucket, so they are kept in units that do
    not decay (``counts[t] * unit`` is the decayed count): a bucket costs its own terms,
    not the whole vocabulary.
    """

    width_seconds: int
    params: TermParams = TermParams()
    counts: dict[str, float] = field(default_factory=dict)  # term -> posts using it, in units
    unit: float = 1.0  # what one unit of ``counts`` is worth now (shrinks as time passes)
    posts: float = 0.0  # decayed posts in all
    unseen: float = 0.0  # decayed count of the strongest term evicted so far
    first_start: float | None = None  # start of the first bucket learned
    measure: Measure = Measure.TERM_VOLUME  # what a checkpoint files it under

    def count(self, term: str) -> float:
        """The decayed number of posts that used ``term``."""
        return self.counts.get(term, 0.0) * self.unit

    def usual(self, term: str) -> float:
        """The term's usual share of posts, never below the floor for rare terms."""
        floor = max(self.unseen, self.params.floor_posts)
        return min(1.0, max(self.count(term), floor) / max(self.posts, 1.0))

    def learn(self, start: float, posts: int, counts: dict[str, int]) -> None:
        if self.first_start is None:
            self.first_start = start
        decay = 0.5 ** (self.width_seconds / self.params.halflife_seconds)
        self.posts = self.posts * decay + posts
        self.unseen *= decay
        self.unit *= decay
        if self.unit < 1e-150:  # rescale long before the units overflow
            self.counts = {t: v * self.unit for t, v in self.counts.items()}
            self.unit = 1.0
        known, unit = self.counts, self.unit
        for term, count in counts.items():
            value = known.get(term)
            if value is None:  # a new term: the process's one copy of it (see intern_terms)
                known[intern(term)] = count / unit
            else:
                known[term] = value + count / unit
        capacity = self.params.capacity
        if len(known) > capacity + capacity // 4:
            kept = dict(heapq.nlargest(capacity, known.items(), key=itemgetter(1)))
            dropped = max((v for t, v in known.items() if t not in kept), default=0.0)
            self.counts = kept
            self.unseen = max(self.unseen, dropped * unit)

    def skip_hole(self, seconds: float) -> None:
        """A hole in the data is not history watched (see ``Detector.skip_hole``)."""
        if self.first_start is not None:
            self.first_start += seconds

    def intern_terms(self) -> None:
        """Make every term the process's one copy of it (for a model that was read back
        from a checkpoint or a copy: its strings are its own until then)."""
        self.counts = {intern(term): value for term, value in self.counts.items()}

    def history_seconds(self, at: float) -> float:
        return 0.0 if self.first_start is None else at - self.first_start


_Sample = tuple[int, str, Mention]  # (reach, post id, post): a min-heap keeps the most reach
_Early = tuple[int, str, Mention, Iterable[str]]  # ... and the post's terms


_Counts = tuple[int, int, int]  # a term's posts in a bucket, its negative ones, their reach


@dataclass(slots=True)
class _OpenTerms:
    """A tracker's open bucket: its posts, and per term its counts and samples."""

    posts: int = 0
    dropped: int = 0  # new terms not counted: the bucket had ``BUCKET_TERMS`` already
    # term -> its posts, negatives and reach: tuples of numbers, which the garbage
    # collector soon stops tracking (a bucket holds thousands of terms, most used once)
    counts: dict[str, _Counts] = field(default_factory=dict)
    # term -> its posts with the most reach among those that came while it could fire a
    # rule (``sample_min`` posts and ``sample_share`` of the bucket's posts so far). Not
    # the others: most terms are one of hundreds of words used a few times, and keeping
    # their posts would keep nearly every post of the bucket.
    samples: dict[str, list[_Sample]] = field(default_factory=dict)
    # the bucket's posts with the most reach, with their terms: the samples of a term's
    # posts before it could fire a rule
    early: list[_Early] = field(default_factory=list)


EARLY_PER_SAMPLE = 4  # a bucket keeps this many posts per sample an alert shows
BUCKET_TERMS = 20_000
"""The most different terms an open bucket counts; the posts' other new terms are
dropped (``TermTracker.dropped``). A bucket of a busy brand uses a few thousand; a bot
posting random hashtags would otherwise fill memory (191 bytes a term) and stall the
bucket's close (which judges every term)."""


@dataclass(frozen=True, slots=True)
class Surge:
    """One term in one closed bucket, judged against its usual share."""

    term: str
    count: int  # posts using it
    expected: float
    likelihood: float  # corrected for the number of terms in the bucket
    surprise: float
    share: float  # of the bucket's posts
    negative: int
    reach: int
    samples: tuple[Mention, ...]  # its posts with the most reach, most first

    def as_term_surge(self) -> TermSurge:
        return TermSurge(self.term, self.count, self.expected, self.likelihood)

    def signal(self, series: SeriesKey, start: datetime, end: datetime) -> Signal:
        """The surge as a ``term_volume`` signal on ``series`` (for the alert)."""
        low, high = nbinom_band(self.expected, 0.0)
        return Signal(
            series=series,
            measure=Measure.TERM_VOLUME,
            start=start,
            end=end,
            observed=float(self.count),
            expected=self.expected,
            low=low,
            high=high,
            likelihood=self.likelihood,
            direction="up",
            surprise=self.surprise,
        )


@dataclass(frozen=True, slots=True)
class ClosedTerms:
    """A closed bucket of a tracker: its terms judged (the surges at least ``judge_min``)."""

    start: datetime
    end: datetime
    posts: int
    terms: int  # different terms in the bucket
    surges: tuple[Surge, ...]  # most surprising first
    history_seconds: float  # how much the model had learned before this bucket


class TermTracker:
    """Counts one brand's terms per bucket at one scale; judges and learns closed buckets."""

    def __init__(
        self,
        width_seconds: int,
        stop: frozenset[str] = frozenset(),
        samples: int = 5,
        params: TermParams = TermParams(),
    ) -> None:
        self.model = TermModel(width_seconds, params)
        self.stop = stop
        self.samples = samples
        self.judge_min = params.emerging_min_count  # rules may lower it (their min_count)
        self.warmup_seconds = params.warmup_seconds  # ... and this (their warmup_seconds)
        # a term's posts are kept as samples once it has this many posts and this share
        # of the bucket's posts so far (the rules' least ``min_count`` and ``min_share``)
        self.sample_min = self.judge_min
        self.sample_share = 0.0
        self.open: dict[int, _OpenTerms] = {}
        self.next_index: int | None = None  # the next bucket to close
        self.emerging: tuple[TermSurge, ...] = ()  # of the last closed bucket
        self.dropped = 0  # terms not counted since the owner last took this (BUCKET_TERMS)

    @property
    def width(self) -> int:
        return self.model.width_seconds

    def add(
        self,
        mention: Mention,
        terms: Iterable[str],
        timestamp: float,
        watermark: float = -math.inf,
    ) -> None:
        """Count a post's terms (a set: each term once per post) in its bucket, unless it
        is late: its bucket has closed, or would have (it ends at or before ``watermark``)
        had the posts before come one at a time (as ``SeriesBuckets.add``)."""
        index = int(timestamp // self.width)
        if self.next_index is None:
            self.next_index = index
        elif index < self.next_index or (index + 1) * self.width <= watermark:
            return
        bucket = self.open.get(index)
        if bucket is None:
            bucket = self.open[index] = _OpenTerms()
        bucket.posts += 1
        negative = int(mention.is_negative)
        reach = mention.reach
        sample = (reach, mention.id, mention)
        may_fire = max(self.sample_min, self.sample_share * bucket.posts)  # posts of a term
        counts, samples, stop = bucket.counts, bucket.samples, self.stop
        for term in terms:
            if term in stop:
                continue
            before = counts.get(term)
            if before is None:
                if len(counts) >= BUCKET_TERMS:
                    bucket.dropped += 1
                    continue
                count = 1
                counts[term] = (1, negative, reach)
            else:
                count = before[0] + 1
                counts[term] = (count, before[1] + negative, before[2] + reach)
            if count >= may_fire:
                kept = samples.get(term)
                if kept is None:
                    kept = samples[term] = []
                _keep(kept, sample, self.samples)
        _keep(bucket.early, (*sample, terms), self.samples * EARLY_PER_SAMPLE)

    def resume(self, timestamp: float) -> None:
        """Go on from the bucket of ``timestamp``, the buckets before it never closed (after
        a hole in the data, once every bucket holding a post has closed)."""
        index = int(timestamp // self.width)
        if self.next_index is not None and index > self.next_index:
            self.model.skip_hole((index - self.next_index) * self.width)
        self.next_index = index if self.next_index is None else max(self.next_index, index)

    def continue_from(self, start: float) -> None:
        """Go on where a checkpoint's model stopped: ``start`` (epoch seconds) is in the
        first bucket it had not learned (``Aggregator.closed_through``)."""
        self.next_index = int(start // self.width)

    def close_until(self, end: float) -> list[ClosedTerms]:
        """Judge, then learn, every bucket that ends at or before ``end`` (empty ones too)."""
        last = int(end // self.width)
        if self.next_index is None:
            self.next_index = last
        closed = []
        for index in range(self.next_index, last):
            bucket = self.open.pop(index, None) or _OpenTerms()
            self.dropped += bucket.dropped
            closed.append(self._judge(index, bucket))
            self.model.learn(
                index * self.width, bucket.posts, {t: c[0] for t, c in bucket.counts.items()}
            )
        self.next_index = max(self.next_index, last)
        if closed:
            latest = closed[-1]
            params = self.model.params
            self.emerging = tuple(
                s.as_term_surge()
                for s in latest.surges
                if latest.history_seconds >= self.warmup_seconds
                and s.count >= params.emerging_min_count
                and s.likelihood >= params.emerging_likelihood
            )[: params.emerging_top]
        return closed

    def _judge(self, index: int, bucket: _OpenTerms) -> ClosedTerms:
        model, n = self.model, bucket.posts
        tests = len(bucket.counts)
        surges = []
        for term, (count, negative, reach) in bucket.counts.items():
            if count < self.judge_min:
                continue
            expected = n * model.usual(term)
            tail = min(1.0, nbinom_sf(count, expected, 0.0) * tests)
            surges.append(
                Surge(
                    term=term,
                    count=count,
                    expected=expected,
                    likelihood=1.0 - tail,
                    surprise=Signal.surprise_of(tail),
                    share=count / n,
                    negative=negative,
                    reach=reach,
                    samples=self._samples(term, bucket.samples.get(term, ()), bucket.early),
                )
            )
        surges.sort(key=lambda s: (-s.surprise, -s.count, s.term))
        start = index * self.width
        return ClosedTerms(
            start=datetime.fromtimestamp(start, UTC),
            end=datetime.fromtimestamp(start + self.width, UTC),
            posts=n,
            terms=tests,
            surges=tuple(surges),
            history_seconds=model.history_seconds(start),
        )

    def _samples(
        self, term: str, kept: Iterable[_Sample], early: list[_Early]
    ) -> tuple[Mention, ...]:
        """The term's posts with the most reach, of those the bucket kept."""
        found = {entry[1]: entry for entry in kept}
        for reach, post_id, mention, terms in early:
            if term in terms:
                found.setdefault(post_id, (reach, post_id, mention))
        return tuple(entry[2] for entry in heapq.nlargest(self.samples, found.values()))


def _keep(heap: list[Any], entry: Any, size: int) -> None:
    """Put ``entry`` in a min-heap of at most ``size`` entries: the largest are kept."""
    if len(heap) < size:
        heapq.heappush(heap, entry)
    elif entry[:2] > heap[0][:2]:
        heapq.heapreplace(heap, entry)
