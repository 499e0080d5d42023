"""The pure pipeline: mentions in, alert events out. No I/O.

    dedup      drop a post already ingested (two sources, a redelivery)
    enrich     which brands a post is about, its sentiment
    aggregate  into event-time buckets per series (brand, or a rule's topic in a brand)
    detect     each closed bucket: volume, negative share, negative volume
    rules      which rules those signals make fire
    lifecycle  firing → (re-firing updates) → resolved

The daemon, ``xwatch backtest`` and the tests all drive this same object: with
``ingest`` (a batch of posts), ``tick`` (live wall time passing) and ``flush``
(the end of a finite stream). ``checkpoint`` and ``restore`` carry the detectors'
state across a restart (the daemon keeps it in ``xwatch.store``).

Besides its results, the pipeline reports to the metrics object it is given: counts,
the time each stage takes (``timer``, ``time.perf_counter`` unless a test injects
another) and the sentiment languages.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from xwatch.alerting.lifecycle import AlertBook
from xwatch.clock import EventClock
from xwatch.config import Config
from xwatch.dedup import Deduplicator
from xwatch.detect import Detector
from xwatch.detect.buckets import Aggregator
from xwatch.detect.share import NegativeShareDetector
from xwatch.detect.state import Checkpoint, CheckpointError, restore_series
from xwatch.detect.volume import CountDetector
from xwatch.metrics import OTHER_LANG, STAGES, Metrics
from xwatch.model import Alert, AlertEvent, Bucket, EventKind, Measure, Mention, SeriesKey, Signal
from xwatch.playbooks import PlaybookIndex
from xwatch.rules import RuleSet, normalize, term_pattern
from xwatch.sentiment.router import LanguageRouter


def default_detectors(scale_seconds: int) -> list[Detector]:
    """The detectors every series gets."""
    return [
        CountDetector(Measure.VOLUME, scale_seconds),
        NegativeShareDetector(scale_seconds),
        CountDetector(Measure.NEGATIVE_VOLUME, scale_seconds),
    ]


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
    ) -> None:
        self.config = config
        self.rules = rules
        self.playbooks = playbooks
        self.scorer = scorer
        self.metrics = metrics
        self.clock = EventClock(timedelta(seconds=config.detect.allowed_lateness_seconds))
        self.aggregator = Aggregator(config.detect.scales_seconds, config.detect.samples_per_bucket)
        self.book = AlertBook(timedelta(seconds=config.alerting.resolve_after_seconds))
        self.dedup = Deduplicator(config.dedup_capacity)
        self.detectors: dict[SeriesKey, list[Detector]] = {}
        self.brand_patterns: dict[str, re.Pattern[str]] = {}
        for brand in config.brands:
            pattern = term_pattern(brand.terms)
            assert pattern is not None  # validated: at least one non-blank term
            self.brand_patterns[brand.id] = pattern
            self.aggregator.declare(brand.id)
            for topic in rules.topics(brand.id):
                self.aggregator.declare(brand.id, topic)
        self._timer = timer
        self._stage = {stage: metrics.stage_seconds.labels(stage) for stage in STAGES}
        self._langs = scorer.languages  # the languages with a scorer of their own
        metrics.declare_pipeline(
            (brand.id for brand in config.brands),
            ((rule.id, rule.severity.value) for rule in rules.rules),
            [*self._langs, OTHER_LANG],
        )

    def reload_rules(self, rules: RuleSet, playbooks: PlaybookIndex) -> None:
        """Judge with new rules from the next bucket on; a new topic rule gets its series.

        Detectors and active alerts stay: a rule that is gone stops firing and its
        alerts resolve as usual.
        """
        self.rules = rules
        self.playbooks = playbooks
        for brand in self.config.brands:
            for topic in rules.topics(brand.id):
                self.aggregator.declare(brand.id, topic)

    # -- the three ways in ---------------------------------------------------------

    def ingest(self, mentions: Sequence[Mention]) -> list[AlertEvent]:
        """Enrich and count a batch of posts; judge every bucket they let close."""
        fresh = []
        for mention in mentions:
            if self.dedup.first_time(mention.id):
                fresh.append(mention)
            else:
                self.metrics.duplicates.labels(mention.source).inc()
        started = self._timer()
        enriched = self.enrich(fresh)
        enriched_at = self._timer()
        for mention in enriched:
            self._aggregate(mention)
        if fresh:
            self._stage["enrich"].observe(enriched_at - started)
            self._stage["aggregate"].observe(self._timer() - enriched_at)
        return self._close()

    def tick(self, now: datetime) -> list[AlertEvent]:
        """Live mode: wall time passed; close the buckets it lets close, even empty ones."""
        self.clock.tick(now)
        return self._close()

    def flush(self) -> list[AlertEvent]:
        """End of a finite stream: close every bucket that has data."""
        if self.clock.newest is None:
            return []
        largest = max(self.config.detect.scales_seconds)
        self.clock.observe(
            self.clock.newest + self.clock.allowed_lateness + timedelta(seconds=largest)
        )
        return self._close()

    # -- state across restarts -----------------------------------------------------

    def checkpoint(self) -> list[Checkpoint]:
        """Every series' detectors as plain data: a snapshot that later learning leaves alone."""
        return [
            Checkpoint.of(series, detector)
            for series, detectors in sorted(self.detectors.items())
            for detector in detectors
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
        """
        by_series: dict[SeriesKey, list[Checkpoint]] = {}
        for item in items:
            by_series.setdefault(item.series, []).append(item)
        restored = refused = 0
        for series, checkpoints in sorted(by_series.items()):
            try:
                if series not in self.aggregator.series:
                    raise CheckpointError(
                        "the series is not in the config any more (brand, rule topic or scale)"
                    )
                fresh = functools.partial(default_detectors, series.scale_seconds)
                self.detectors[series] = restore_series(checkpoints, fresh)
                restored += 1
            except CheckpointError as exc:
                refused += 1
                if on_refused is not None:
                    on_refused(series, exc)
        return restored, refused

    # -- stages --------------------------------------------------------------------

    def enrich(self, mentions: Sequence[Mention]) -> list[Mention]:
        """Add brands (by term, unless the source said) and sentiment."""
        if not mentions:
            return []
        langs = [self.scorer.detect(m.text, m.lang) for m in mentions]
        sentiments = self.scorer.score([m.text for m in mentions], langs)
        self._count_languages(langs)
        enriched = []
        for mention, lang, sentiment in zip(mentions, langs, sentiments, strict=True):
            brands = mention.brands or self._brands_of(mention.text)
            enriched.append(
                dataclasses.replace(mention, brands=brands, lang=lang, sentiment=sentiment)
            )
        return enriched

    def _count_languages(self, langs: Sequence[str]) -> None:
        """``xwatch_sentiment_texts_total``: by the scorer's language, or ``other`` when the
        text's language has no scorer of its own (the fallback scored it)."""
        counts: dict[str, int] = {}
        for lang in langs:
            label = lang if lang in self._langs else OTHER_LANG
            counts[label] = counts.get(label, 0) + 1
        for label, count in counts.items():
            self.metrics.sentiment_texts.labels(label).inc(count)

    def _brands_of(self, text: str) -> tuple[str, ...]:
        folded = normalize(text)
        return tuple(b for b, pattern in self.brand_patterns.items() if pattern.search(folded))

    def _aggregate(self, mention: Mention) -> None:
        brands = [b for b in mention.brands if b in self.brand_patterns]
        if not brands:
            self.metrics.unmatched.inc()
            return
        on_time = True
        folded: str | None = None  # folded once, and only if a topic rule needs it
        for brand in brands:
            self.metrics.processed.labels(brand).inc()
            on_time = self.aggregator.add(mention, brand) and on_time
            if self.rules.topics(brand):
                folded = normalize(mention.text) if folded is None else folded
                for topic in self.rules.topics_of(mention, folded, brand):
                    self.aggregator.add(mention, brand, topic)
        if not on_time:
            self.metrics.late.inc()
        self.clock.observe(mention.created_at)

    def _close(self) -> list[AlertEvent]:
        watermark = self.clock.watermark
        if watermark is None:
            return []
        events: list[AlertEvent] = []
        timer = self._timer
        detecting = ruling = 0.0
        evaluations: dict[str, int] = {}
        # Bucket by bucket, in event-time order, so that the alerts (and their
        # resolution) do not depend on how the posts were batched.
        for bucket in self.aggregator.close_until(watermark):
            started = timer()
            signals = self._judge(bucket)
            judged = timer()
            self.metrics.record_bucket(bucket, signals)
            recorded = timer()
            events.extend(self.book.observe(self._alerts(bucket, signals), bucket.end))
            detecting += judged - started
            ruling += timer() - recorded
            for signal in signals:
                evaluations[signal.measure.value] = evaluations.get(signal.measure.value, 0) + 1
        if evaluations:
            self._stage["detect"].observe(detecting)
            self._stage["rules"].observe(ruling)
            for measure, count in evaluations.items():
                self.metrics.detector_evaluations.labels(measure).inc(count)
        events.extend(self.book.observe([], watermark))
        self.metrics.watermark.set(watermark.timestamp())
        for event in events:
            if event.kind is EventKind.FIRING:
                self.metrics.alerts_fired.labels(
                    event.alert.rule_id, event.alert.severity.value
                ).inc()
            else:
                self.metrics.alerts_resolved.labels(
                    event.alert.rule_id, event.alert.severity.value
                ).inc()
        self.metrics.alerts_active.set(len(self.book.active))
        if events:  # the active alerts change only with an event
            by_brand = dict.fromkeys(self.brand_patterns, 0)
            for active in self.book.active.values():
                brand = active.alert.series.brand
                by_brand[brand] = by_brand.get(brand, 0) + 1
            for brand, count in by_brand.items():
                self.metrics.brand_active_alerts.labels(brand).set(count)
        return events

    def _judge(self, bucket: Bucket) -> list[Signal]:
        detectors = self.detectors.get(bucket.series)
        if detectors is None:
            detectors = self.detectors[bucket.series] = default_detectors(
                bucket.series.scale_seconds
            )
        signals = [detector.score_one(bucket) for detector in detectors]
        for detector in detectors:
            detector.learn_one(bucket)
        return signals

    def _alerts(self, bucket: Bucket, signals: list[Signal]) -> list[Alert]:
        alerts = []
        for signal in signals:
            for rule in self.rules.fired_by(signal, bucket):
                playbook = self.playbooks.get(rule.playbook)
                assert playbook is not None  # validated when the rules were loaded
                alerts.append(
                    Alert(
                        rule_id=rule.id,
                        title=rule.title,
                        severity=rule.severity,
                        series=bucket.series,
                        signal=signal,
                        bucket=bucket,
                        context=tuple(signals),
                        playbook=playbook.ref(self.config.playbook_url_base),
                        channels=rule.notify,
                    )
                )
        return alerts
