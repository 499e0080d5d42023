"""The pure pipeline: mentions in, alert events out. No I/O (but for two warnings logged:
a post with a wrong date refused, a hole in a stream's data).

    dedup      drop a post already ingested (two sources, a redelivery)
    enrich     which brands a post is about; the sentiment of those about a brand
    aggregate  into event-time buckets per series (brand, or a rule's topic in a brand);
               the terms of brands that a new-term rule watches; the posts that a
               mention rule fires on
    detect     each closed bucket: volume, negative share, negative volume; new terms
               (a topic's empty bucket that no rule can fire on is only learned)
    rules      which rules those signals make fire
    lifecycle  firing → (re-firing updates) → resolved

The daemon, ``xwatch backtest`` and the tests all drive this same object: with
``ingest`` (a batch of posts), ``tick`` (live wall time passing) and ``flush``
(the end of a finite stream). ``checkpoint`` and ``restore`` carry the detectors'
state across a restart (the daemon keeps it in ``xwatch.store``).

Everything happens in event-time order, so that the alerts do not depend on how the
posts were batched: closed buckets go by their end; a mention rule's alert goes in
before the buckets that its post let close (as if each post were ingested alone).
At one instant, the alerts on signals go first, the new terms after them.

Besides its results, the pipeline reports to the metrics object it is given: counts,
the time each stage takes (``timer``, ``time.perf_counter`` unless a test injects
another) and the sentiment languages.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter

from xwatch.alerting.lifecycle import ActiveAlert, AlertBook
from xwatch.clock import EventClock
from xwatch.config import Config
from xwatch.dedup import Deduplicator
from xwatch.detect import Detector, Settling
from xwatch.detect.buckets import Aggregator
from xwatch.detect.calendar import UTC_ZONE
from xwatch.detect.history import History
from xwatch.detect.share import NegativeShareDetector
from xwatch.detect.state import (
    Checkpoint,
    CheckpointError,
    restore_series,
    restore_term_model,
)
from xwatch.detect.terms import ClosedTerms, TermParams, TermTracker, brand_stop_terms
from xwatch.detect.terms import terms_of as terms_in
from xwatch.detect.volume import CountDetector
from xwatch.metrics import OTHER_LANG, STAGES, Metrics
from xwatch.model import (
    Alert,
    AlertEvent,
    Bucket,
    EventKind,
    Measure,
    Mention,
    SeriesKey,
    Signal,
    TermSurge,
)
from xwatch.playbooks import PlaybookIndex
from xwatch.rules import (
    BrandRules,
    CompiledMatch,
    Kind,
    MentionWhen,
    NewTermWhen,
    OwnAccounts,
    Rule,
    RuleSet,
    TermIndex,
    normalize,
    term_pattern,
    term_scale,
    words_of,
)
from xwatch.sentiment.router import LanguageRouter
from xwatch.sources import MAX_FUTURE_SKEW

CHECKPOINT_CHUNK = 100  # series encoded at a time, between which the daemon lets posts in

MATCH_CHARS = 5_000
"""How much of a post brand matching, the rules and the term trackers read (the sentiment
scorers read 2,000 characters): posts on X hold 280 characters, 25,000 at most. Folding
(NFKC) can make text 18 times longer ("\ufdfa" is one character, 18 once folded), and
a payload of 256 KiB of it took 0.3 s to fold: a stream of those would stall the daemon."""

MAX_GAP = timedelta(days=1)
"""The longest the posts' event time may jump ahead as a stream (a replay, a backtest)
without a gap in the data being assumed. A day without one post about any brand is a
hole in the data, not a day of silence: past that, the series go on from the post after
the hole (as after a restart) instead of judging every empty bucket of it (a minute's
bucket per series for each minute of it: a post dated years ahead would take hours and
all the memory). A post that jumps so far waits for the next one: if that one is as
far ahead, the hole is real; if not, the post was a stray with a wrong date, and is
refused (``bad_timestamp``). Live posts are dated within minutes of the wall clock,
which ticks the event clock: they jump a day only when the daemon itself was away (a VM
resumed after days), and then the hole is the time it was away."""

log = logging.getLogger("xwatch.pipeline")


def default_detectors(scale_seconds: int, timezone: str = UTC_ZONE) -> list[Detector]:
    """The detectors every series gets; ``timezone``: its brand's (``Brand.timezone``)."""
    return [
        CountDetector(Measure.VOLUME, scale_seconds, timezone=timezone),
        NegativeShareDetector(scale_seconds, timezone=timezone),
        CountDetector(Measure.NEGATIVE_VOLUME, scale_seconds, timezone=timezone),
    ]


@dataclass(frozen=True, slots=True)
class _BrandPlan:
    """What the hot path does with one brand's posts, worked out when the rules change."""

    rules: BrandRules
    own: OwnAccounts
    judged: dict[str, tuple[int, ...]]  # topic -> the scales a rule judges it at
    authors: dict[str, tuple[int, ...]]  # series ("" = the brand) -> scales counting authors
    enough_authors: dict[str, int]  # series -> the largest ``min_authors`` of its rules
    fire_when_empty: frozenset[str]  # the topics with a rule that may fire on an empty bucket
    streaks: frozenset[str]  # the topics with a rule that must hold for a while (for_seconds)
    mention: tuple[tuple[Rule, MentionWhen, CompiledMatch | None], ...]
    new_term: tuple[tuple[Rule, NewTermWhen, int], ...]  # with the scale each counts at
    trackers: tuple[TermTracker, ...]
    # series ("" = the brand) -> its rules that may fire on a bucket still open, and the
    # fewest posts a bucket needs before one of them looks at it
    early: dict[str, tuple[tuple[Rule, ...], int]]


EARLY_SIGNALS = frozenset({"volume_up", "negative_volume"})
"""The signals a bucket still open can be judged on: their verdict only grows with the
posts still to come (counts, upwards), so one that holds now holds when it closes."""
EARLY_RECHECK = 1.1  # a bucket judged early and found calm is judged again at 10 % more
NEVER = 2**62  # more posts than a bucket ever has


def fires_early(rule: Rule) -> bool:
    """A signal rule whose verdict on a bucket still open stands when it closes: a count
    upwards, without a streak to wait for (``for_seconds``)."""
    when = rule.when
    return when.signal in EARLY_SIGNALS and not when.for_seconds


def _posts_needed(rule: Rule) -> int:
    """The fewest posts a bucket needs before a signal rule can hold on it (at least 1)."""
    return max(rule.when.min_count, rule.when.min_negative, 1)


@dataclass(slots=True)
class _Tally:
    """What closing buckets did since the metrics were last told: each series' newest
    bucket (gauges show the latest) and how many closed (a backtest closes several buckets
    of a series at a time), the detectors' evaluations, and the time they took."""

    newest: dict[SeriesKey, tuple[Bucket, list[Signal]]] = field(default_factory=dict)
    closed: dict[SeriesKey, int] = field(default_factory=dict)
    evaluations: dict[str, int] = field(default_factory=dict)
    detecting: float = 0.0
    ruling: float = 0.0

    def closing(self, bucket: Bucket, signals: list[Signal]) -> None:
        self.newest[bucket.series] = (bucket, signals)
        self.closed[bucket.series] = self.closed.get(bucket.series, 0) + 1

    def evaluated(self, measure: str) -> None:
        self.evaluations[measure] = self.evaluations.get(measure, 0) + 1


@dataclass(slots=True)
class _Early:
    """A bucket still open, as its early verdicts stand (kept on the open bucket): the
    detectors that judge it, the count above which it is worth judging, the count each
    rule last judged it at, the rules that have fired."""

    detectors: Sequence[Detector]  # the series' (none: nothing learned to judge against)
    bars: dict[Measure, float | None] = field(default_factory=dict)
    judged_at: dict[str, int] = field(default_factory=dict)
    fired: set[str] = field(default_factory=set)
    quiet_until: int = 0  # no rule looks at it again before it has this many posts

    def next_look(self, rule: Rule) -> int:
        """The posts the bucket needs before ``rule`` looks at it again (a count of its
        posts: negatives never outnumber them)."""
        if rule.id in self.fired:
            return NEVER
        last = self.judged_at.get(rule.id)
        if last is None:
            return _posts_needed(rule)
        return max(last + 1, math.ceil(last * EARLY_RECHECK))


class _Authors:
    """The different authors in one series' open buckets, per scale (for ``min_authors``).

    A bucket stops collecting authors once it has ``enough`` (the largest ``min_authors``
    of the series' rules): past that, one more author changes no rule's verdict, and a
    busy bucket would otherwise hold every author id of its posts until it closes.
    """

    __slots__ = ("enough", "next_index", "open")

    def __init__(self, enough: int) -> None:
        self.enough = enough
        self.open: dict[tuple[int, int], set[str]] = {}  # (scale, bucket index) -> authors
        self.next_index: dict[int, int] = {}  # scale -> the next bucket to close

    def add(self, author: str, timestamp: float, scales: tuple[int, ...], watermark: float) -> None:
        for scale in scales:
            index = int(timestamp // scale)
            if index < self.next_index.get(scale, index) or (index + 1) * scale <= watermark:
                continue  # late: that bucket is closed (the aggregator does not add it either)
            found = self.open.get((scale, index))
            if found is None:
                self.open[(scale, index)] = {author}
            elif len(found) < self.enough:
                found.add(author)

    def close(self, scale: int, index: int) -> int:
        """How many different authors bucket ``index`` had (at most ``enough``); it is
        closed from now on."""
        self.next_index[scale] = index + 1
        return len(self.open.pop((scale, index), ()))

    def so_far(self, scale: int, index: int) -> int:
        """How many different authors bucket ``index``, still open, has had so far."""
        return len(self.open.get((scale, index), ()))

    def keep_scales(self, scales: tuple[int, ...]) -> None:
        """Forget the open buckets at other scales (no rule counts authors there any
        more: nothing would close them)."""
        self.open = {key: found for key, found in self.open.items() if key[0] in scales}
        self.next_index = {s: i for s, i in self.next_index.items() if s in scales}


@dataclass(frozen=True, slots=True)
class _Pending:
    """A firing that waits for its place in event-time order: a mention rule's post, or a
    signal rule's early verdict on a bucket still open (at the post that made it hold)."""

    rule: Rule
    signal: Signal
    bucket: Bucket  # the evidence: the post, or the bucket so far
    context: tuple[Signal, ...]
    after: datetime | None  # the watermark before the post: it goes before later buckets


_bucket_end = attrgetter("end")


def _bucket_start(index: int, scale: int) -> datetime:
    """The start of bucket ``index`` at ``scale`` seconds."""
    return datetime.fromtimestamp(index * scale, UTC)


def _days(span: timedelta) -> str:
    return f"{span.total_seconds() / 86400:,.1f} days"


def _band_top(detectors: Sequence[Detector], measure: Measure, start: datetime) -> float | None:
    """The top of the expected band of the count detector of ``measure`` (None: none, or
    it warms up)."""
    for detector in detectors:
        if detector.measure is measure and isinstance(detector, CountDetector):
            return detector.band_top(start)
    return None


RULE_GONE = "its rule was removed, or no longer watches this series (rules reloaded)"
"""Why an alert whose rule is gone ends at the reload (``AlertEvent.why``)."""


def watches(rules: RuleSet, rule_id: str, series: SeriesKey, kind: Kind) -> bool:
    """Whether ``rules`` still has rule ``rule_id``, of ``kind`` (signal, mention or
    new_term), watching ``series``' brand and topic: whether its alerts there can fire
    again. Its scale does not matter: an alert is one across scales (``Alert.identity``)."""
    if kind == "mention":
        found: Iterable[Rule] = rules.for_brand(series.brand).mention
    elif kind == "new_term":
        found = rules.for_brand(series.brand).new_term
    else:
        found = rules.signal_rules(series.brand, series.topic)
    return any(rule.id == rule_id for rule in found)


def _kind_of(alert: Alert) -> Kind:
    """The kind of rule that fired ``alert``."""
    if alert.signal.measure is Measure.MENTION:
        return "mention"
    return "new_term" if alert.term else "signal"


def _judges(rule: Rule, series: SeriesKey) -> bool:
    """Whether signal rule ``rule`` judges ``series``' buckets at its scale."""
    scales = rule.when.scales_seconds
    return not scales or series.scale_seconds in scales


class Pipeline:
    def __init__(
        self,
        config: Config,
        rules: RuleSet,
        playbooks: PlaybookIndex,
        scorer: LanguageRouter,
        metrics: Metrics,
        *,
        timer: Callable[[], float] = time.perf_counter,
        shard: frozenset[str] | None = None,
    ) -> None:
        """``shard``: judge only these brands (of the config's). A backtest splits the brands
        across processes that each read the whole stream: a shard still finds every brand
        in the posts, and the posts about the others move its clock as they would move a
        whole pipeline's, so that each brand's alerts are exactly the whole pipeline's."""
        self.config = config
        self.rules = rules
        self.playbooks = playbooks
        self.scorer = scorer
        self.metrics = metrics
        self.clock = EventClock(timedelta(seconds=config.detect.allowed_lateness_seconds))
        self.aggregator = Aggregator(
            config.detect.scales_seconds,
            config.detect.samples_per_bucket,
            # a live post may be dated this far ahead (a fast clock): if the first one is,
            # the series start as early as the posts that follow it
            rewind_seconds=MAX_FUTURE_SKEW.total_seconds(),
        )
        self.book = AlertBook(timedelta(seconds=config.alerting.resolve_after_seconds))
        self.dedup = Deduplicator(config.dedup_capacity)
        self.detectors: dict[SeriesKey, list[Detector]] = {}
        self.history = History()  # each series' recent buckets, for the alerts' charts
        self.terms: dict[tuple[str, int], TermTracker] = {}  # (brand, scale) -> its terms
        self.streaks: dict[tuple[str, SeriesKey], datetime] = {}  # for_seconds: since when
        self.brand_patterns: dict[str, re.Pattern[str]] = {}
        self._stop_terms: dict[str, frozenset[str]] = {}
        self.brands = tuple(b for b in config.brands if shard is None or b.id in shard)
        self._zones = {brand.id: brand.timezone for brand in config.brands}
        for brand in config.brands:
            pattern = term_pattern(brand.terms)
            assert pattern is not None  # validated: at least one non-blank term
            self.brand_patterns[brand.id] = pattern
        for brand in self.brands:
            self._stop_terms[brand.id] = brand_stop_terms(
                [normalize(t) for t in (*brand.terms, *brand.accounts)]
            )
            self.aggregator.declare(brand.id)
        # a shard: the brands of the config that other shards judge
        self._others = frozenset(self.brand_patterns.keys() - {b.id for b in self.brands})
        # which brands a post may be about, from its words: one look-up per word, not one
        # search per brand (the patterns confirm)
        self._brand_index = TermIndex.of({brand.id: brand.terms for brand in config.brands})
        self._brand_rank = {brand.id: rank for rank, brand in enumerate(config.brands)}
        self._finest = min(config.detect.scales_seconds)
        self._plans: dict[str, _BrandPlan] = {}
        self._authors: dict[tuple[str, str], _Authors] = {}  # (brand, topic) -> its authors
        self._pending: deque[_Pending] = deque()
        self._closed_within: list[AlertEvent] = []  # what closing within a batch gave
        self._tally = _Tally()  # what closing buckets did, for the metrics (``_report``)
        self._closing_time = 0.0  # ... and how long it took (not the aggregation's)
        self._folds: dict[str, tuple[str, set[str]]] = {}  # text -> folded, words (a batch's)
        # a post that jumped more than MAX_GAP ahead, waiting for the next (``_hold_jumps``)
        self._held: tuple[Mention, tuple[str, ...]] | None = None
        self._use(rules)
        self._timer = timer
        self._stage = {stage: metrics.stage_seconds.labels(stage) for stage in STAGES}
        self._langs = scorer.languages  # the languages with a scorer of their own
        metrics.declare_pipeline(
            (brand.id for brand in self.brands),
            ((rule.id, rule.severity.value) for rule in rules.rules),
            [*self._langs, OTHER_LANG],
        )
        self._processed = {b.id: metrics.processed.labels(b.id) for b in self.brands}
        self._own_posts = {b.id: metrics.own_posts.labels(b.id) for b in self.brands}
        # brand -> posts of this batch, counted at its end: its mentions, its own posts
        self._counted: dict[str, int] = {}
        self._counted_own: dict[str, int] = {}
        self._replaying = False  # ``replay``: a post late at a scale was counted there before
        self.hold_broken = False  # buckets closed within ``closes_held`` (``_skip_gap``)

    def reload_rules(self, rules: RuleSet, playbooks: PlaybookIndex) -> list[AlertEvent]:
        """Judge with new rules from the next bucket on; a new topic rule gets its series,
        a new new-term rule its term tracker; what only the rules that are gone needed
        is forgotten (``_use``).

        Returns the alerts that end: those whose rule is gone (removed, or no longer
        watching their brand or topic) resolve now, saying so (``RULE_GONE``). They would
        never fire again, and the calm period would have ended them hours later as "back
        to normal", which nothing judged. The firings still waiting for their place in
        event time (``_Pending``) of such rules are dropped with them.
        """
        self.rules = rules
        self.playbooks = playbooks
        self._use(rules)
        self.metrics.declare_rules((rule.id, rule.severity.value) for rule in rules.rules)
        self._pending = deque(
            item
            for item in self._pending
            if watches(rules, item.rule.id, item.signal.series, item.rule.kind)
        )
        gone = [
            identity
            for identity, active in self.book.active.items()
            if not watches(rules, active.alert.rule_id, active.alert.series, _kind_of(active.alert))
        ]
        events = self.book.end(gone, self.clock.watermark, RULE_GONE)
        if events:
            self._count_events(events)
            self._active_alert_metrics()
        return events

    def use_scorer(self, scorer: LanguageRouter) -> None:
        """Score with ``scorer`` (sentiment models read again) from the next batch on; a
        language it scores on its own keeps its metric label, as any does."""
        self.scorer = scorer
        self._langs = scorer.languages

    def _use(self, rules: RuleSet) -> None:
        """Plan each brand's work for ``rules``: declare the topic series, keep or start the
        term trackers, and forget what rules that are gone needed (``_forget``)."""
        scales = self.config.detect.scales_seconds
        trackers: dict[tuple[str, int], TermTracker] = {}
        plans = {}
        wanted = {SeriesKey(brand.id, "", scale) for brand in self.brands for scale in scales}
        for brand in self.brands:
            found = rules.for_brand(brand.id)
            for topic in found.topics:  # only at the scales its rules judge
                judged = rules.judged_scales(brand.id, topic, scales)
                self.aggregator.declare(brand.id, topic, judged)
                wanted.update(SeriesKey(brand.id, topic, scale) for scale in judged)
            new_term = []
            for rule in found.new_term:
                when = rule.when.new_term
                assert when is not None  # a new-term rule
                scale = term_scale(when, scales)
                new_term.append((rule, when, scale))
                key = (brand.id, scale)
                tracker = trackers.get(key) or self.terms.get(key)
                if tracker is None:
                    tracker = TermTracker(
                        scale, self._stop_terms[brand.id], self.config.detect.samples_per_bucket
                    )
                mine = [w for _, w, s in new_term if s == scale]
                tracker.judge_min = min(
                    TermParams().emerging_min_count, *(w.min_count for w in mine)
                )
                tracker.warmup_seconds = min(w.warmup_seconds for w in mine)
                tracker.sample_min = min(w.min_count for w in mine)
                tracker.sample_share = min(w.min_share for w in mine)
                trackers[key] = tracker
            plans[brand.id] = _BrandPlan(
                rules=found,
                own=rules.own(brand.id),
                judged={t: rules.judged_scales(brand.id, t, scales) for t in found.topics},
                authors={
                    t: rules.judged_scales(brand.id, t, scales) if t else scales
                    for t in ("", *found.topics)
                    if rules.needs_authors(brand.id, t)
                },
                fire_when_empty=frozenset(
                    t
                    for t in found.topics
                    if any(r.when.may_hold_when_empty for r in rules.signal_rules(brand.id, t))
                ),
                streaks=frozenset(
                    t
                    for t in found.topics
                    if any(r.when.for_seconds for r in rules.signal_rules(brand.id, t))
                ),
                enough_authors={
                    t: max(r.when.min_authors for r in rules.signal_rules(brand.id, t))
                    for t in ("", *found.topics)
                    if rules.needs_authors(brand.id, t)
                },
                mention=tuple(
                    (r, r.when.mention, rules.matchers.get(r.id))
                    for r in found.mention
                    if r.when.mention is not None
                ),
                new_term=tuple(new_term),
                trackers=tuple(t for (b, _), t in trackers.items() if b == brand.id),
                early={
                    t: (early, min(_posts_needed(r) for r in early))
                    for t in ("", *found.topics)
                    if (early := tuple(filter(fires_early, rules.signal_rules(brand.id, t))))
                },
            )
        self.terms = trackers
        self._plans = plans
        self._forget(rules, wanted)

    def _forget(self, rules: RuleSet, wanted: set[SeriesKey]) -> None:
        """Let go of every series no rule of ``rules`` needs (a topic rule removed, or
        a scale it no longer judges), and of what it kept: its open buckets, detectors,
        streaks, authors and metric children. Kept, each closed a bucket per round and
        was checkpointed for as long as the daemon ran, its detectors never learning
        again; a rule restored later would have resumed them across the time they had
        not watched, with the rule's ``match`` perhaps changed meanwhile.

        So a topic added back starts fresh, as a new one does (a day's warm-up, no
        alert before): the next checkpoint drops the state from the store too, as the
        store's checkpoint is a snapshot of the series watched, and a restart after the
        rule was removed from the files has always started it fresh (``restore``)."""
        gone = (self.aggregator.series.keys() | self.detectors.keys()) - wanted
        self.aggregator.drop(gone)
        for key in gone:
            self.detectors.pop(key, None)
        self.metrics.forget_series(gone)
        self.streaks = {
            (rule_id, series): since
            for (rule_id, series), since in self.streaks.items()
            if series in wanted
            and any(
                rule.id == rule_id and _judges(rule, series)
                for rule in rules.signal_rules(series.brand, series.topic)
            )
        }
        plans = self._plans
        self._authors = {
            (brand, topic): buckets
            for (brand, topic), buckets in self._authors.items()
            if brand in plans and topic in plans[brand].authors
        }
        for (brand_id, topic), buckets in self._authors.items():
            # with a higher threshold, the buckets already open may count fewer authors
            # than they had (those past the old one were not kept)
            buckets.enough = plans[brand_id].enough_authors[topic]
            buckets.keep_scales(plans[brand_id].authors[topic])

    # -- the three ways in ---------------------------------------------------------

    def ingest(self, mentions: Sequence[Mention]) -> list[AlertEvent]:
        """Enrich and count a batch of posts; judge every bucket they let close.

        A bucket still open that is judged at a post (``_judge_early``) is judged after the
        buckets the watermark has passed have closed, as it would be had the batch ended
        at the post before: against the same past, however the posts were batched."""
        fresh = []
        for mention in mentions:
            if self.dedup.first_time(mention.id):
                fresh.append(mention)
            else:
                self.metrics.duplicates.labels(mention.source).inc()
        started = self._timer()
        found = self._hold_jumps([(m, m.brands or self._brands_of(m.text)) for m in fresh])
        return self._ingest_found(found, started)

    def replay(self, mentions: Sequence[Mention]) -> list[AlertEvent]:
        """``ingest`` posts taken again from the journal after a restart (``continue_from``
        first): a post before a scale's first open bucket is not counted there, as late
        posts are, but it is not late either (the checkpoint's detectors learned it)."""
        self._replaying = True
        try:
            return self.ingest(mentions)
        finally:
            self._replaying = False

    def _ingest_found(
        self, found: Sequence[tuple[Mention, tuple[str, ...]]], started: float
    ) -> list[AlertEvent]:
        """``ingest`` for posts deduplicated, with their brands."""
        # sentiment only for the posts about a brand the pipeline watches: the others
        # are counted as unmatched and go no further
        about = [(m, brands) for m, brands in found if not self._plans.keys().isdisjoint(brands)]
        if len(about) < len(found):
            self.metrics.unmatched.inc(len(found) - len(about))
        enriched = self._score(about)
        enriched_at = self._timer()
        self._closed_within = []
        if self._others:
            self._aggregate_shard(found, enriched)
        else:
            for mention in enriched:
                self._aggregate(mention)
        self._folds.clear()
        for brand, count in self._counted.items():
            self._processed[brand].inc(count)
        for brand, count in self._counted_own.items():
            self._own_posts[brand].inc(count)
        self._counted.clear()
        self._counted_own.clear()
        if found:
            self._stage["enrich"].observe(enriched_at - started)
            self._stage["aggregate"].observe(self._timer() - enriched_at - self._closing_time)
        self._closing_time = 0.0
        earlier, self._closed_within = self._closed_within, []
        return self._close(earlier)

    def _close_if_due(self) -> None:
        """Close the buckets the posts so far let close, if any (``_judge_early``: before
        a bucket still open is judged); the metrics are told at the end of the batch."""
        watermark = self.clock.watermark
        if watermark is not None and self.aggregator.due_by(watermark):
            started = self._timer()
            self._closed_within.extend(self._close_due(watermark))
            self._closing_time += self._timer() - started

    def tick(self, now: datetime) -> list[AlertEvent]:
        """Live mode: wall time passed; close the buckets it lets close, even empty ones.
        Not across a hole (wall time more than ``MAX_GAP`` past the newest post: a restart
        that goes on from a checkpoint days old, ``continue_from``): the next posts say
        whether it is one (``_skip_gap``) or a backlog to be counted."""
        newest = self.clock.newest
        if newest is None or now - newest <= MAX_GAP:
            self.clock.tick(now)
        return self._close()

    def flush(self) -> list[AlertEvent]:
        """End of a finite stream: close every bucket that has data. A post that jumped
        ahead (``_hold_jumps``) has no next post to refute it: it goes in."""
        return [event for events in self.flush_rounds() for event in events]

    def flush_rounds(self) -> Iterator[list[AlertEvent]]:
        """``flush``, one step of the finest scale at a time: the events of each step, as
        event time would pass in a live stream (the same closes, the same events). The
        daemon lets its loop turn between steps: closing every bucket of 500 brands at
        once held it for 5 s."""
        if self._held is not None:
            held, self._held = self._held, None
            yield self._ingest_found([held], self._timer())
        newest = self.clock.newest
        if newest is None:
            return
        end = self._past_every_bucket(newest)
        step = timedelta(seconds=min(self.config.detect.scales_seconds))
        at = newest + step
        while at < end:
            self.clock.observe(at)
            yield self._close()
            at += step
        self.clock.observe(end)
        yield self._close()

    def _past_every_bucket(self, newest: datetime) -> datetime:
        """An event time at which every bucket holding a post up to ``newest`` has closed."""
        largest = max(self.config.detect.scales_seconds)
        return newest + self.clock.allowed_lateness + timedelta(seconds=largest)

    # -- holes in the data ---------------------------------------------------------

    def _hold_jumps(
        self, found: list[tuple[Mention, tuple[str, ...]]]
    ) -> list[tuple[Mention, tuple[str, ...]]]:
        """The posts, less one that jumps more than ``MAX_GAP`` ahead of the posts so far:
        it waits for the next post about a brand (in this batch or the next). Both go on
        if that one is as far ahead (a hole in the data: ``_skip_gap``); if not, the
        jumping post was a stray, and is refused as a ``bad_timestamp``, counted and
        logged. Only posts about a brand of the config move the clock, so only they count
        (the same in every shard)."""
        newest = self.clock.newest
        kept: list[tuple[Mention, tuple[str, ...]]] = []
        for item in found:
            mention, brands = item
            if self.brand_patterns.keys().isdisjoint(brands):
                kept.append(item)  # about no brand: it moves nothing
                continue
            at = mention.created_at
            if self._held is not None:
                held, self._held = self._held, None
                if newest is not None and at - newest <= MAX_GAP:
                    self._refuse_stray(held[0], newest)
                else:
                    kept.append(held)
                    newest = held[0].created_at
            if newest is not None and at - newest > MAX_GAP:
                self._held = item
                continue
            kept.append(item)
            newest = at if newest is None or at > newest else newest
        return kept

    def _refuse_stray(self, mention: Mention, newest: datetime) -> None:
        self.metrics.rejected.labels(mention.source, "bad_timestamp").inc()
        log.warning(
            "post %s is dated %s, %s after the posts before it and after it: refused as a "
            "stray (a wrong date)",
            mention.id,
            f"{mention.created_at:%Y-%m-%d %H:%M:%S}",
            _days(mention.created_at - newest),
            extra={"event": "rejected", "source": mention.source, "reason": "bad_timestamp"},
        )

    def _skip_gap(self, at: datetime) -> None:
        """The posts jump from the clock's newest to ``at``, more than ``MAX_GAP``: close
        every bucket holding a post, then let every series (and term tracker) go on from
        ``at``'s bucket, as after a restart, rather than judge each empty bucket of the
        hole. A streak (``for_seconds``) does not hold across a hole."""
        newest = self.clock.newest
        assert newest is not None
        self.clock.observe(self._past_every_bucket(newest))
        watermark = self.clock.watermark
        assert watermark is not None
        started = self._timer()
        held, self.aggregator.held = self.aggregator.held, False  # they must close now
        self._closed_within.extend(self._close_due(watermark))
        if held:
            self.aggregator.held = True
            self.hold_broken = True  # the checkpoint being taken is of two instants
        self._closing_time += self._timer() - started
        hole = (at - newest).total_seconds()
        for detectors in self.detectors.values():
            for detector in detectors:
                detector.skip_hole(hole)
        self.aggregator.resume(at.timestamp())
        for tracker in self.terms.values():
            tracker.resume(at.timestamp())
        self.streaks.clear()
        self.metrics.event_time_gaps.inc()
        log.warning(
            "the posts jump from %s to %s, a hole of %s in the data: the series go on from "
            "there, without judging its empty buckets",
            f"{newest:%Y-%m-%d %H:%M:%S}",
            f"{at:%Y-%m-%d %H:%M:%S}",
            _days(at - newest),
            extra={"event": "event_time_gap"},
        )

    # -- state across restarts -----------------------------------------------------

    def closed_through(self) -> dict[int, float]:
        """Each scale's first bucket the detectors have not learned (its start, epoch
        seconds), for ``continue_from`` after a restart; saved with a checkpoint taken in
        ``closes_held``. Empty before the first post."""
        return self.aggregator.closed_through()

    @contextmanager
    def closes_held(self) -> Iterator[None]:
        """No bucket closes, no detector learns, within: a checkpoint taken a chunk of series
        at a time, posts coming in between, is then of one instant (``closed_through``).
        Posts are still counted; what is due closes at the first batch or tick after. A
        hole in the data (``_skip_gap``) closes what holds a post all the same, and sets
        ``hold_broken``: the states taken are then not of one instant."""
        self.aggregator.held = True
        self.hold_broken = False
        try:
            yield
        finally:
            self.aggregator.held = False

    def continue_from(self, closed: dict[int, float]) -> None:
        """After ``restore``: each series (and term tracker) goes on from the first bucket
        its checkpoint had not learned (``closed_through`` then), so that the posts of the
        buckets that were open, read again from the journal (``replay``), are counted
        there once, and the posts before are not counted twice."""
        if not closed:
            return
        self.aggregator.continue_from(closed)
        earliest = min(closed.values())
        for (_brand, scale), tracker in self.terms.items():
            tracker.continue_from(closed.get(scale, earliest))
        # event time as of the checkpoint, at the least (its watermark had reached the
        # latest mark; this closes nothing): a post days later is a hole (``_hold_jumps``)
        latest = datetime.fromtimestamp(max(closed.values()), UTC)
        self.clock.observe(latest + self.clock.allowed_lateness)

    def checkpoint(self) -> list[Checkpoint]:
        """Every series' detectors as plain data: a snapshot that later learning leaves alone.

        The term trackers' models too (measure ``term_volume`` on the brand's series)."""
        return [item for chunk in self.checkpoint_chunks() for item in chunk]

    def checkpoint_chunks(self, size: int = CHECKPOINT_CHUNK) -> Iterator[list[Checkpoint]]:
        """``checkpoint``, ``size`` series at a time, for a caller that lets posts in
        between chunks (the daemon: encoding 10,000 series takes a while). Each series
        is whole (its detectors have learned the same buckets); a chunk is as of when it
        is taken, and a series that appears after the first one waits for the next
        checkpoint."""
        keys = sorted(self.detectors)
        for first in range(0, len(keys), size):
            yield [
                Checkpoint.of(series, detector)
                for series in keys[first : first + size]
                # (a reload between two chunks may have dropped it: ``_forget``)
                for detector in self.detectors.get(series, ())
            ]
        trackers = sorted(self.terms.items())  # the new-term models, as many at a time
        for first in range(0, len(trackers), size):
            yield [
                Checkpoint.of(SeriesKey(brand, "", scale), tracker.model)
                for (brand, scale), tracker in trackers[first : first + size]
            ]

    def restore(
        self,
        items: Iterable[Checkpoint],
        on_refused: Callable[[SeriesKey, CheckpointError], None] | None = None,
    ) -> tuple[int, int]:
        """Put checkpointed detectors in place of fresh ones; return (restored, refused) series.

        A series is restored whole or not at all: when one of its checkpoints is
        refused (another state version, an unknown class, other fields), or the
        series is not in the config any more, ``on_refused`` is told why and the
        series starts fresh.

        An iterator of ``items`` is read as it comes, each series' let go once restored
        (a store's ``iter_checkpoints``: one page of states in memory, not all of them),
        so its checkpoints must come in series order, as the store gives them; a list
        may be in any order.
        """
        if isinstance(items, Sequence):
            items = sorted(items, key=lambda item: item.series)
        restored = refused = 0
        detectors = (item for item in items if not self._restore_term(item, on_refused))
        for series, group in itertools.groupby(detectors, key=lambda item: item.series):
            checkpoints = list(group)
            try:
                if series not in self.aggregator.series:
                    raise CheckpointError(
                        "the series is not in the config any more (brand, rule topic or scale)"
                    )
                fresh = functools.partial(
                    default_detectors, series.scale_seconds, self._zones[series.brand]
                )
                self.detectors[series] = restore_series(checkpoints, fresh)
                restored += 1
            except CheckpointError as exc:
                refused += 1
                if on_refused is not None:
                    on_refused(series, exc)
        return restored, refused

    def _restore_term(
        self, item: Checkpoint, on_refused: Callable[[SeriesKey, CheckpointError], None] | None
    ) -> bool:
        """Restore a term tracker's model if ``item`` is one (True); a tracker no rule needs
        any more is not restored."""
        if item.measure != Measure.TERM_VOLUME.value:
            return False
        tracker = self.terms.get((item.series.brand, item.series.scale_seconds))
        try:
            if tracker is not None:
                tracker.model = restore_term_model(item, tracker.width)
        except CheckpointError as exc:
            if on_refused is not None:
                on_refused(item.series, exc)
        return True

    def warm_start(self, brand: str, counts: Sequence[tuple[datetime, int]]) -> list[SeriesKey]:
        """Teach the brand's volume detectors its recent past before its first post.

        ``counts``: the brand's posts per minute (each minute's start, oldest first, every
        minute of the span: X's recent counts). At each scale that is a whole number of
        minutes, the brand's own series learns them as its buckets (the whole buckets
        only), so that its volume is judged from the first live bucket on: no day of
        warm-up, and the rhythm of the week already seen. Only series with nothing
        learned yet (no checkpoint restored, no post seen) are taught: learning is in
        time order. The negative volume and share need the posts' sentiment, which counts
        do not carry: they warm up on the live posts as usual. Returns the series taught.
        """
        if brand not in self._plans or not counts:
            return []
        minutes = {int(start.timestamp()) // 60: count for start, count in counts}
        first, last = min(minutes), max(minutes)
        taught = []
        for scale in self.config.detect.scales_seconds:
            series = SeriesKey(brand, "", scale)
            if scale % 60 or series in self.detectors or series not in self.aggregator.series:
                continue
            per_bucket = scale // 60
            start_bucket = -(-first // per_bucket)  # the first whole bucket
            end_bucket = (last + 1) // per_bucket  # ... and the one after the last whole one
            if end_bucket <= start_bucket:
                continue
            volume = next(d for d in self._detectors(series) if d.measure is Measure.VOLUME)
            for index in range(start_bucket, end_bucket):
                first_minute = index * per_bucket
                count = sum(minutes.get(first_minute + i, 0) for i in range(per_bucket))
                start = _bucket_start(index, scale)
                volume.learn_one(
                    Bucket(series, start, start + timedelta(seconds=scale), count, 0, 0)
                )
            taught.append(series)
        return taught

    def restore_alerts(self, active: Iterable[ActiveAlert]) -> None:
        """Put back the alerts that were firing before a restart (from the store's open
        incidents), so that they update or resolve instead of firing again; the gauges
        of active alerts say so at once (they read 0 until the next alert event)."""
        self.book.restore(active)
        self._active_alert_metrics()

    # -- stages --------------------------------------------------------------------

    def enrich(self, mentions: Sequence[Mention]) -> list[Mention]:
        """Add brands (by term, unless the source said) and sentiment."""
        enriched = self._score([(m, m.brands or self._brands_of(m.text)) for m in mentions])
        self._folds.clear()
        return enriched

    def _score(self, found: Sequence[tuple[Mention, tuple[str, ...]]]) -> list[Mention]:
        """Posts with their brands, their language and their sentiment."""
        if not found:
            return []
        langs = [self.scorer.detect(m.text, m.lang) for m, _ in found]
        sentiments = self.scorer.score([m.text for m, _ in found], langs)
        self._count_languages(langs)
        return [
            mention.enriched(brands, lang, sentiment)
            for (mention, brands), lang, sentiment in zip(found, langs, sentiments, strict=True)
        ]

    def _count_languages(self, langs: Sequence[str]) -> None:
        """``xwatch_sentiment_texts_total``: by the scorer's language, or ``other`` when the
        text's language has no scorer of its own (the fallback scored it)."""
        counts: dict[str, int] = {}
        for lang in langs:
            label = lang if lang in self._langs else OTHER_LANG
            counts[label] = counts.get(label, 0) + 1
        for label, count in counts.items():
            self.metrics.sentiment_texts.labels(label).inc(count)

    def _fold(self, text: str) -> tuple[str, set[str]]:
        """The folded text and its words, worked out once per batch (brand matching, the
        rules and the term trackers all need them), of the text's first ``MATCH_CHARS``."""
        found = self._folds.get(text)
        if found is None:
            folded = normalize(text[:MATCH_CHARS])
            found = self._folds[text] = (folded, words_of(folded))
        return found

    def _brands_of(self, text: str) -> tuple[str, ...]:
        folded, words = self._fold(text)
        may = self._brand_index.candidates(folded, words)
        found = [b for b in may if self.brand_patterns[b].search(folded)]
        return tuple(sorted(found, key=self._brand_rank.__getitem__))  # in the config's order

    def _aggregate_shard(
        self, found: Sequence[tuple[Mention, tuple[str, ...]]], enriched: Sequence[Mention]
    ) -> None:
        """``_aggregate`` for a shard: the posts about the brands of other shards only
        move the clock (and the first one starts the series), in their place among the
        others."""
        mine = iter(enriched)
        for mention, brands in found:
            if not self._plans.keys().isdisjoint(brands):
                self._aggregate(next(mine))
            elif not self._others.isdisjoint(brands):
                self._mind_the_gap(mention.created_at)
                self.aggregator.begin(mention.created_at.timestamp())
                self.clock.observe(mention.created_at)

    def _aggregate(self, mention: Mention) -> None:
        plans = self._plans
        brands = [b for b in mention.brands if b in plans]
        if not brands:
            self.metrics.unmatched.inc()
            return
        self._mind_the_gap(mention.created_at)
        on_time = True
        folded: str | None = None  # folded once, and only if a rule needs the text
        words: set[str] | None = None  # the same for its words and its terms
        terms: set[str] | None = None
        timestamp = mention.created_at.timestamp()
        watermark = self.clock.watermark  # before this post: what is due is closed, or late
        mark = -math.inf if watermark is None else watermark.timestamp()
        for brand in brands:
            plan = plans[brand]
            # the brand's own posts are not mentions of it: only the rules that ask for
            # them see them (see ``xwatch.rules``)
            own_post = plan.own.wrote(mention)
            counted = self._counted_own if own_post else self._counted
            counted[brand] = counted.get(brand, 0) + 1
            if own_post:
                self.aggregator.begin(timestamp)  # it starts the series all the same
            else:
                on_time = self.aggregator.add(mention, brand, "", mark) and on_time
                if "" in plan.authors:
                    self._add_author(brand, "", mention, timestamp, plan.authors[""], mark)
                if "" in plan.early:
                    self._judge_early(brand, "", mention, timestamp, plan.early[""])
            may: set[str] | None = None  # the topic and mention rules its terms may match
            regexes_may: bool | None = None  # whether one of their regexes may
            if plan.rules.topics:
                if folded is None or words is None:
                    folded, words = self._fold(mention.text)
                may = self.rules.candidates(folded, brand, words)
                regexes_may = self.rules.regexes_may(folded, brand)
                for topic in self.rules.topics_of(
                    mention, folded, brand, may, regexes_may, own_post
                ):
                    on_time = self.aggregator.add(mention, brand, topic, mark) and on_time
                    if topic in plan.authors:
                        scales = plan.authors[topic]
                        self._add_author(brand, topic, mention, timestamp, scales, mark)
                    if topic in plan.early:
                        self._judge_early(brand, topic, mention, timestamp, plan.early[topic])
            for rule, when, matcher in plan.mention:
                if not when.admits(mention) or not rule.live_at(mention.created_at):
                    continue
                if matcher is None and own_post:
                    continue  # a rule without ``match`` watches the brand's mentions
                if matcher is not None:
                    if folded is None or words is None:
                        folded, words = self._fold(mention.text)
                    may = self.rules.candidates(folded, brand, words) if may is None else may
                    terms_may = rule.id in may
                    if matcher.regexes and regexes_may is None:
                        regexes_may = self.rules.regexes_may(folded, brand)
                    if not (terms_may or (matcher.regexes and regexes_may)) or not matcher.matches(
                        mention, folded, plan.own, terms_may, bool(regexes_may), own_post
                    ):
                        continue
                at = mention.created_at
                series = SeriesKey(brand, "", self._finest)
                signal = Signal(series, Measure.MENTION, at, at, 1.0, 0.0, 0.0, 0.0, 1.0, "up")
                evidence = Bucket(
                    series, at, at, 1, int(mention.is_negative), mention.reach, (mention,)
                )
                self._pending.append(_Pending(rule, signal, evidence, (), self.clock.watermark))
            if plan.trackers and not own_post:
                if folded is None:
                    folded, words = self._fold(mention.text)
                terms = terms_in(folded) if terms is None else terms
                for tracker in plan.trackers:
                    tracker.add(mention, terms, timestamp, mark)
        if not on_time and not self._replaying:
            self.metrics.late.inc()
        self.clock.observe(mention.created_at)

    def _mind_the_gap(self, at: datetime) -> None:
        newest = self.clock.newest
        if newest is not None and at - newest > MAX_GAP:  # confirmed by ``_hold_jumps``
            self._skip_gap(at)

    def _add_author(
        self,
        brand: str,
        topic: str,
        mention: Mention,
        timestamp: float,
        scales: tuple[int, ...],
        watermark: float,
    ) -> None:
        """Count the post's author in its open bucket at each scale (for ``min_authors``)."""
        authors = self._authors.get((brand, topic))
        if authors is None:
            enough = self._plans[brand].enough_authors[topic]
            authors = self._authors[(brand, topic)] = _Authors(enough)
        author = mention.author.id or mention.author.handle or f"post:{mention.id}"
        authors.add(author, timestamp, scales, watermark)

    def _judge_early(
        self,
        brand: str,
        topic: str,
        mention: Mention,
        timestamp: float,
        early_rules: tuple[tuple[Rule, ...], int],
    ) -> None:
        """Judge the buckets this post is in, still open, for the rules that may fire on them
        early (``fires_early``): a spike is news at the post that makes it one, not a
        bucket and its allowed lateness later. A rule that holds on the bucket so far holds
        when it closes (its verdict only grows with more posts), so its firing is queued
        now, at this post's time (``_Pending``), and the bucket's close updates it.

        Cheap for the posts that change nothing: a bucket is looked at once its count (or
        negatives) passes the rule's minimum, judged once it passes the top of the expected
        band too, and looked at again only at ``EARLY_RECHECK`` times the count it was last
        looked at with. The detectors judge it against the buckets already closed."""
        rules, least = early_rules
        for series in self.aggregator.scales_of(brand, topic):
            key, scale = series.key, series.key.scale_seconds
            index = int(timestamp // scale)
            state = series.open.get(index)
            if state is None or state.count < least:
                continue  # a late post, or too few posts for any rule
            if state.judged_early is not None and state.count < state.judged_early.quiet_until:
                continue  # the common case: nothing to look at again yet
            signals: list[Signal] | None = None
            partial: Bucket | None = None
            for rule in rules:
                when = rule.when
                if when.scales_seconds and scale not in when.scales_seconds:
                    continue
                if state.count < when.min_count or state.negative < when.min_negative:
                    continue
                measure = when.measure
                value = state.count if measure is Measure.VOLUME else state.negative
                early = state.judged_early
                if early is not None and rule.id in early.fired:
                    continue
                last = None if early is None else early.judged_at.get(rule.id)
                if last is not None and value < max(last + 1, last * EARLY_RECHECK):
                    continue
                self._close_if_due()  # the past it is judged against: as without the batch
                if series.open.get(index) is not state:
                    break  # it was due: the post came after its close, late
                if early is None:
                    early = state.judged_early = _Early(self.detectors.get(key, ()))
                detectors = early.detectors
                if measure not in early.bars:
                    early.bars[measure] = _band_top(detectors, measure, _bucket_start(index, scale))
                bar = early.bars[measure]
                early.judged_at[rule.id] = value
                if bar is None or value <= bar or not rule.live_at(mention.created_at):
                    continue
                if signals is None or partial is None:
                    partial = series.peek(index, mention.created_at)
                    assert partial is not None  # the post is in it
                    signals = [detector.score_one(partial) for detector in detectors]
                signal = next((s for s in signals if s.measure is measure), None)
                authors = self._authors.get((brand, topic))
                so_far = authors.so_far(scale, index) if authors is not None else 0
                if signal is not None and when.holds(signal, partial, so_far):
                    early.fired.add(rule.id)
                    pending = _Pending(rule, signal, partial, tuple(signals), self.clock.watermark)
                    self._pending.append(pending)
            early = state.judged_early
            if early is not None:
                early.quiet_until = min(
                    (
                        early.next_look(rule)
                        for rule in rules
                        if not rule.when.scales_seconds or scale in rule.when.scales_seconds
                    ),
                    default=NEVER,
                )

    def _authors_in(self, bucket: Bucket) -> int:
        """The different authors of a closed bucket (forgotten from now on)."""
        series = bucket.series
        authors = self._authors.get((series.brand, series.topic))
        if authors is None:
            return 0
        scale = series.scale_seconds
        return authors.close(scale, int(bucket.start.timestamp()) // scale)

    def _close(self, earlier: Sequence[AlertEvent] = ()) -> list[AlertEvent]:
        """Close what the watermark lets close, and tell the metrics; ``earlier``: the
        events of the closes within the batch (``_close_if_due``), told now too."""
        watermark = self.clock.watermark
        if watermark is None:
            return list(earlier)
        events = [*earlier, *self._close_due(watermark)]
        self._report(events, watermark)
        return events

    def _close_due(self, watermark: datetime) -> list[AlertEvent]:
        """Judge every bucket the watermark has passed, and the firings at posts before it,
        in event-time order; what the metrics will be told is kept in ``self._tally``.

        Nothing while the closes are held (``closes_held``): event time stops for the
        alerts too, or one whose calm period ended then would resolve before the held
        buckets that may fire it again, and fire anew after."""
        if self.aggregator.held:
            return []
        events: list[AlertEvent] = []
        timer = self._timer
        tally = self._tally
        # Bucket by bucket, in event-time order, so that the alerts (and their
        # resolution) do not depend on how the posts were batched; the buckets that
        # end at one instant make one round of the lifecycle.
        for end, buckets in itertools.groupby(
            self.aggregator.close_until(watermark), key=_bucket_end
        ):
            events.extend(self._release_pending(before=end))
            alerts: list[Alert] = []
            term_alerts: list[Alert] = []
            for bucket in buckets:
                if not self._judged(bucket.series):
                    continue  # no rule looks at it
                started = timer()
                if self._nothing_to_judge(bucket):
                    self._learn(bucket)
                    judged = timer()
                    tally.closing(bucket, [])
                    recorded = timer()
                    if bucket.series.topic in self._plans[bucket.series.brand].streaks:
                        alerts.extend(self._alerts(bucket, []))  # ends the rules' streaks
                    tally.detecting += judged - started
                    tally.ruling += timer() - recorded
                    continue
                signals = self._judge(bucket)
                closed_terms = self._close_terms(bucket)
                judged = timer()
                tally.closing(bucket, signals)
                if not bucket.series.topic:  # the alerts' charts show the brand
                    self.history.record(bucket, signals)
                recorded = timer()
                if closed_terms is not None:
                    term_alerts.extend(self._term_alerts(bucket, signals, closed_terms))
                    tally.evaluated("term_volume")
                alerts.extend(self._alerts(bucket, signals))
                tally.detecting += judged - started
                tally.ruling += timer() - recorded
                for signal in signals:
                    tally.evaluated(signal.measure.value)
            events.extend(self._explained(self.book.observe(alerts + term_alerts, end)))
        events.extend(self._release_pending(before=None))
        events.extend(self._explained(self.book.observe([], watermark)))
        return events

    def _explained(self, events: list[AlertEvent]) -> list[AlertEvent]:
        """The lifecycle's events, each resolution whose change became the series' normal
        (its detector adopted it, ``Settling``) saying so: "back to normal" is not true
        of a negative share that has stayed at three times its old level for hours."""
        return [
            self._settled(event) if event.kind is EventKind.RESOLVED else event for event in events
        ]

    def _settled(self, event: AlertEvent) -> AlertEvent:
        measure, since = event.alert.signal.measure, event.since or event.alert.signal.start
        for detector in self.detectors.get(event.alert.series, ()):
            if detector.measure is measure and isinstance(detector, Settling):
                ratio = detector.settled(event.at, since)
                if ratio is not None and math.isfinite(ratio):
                    return dataclasses.replace(event, settled=ratio)
        return event

    def _report(self, events: Sequence[AlertEvent], watermark: datetime) -> None:
        """Tell the metrics what closing buckets did (``self._tally``) and the events."""
        tally, self._tally = self._tally, _Tally()
        for series, (bucket, signals) in tally.newest.items():
            self.metrics.record_bucket(bucket, signals, tally.closed[series])
        if tally.evaluations:
            self._stage["detect"].observe(tally.detecting)
            self._stage["rules"].observe(tally.ruling)
            for measure, count in tally.evaluations.items():
                self.metrics.detector_evaluations.labels(measure).inc(count)
        self.metrics.watermark.set(watermark.timestamp())
        self._count_events(events)
        if events:  # the active alerts change only with an event
            self._active_alert_metrics()

    def _count_events(self, events: Sequence[AlertEvent]) -> None:
        """Count the alerts fired and resolved."""
        for event in events:
            if event.kind is EventKind.FIRING:
                self.metrics.alerts_fired.labels(
                    event.alert.rule_id, event.alert.severity.value
                ).inc()
            elif event.kind is EventKind.RESOLVED:
                self.metrics.alerts_resolved.labels(
                    event.alert.rule_id, event.alert.severity.value
                ).inc()

    def _active_alert_metrics(self) -> None:
        """The alerts firing now, in all and per brand."""
        self.metrics.alerts_active.set(len(self.book.active))
        by_brand = dict.fromkeys(self.brand_patterns, 0)
        for active in self.book.active.values():
            brand = active.alert.series.brand
            by_brand[brand] = by_brand.get(brand, 0) + 1
        for brand, count in by_brand.items():
            self.metrics.brand_active_alerts.labels(brand).set(count)

    def _judged(self, series: SeriesKey) -> bool:
        """Whether a closed bucket of ``series`` is worth judging: every bucket of a brand
        (for its dashboards, charts and context), a topic's only at the scales its rule
        looks at (a sparse topic at 1 minute is mostly empty buckets, each costing its
        detectors as much as a busy one)."""
        if not series.topic:
            return True
        plan = self._plans.get(series.brand)
        scales = plan.judged.get(series.topic) if plan is not None else None
        return scales is not None and series.scale_seconds in scales

    def _nothing_to_judge(self, bucket: Bucket) -> bool:
        """Whether a closed bucket is an empty one of a topic that no rule can fire on
        when it is empty (``Condition.may_hold_when_empty``): its detectors only learn it.

        Most buckets of a topic are empty (a topic is a few posts a day, judged every
        few minutes); scoring them would cost as much as scoring a busy one, for no
        alert, no chart (the charts show the brand) and no dashboard (the brand's too).
        """
        if bucket.count or not bucket.series.topic:
            return False
        plan = self._plans.get(bucket.series.brand)
        return plan is not None and bucket.series.topic not in plan.fire_when_empty

    def _detectors(self, series: SeriesKey) -> list[Detector]:
        detectors = self.detectors.get(series)
        if detectors is None:
            zone = self._zones.get(series.brand, UTC_ZONE)
            detectors = self.detectors[series] = default_detectors(series.scale_seconds, zone)
        return detectors

    def _judge(self, bucket: Bucket) -> list[Signal]:
        """Score the bucket with each of its series' detectors, then learn it."""
        detectors = self._detectors(bucket.series)
        signals = [detector.score_one(bucket) for detector in detectors]
        for detector in detectors:
            detector.learn_one(bucket)
        return signals

    def _learn(self, bucket: Bucket) -> None:
        """Learn the bucket without scoring it (the detectors learn exactly as in
        ``_judge``: their contract is that scoring changes nothing)."""
        for detector in self._detectors(bucket.series):
            detector.learn_one(bucket)

    # -- rules -----------------------------------------------------------------------

    def _alerts(self, bucket: Bucket, signals: list[Signal]) -> list[Alert]:
        """The signal rules that fire on this bucket (``for_seconds``: after their streak)."""
        series = bucket.series
        rules = self.rules.signal_rules(series.brand, series.topic)
        if not rules:
            return []
        plan = self._plans.get(series.brand)
        authors = self._authors_in(bucket) if plan and series.topic in plan.authors else 0
        by_measure = {signal.measure: signal for signal in signals}
        alerts = []
        for rule in rules:
            when = rule.when
            signal = by_measure.get(when.measure)
            holds = (
                signal is not None
                and rule.live_at(bucket.end)
                and when.holds(signal, bucket, authors)
            )
            if when.for_seconds:
                key = (rule.id, series)
                if not holds:
                    self.streaks.pop(key, None)
                    continue
                since = self.streaks.setdefault(key, bucket.start)
                if (bucket.end - since).total_seconds() < when.for_seconds:
                    continue
            if holds and signal is not None:
                alerts.append(self._alert(rule, signal, bucket, tuple(signals)))
        return alerts

    def _close_terms(self, bucket: Bucket) -> ClosedTerms | None:
        """For a brand's own bucket: close its term tracker at that scale, in step."""
        if bucket.series.topic:
            return None
        tracker = self.terms.get((bucket.series.brand, bucket.series.scale_seconds))
        if tracker is None:
            return None
        closed = tracker.close_until(bucket.end.timestamp())
        if tracker.dropped:
            self.metrics.terms_dropped.labels(bucket.series.brand).inc(tracker.dropped)
            tracker.dropped = 0
        return closed[-1] if closed else None

    def _term_alerts(
        self, bucket: Bucket, signals: list[Signal], closed: ClosedTerms
    ) -> list[Alert]:
        """The new-term rules that fire on this bucket, each on its most surprising term.

        One story at a time: while a rule's alert for a term is active for the brand,
        the rule only fires again on that term. A crisis makes a dozen words surge at
        once (they show as the alerts' emerging terms); one alert per word would bury
        the story. Another term can start an alert once that one has resolved.
        """
        brand = bucket.series.brand
        plan = self._plans[brand]
        alerts = []
        for rule, when, scale in plan.new_term:
            if (
                scale != bucket.series.scale_seconds
                or not rule.live_at(closed.end)
                or closed.history_seconds < when.warmup_seconds
            ):
                continue
            active = {
                a.alert.term
                for a in self.book.active.values()
                if a.alert.rule_id == rule.id and a.alert.series.brand == brand
            }
            surge = next(
                (
                    s
                    for s in closed.surges
                    if s.count >= when.min_count
                    and s.share >= when.min_share
                    and s.likelihood >= when.likelihood
                    and (not active or s.term in active)
                ),
                None,
            )
            if surge is None:
                continue
            series = bucket.series
            evidence = Bucket(
                series,
                closed.start,
                closed.end,
                surge.count,
                surge.negative,
                surge.reach,
                surge.samples,
            )
            signal = surge.signal(series, closed.start, closed.end)
            alerts.append(self._alert(rule, signal, evidence, tuple(signals), term=surge.term))
        return alerts

    def _release_pending(self, before: datetime | None) -> list[AlertEvent]:
        """The firings at a post (mention rules, early verdicts) whose posts came before
        the watermark passed ``before`` (all of them when it is None), into the lifecycle,
        in the order of the posts."""
        events = []
        pending = self._pending
        while pending and (before is None or pending[0].after is None or pending[0].after < before):
            item = pending.popleft()
            alert = self._alert(item.rule, item.signal, item.bucket, item.context)
            events.extend(self.book.observe([alert], item.after or item.signal.end))
        return events

    def _alert(
        self,
        rule: Rule,
        signal: Signal,
        bucket: Bucket,
        context: tuple[Signal, ...],
        term: str = "",
    ) -> Alert:
        playbook = self.playbooks.get(rule.playbook)
        assert playbook is not None  # validated when the rules were loaded
        # the chart shows the whole brand (a topic's own series is often sparse)
        brand_series = SeriesKey(bucket.series.brand, "", bucket.series.scale_seconds)
        return Alert(
            rule_id=rule.id,
            title=rule.title,
            severity=rule.severity,
            series=bucket.series,
            signal=signal,
            bucket=bucket,
            context=context,
            playbook=playbook.ref(self.config.playbook_url_base),
            channels=rule.notify,
            labels=tuple(sorted(rule.labels.items())),
            term=term,
            terms=self.emerging(bucket.series.brand),
            history=self.history.points(brand_series),
        )

    def emerging(self, brand: str) -> tuple[TermSurge, ...]:
        """The brand's emerging terms now (only for brands a new-term rule watches)."""
        plan = self._plans.get(brand)
        if plan is None or not plan.trackers:
            return ()
        if len(plan.trackers) == 1:
            return plan.trackers[0].emerging
        merged: dict[str, TermSurge] = {}
        for tracker in plan.trackers:
            for surge in tracker.emerging:
                merged.setdefault(surge.term, surge)
        return tuple(merged.values())[: TermParams().emerging_top]
