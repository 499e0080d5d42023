"""The records that flow through xwatch, in the order they are made.

    Mention --enrich--> Mention(sentiment, brands) --aggregate--> Bucket
    Bucket --detect--> Signal --rules--> Alert --alerting--> AlertEvent

Every record is a small frozen dataclass: stages never mutate what they are
handed, they return new records.  Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

SentimentLabel = Literal["negative", "neutral", "positive"]
Direction = Literal["up", "down"]


def normalise_lang(tag: str | None) -> str:
    """The primary language subtag, lower-cased ("ja-JP" -> "ja", "EN" -> "en"); "" for none:
    how a post's language tag, a rule's ``langs`` and the config's languages are read."""
    if tag is None:
        return ""
    return tag.strip().replace("_", "-").split("-", 1)[0].lower()


def utc(ts: datetime) -> datetime:
    """The same instant as an aware UTC datetime (naive values are taken as UTC)."""
    if ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Author:
    id: str
    handle: str = ""
    followers: int = 0
    verified: bool = False


@dataclass(frozen=True, slots=True)
class Sentiment:
    label: SentimentLabel
    score: float  # -1 (most negative) .. +1 (most positive)


@dataclass(frozen=True, slots=True)
class Mention:
    """One post about one or more brands."""

    id: str
    text: str
    created_at: datetime
    source: str
    author: Author
    lang: str | None = None
    url: str | None = None
    likes: int = 0
    reposts: int = 0
    replies: int = 0
    quotes: int = 0
    brands: tuple[str, ...] = ()  # set by the source (e.g. MQTT topic) or by enrichment
    sentiment: Sentiment | None = None  # set by enrichment

    def enriched(self, brands: tuple[str, ...], lang: str | None, sentiment: Sentiment) -> Mention:
        """The same post with its brands, language and sentiment (``dataclasses.replace``
        spelled out: it takes half the time, and every post goes through here)."""
        return Mention(
            id=self.id,
            text=self.text,
            created_at=self.created_at,
            source=self.source,
            author=self.author,
            lang=lang,
            url=self.url,
            likes=self.likes,
            reposts=self.reposts,
            replies=self.replies,
            quotes=self.quotes,
            brands=brands,
            sentiment=sentiment,
        )

    @property
    def reach(self) -> int:
        """How many people this post can plausibly reach: followers plus engagement."""
        return self.author.followers + self.reposts * 100 + self.likes + self.replies + self.quotes

    @property
    def is_negative(self) -> bool:
        return self.sentiment is not None and self.sentiment.label == "negative"


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """The newest post of a source that the daemon has ingested: where a source that can
    fetch the past (``sources.Resumable``) takes up again after a restart."""

    post_id: str
    created_at: datetime

    @classmethod
    def of(cls, mention: Mention) -> SourcePosition:
        return cls(mention.id, mention.created_at)

    def is_after(self, other: SourcePosition) -> bool:
        """Later in time, or at the same time with a larger id (X's ids grow with time)."""
        if self.created_at != other.created_at:
            return self.created_at > other.created_at
        return (len(self.post_id), self.post_id) > (len(other.post_id), other.post_id)


class Measure(StrEnum):
    """What a detector watches in a series."""

    VOLUME = "volume"  # mentions per bucket
    NEGATIVE_SHARE = "negative_share"  # negative mentions / mentions
    NEGATIVE_VOLUME = "negative_volume"  # negative mentions per bucket
    TERM_VOLUME = "term_volume"  # posts using one term (word or hashtag) per bucket
    MENTION = "mention"  # a single post matched a mention rule (no baseline: likelihood 1)


@dataclass(frozen=True, slots=True, order=True)
class SeriesKey:
    """A brand, or one rule's topic within a brand, at one time scale."""

    brand: str
    topic: str = ""  # "" for the whole brand, else the id of the rule that defines the topic
    scale_seconds: int = 300

    def __str__(self) -> str:
        name = f"{self.brand}/{self.topic}" if self.topic else self.brand
        return f"{name}@{format_scale(self.scale_seconds)}"


def format_count(expected: float) -> str:
    """An expected count as people read it: one decimal (``31.4``), or two significant
    digits below 1 (``0.05``: a sparse topic's bucket, which ``0.0`` would call silent)."""
    if expected >= 0.95 or expected <= 0.0:
        return f"{expected:.1f}"
    return f"{expected:.2g}"


def format_duration(seconds: int) -> str:
    """``50s``, ``1m50s``, ``5m``: a span under a few hours, to the second."""
    minutes, rest = divmod(seconds, 60)
    if not minutes:
        return f"{rest}s"
    return f"{minutes}m{rest:02d}s" if rest else f"{minutes}m"


def format_scale(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


@dataclass(frozen=True, slots=True)
class Bucket:
    """One closed interval [start, end) of a series."""

    series: SeriesKey
    start: datetime
    end: datetime
    count: int
    negative: int
    reach: int
    samples: tuple[Mention, ...] = ()  # the posts with the most reach, most first

    @property
    def negative_share(self) -> float:
        return self.negative / self.count if self.count else 0.0


@dataclass(frozen=True, slots=True)
class Run:
    """Evidence gathered over consecutive buckets (a detector's CUSUM): what a signal
    stands on when no single bucket is extreme enough to explain it. From ``start``
    (the first bucket's) through the signal's bucket: ``observed`` in total against
    ``expected`` (counts; for a negative share, the negative posts of ``posts``)."""

    start: datetime
    buckets: int
    observed: float
    expected: float
    posts: int = 0  # for a share: the posts the negatives are counted among


@dataclass(frozen=True, slots=True)
class Signal:
    """A detector's verdict on one bucket of one measure."""

    series: SeriesKey
    measure: Measure
    start: datetime
    end: datetime
    observed: float
    expected: float
    low: float  # expected band, lower edge
    high: float  # expected band, upper edge
    likelihood: float  # calibrated: P(a value less extreme than this one | normal), in [0, 1]
    direction: Direction
    warming_up: bool = False
    surprise: float = 0.0  # -log10 of the tail probability (1 - likelihood), kept precise
    run: Run | None = None  # the buckets whose evidence together made the likelihood

    @staticmethod
    def surprise_of(tail: float) -> float:
        return -math.log10(max(tail, 1e-300))

    @property
    def so_far(self) -> bool:
        """Whether it judged a bucket still open (its posts so far, up to ``end``): a rule
        on counts fires at the post that makes it hold, not when the bucket closes."""
        if self.measure is Measure.MENTION:
            return False
        return (self.end - self.start).total_seconds() < self.series.scale_seconds


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """One past bucket of a brand's series, for the chart in an alert: volume with its
    expected band, and the negative share against its usual level."""

    start: datetime
    count: int
    expected: float
    low: float
    high: float
    negative_share: float
    usual_share: float


@dataclass(frozen=True, slots=True)
class TermSurge:
    """A word or hashtag used far more than usual for a brand in one bucket."""

    term: str
    count: int
    expected: float
    likelihood: float


@dataclass(frozen=True, slots=True)
class PlaybookRef:
    id: str
    title: str
    url: str
    first_response_minutes: int = 15  # the playbook's target: escalate when unacknowledged


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(frozen=True, slots=True)
class Alert:
    """A rule firing: what fired, the numbers and the evidence.

    Three kinds of rule make alerts, all with the same shape:

    * a **signal** rule: ``signal`` is the detector's verdict on ``bucket``;
    * a **term** rule: ``term`` surged; ``signal`` (measure ``term_volume``) gives its
      count in ``bucket`` against its usual rate;
    * a **mention** rule: one post matched; ``signal`` (measure ``mention``) has no
      baseline (likelihood 1), and ``bucket`` holds just that post, at its time.
    """

    rule_id: str
    title: str
    severity: Severity
    series: SeriesKey
    signal: Signal  # the one that fired
    bucket: Bucket  # the evidence: counts and sample posts
    context: tuple[Signal, ...]  # every measure's signal for the same bucket
    playbook: PlaybookRef
    channels: tuple[str, ...]
    labels: tuple[tuple[str, str], ...] = ()  # the rule's labels, for routing and silences
    term: str = ""  # the surging term, for a term rule
    terms: tuple[TermSurge, ...] = ()  # the brand's emerging terms at the time
    history: tuple[HistoryPoint, ...] = ()  # the brand's recent buckets, oldest first

    def context_signal(self, measure: Measure) -> Signal | None:
        return next((s for s in self.context if s.measure == measure), None)

    @property
    def identity(self) -> str:
        """Re-firings of the same identity are one alert.

        A series rule: the rule, brand, topic and direction. A term rule: the rule,
        brand and term. A mention rule: the rule and brand (each new matching post
        updates the one alert).
        """
        if self.signal.measure is Measure.MENTION:
            return f"{self.rule_id}:{self.series.brand}:mention"
        if self.term:
            return f"{self.rule_id}:{self.series.brand}:term:{self.term}"
        return f"{self.rule_id}:{self.series.brand}/{self.series.topic}:{self.signal.direction}"

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


class EventKind(StrEnum):
    FIRING = "firing"  # a new alert identity fired
    UPDATED = "updated"  # it fired again, stronger than before (a new peak, a new post)
    RESOLVED = "resolved"  # it stayed calm for the resolve-after time


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """What notifiers are told about."""

    kind: EventKind
    alert: Alert
    at: datetime  # event time of the change
    since: datetime | None = None  # RESOLVED: when the alert first fired
    # RESOLVED: the series' normal now over its normal before the alert, when the alert
    # ended because its change became the normal (its detector adopted it since); else None
    settled: float | None = None
    # RESOLVED: why, when it did not end by staying calm (its rule was removed by a reload:
    # nothing judges its series any more, so "back to normal" would not be known)
    why: str = ""
