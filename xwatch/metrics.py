"""Every Prometheus metric xwatch exports, on an injected registry.

Label values are bounded: brands and rules come from the configuration, sources,
channels and reasons from the code, never a post id or a user.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from xwatch import __version__
from xwatch.model import Bucket, Measure, SeriesKey, Signal, format_scale

STAGES = ("enrich", "aggregate", "detect", "rules")
"""The pipeline stages ``xwatch_stage_seconds`` times."""
OTHER_LANG = "other"
"""``xwatch_sentiment_texts_total``'s label for languages without a scorer of their own."""
PROBLEM_KINDS: dict[str, tuple[str, ...]] = {
    "x_stream": (
        "http_429",
        "http_4xx",
        "http_5xx",
        "network",
        "stall",
        "stream_error",
        "rule_cap",
        "rules",
        "backfill_truncated",
        "bad_response",
        "warm_start",
        "crashed",
    ),
    "mqtt": ("crashed", "retained"),
    "webhook": ("unauthorized", "queue_full"),
}
"""The problems each type of source reports (``xwatch_source_problems_total{kind}``)."""
NOTIFICATION_OUTCOMES = ("sent", "retried", "failed")  # failed: for good (or given up)
STORE_OPERATIONS = ("incidents", "deliveries", "silences", "message_refs", "retention", "journal")
"""What the daemon writes to the store besides checkpoints (``xwatch_store_write_errors_total``;
for the journal, the posts not written to it)."""
NOTICE_DROP_REASONS = ("overflow", "unreadable")
"""Why a notification was never sent (``xwatch_notifications_dropped_total``): more
notices the store had not taken waited for the notifier than are kept (the oldest went),
or its stored record cannot be decoded (set aside)."""
CHANGE_DROP_REASONS = ("refused", "overflow")
"""Why an incident change was never written (``xwatch_incident_changes_dropped_total``):
the store refused that change at each of its attempts, or more waited than are kept."""


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._series_gauges: dict[SeriesKey, _SeriesGauges] = {}
        Info("xwatch_build", "Version of the running xwatch.", registry=registry).info(
            {"version": __version__}
        )
        # intake
        self.received = Counter(
            "xwatch_mentions_received_total",
            "Mentions read from a source.",
            ["source"],
            registry=registry,
        )
        self.rejected = Counter(
            "xwatch_mentions_rejected_total",
            "Payloads that could not become mentions, by reason.",
            ["source", "reason"],
            registry=registry,
        )
        self.processed = Counter(
            "xwatch_mentions_processed_total",
            "Mentions counted into a brand's series.",
            ["brand"],
            registry=registry,
        )
        self.own_posts = Counter(
            "xwatch_mentions_own_total",
            "The brand's own posts (brands[].accounts): not counted into its series; "
            "only the rules that ask for them see them.",
            ["brand"],
            registry=registry,
        )
        self.unmatched = Counter(
            "xwatch_mentions_unmatched_total",
            "Mentions that matched no configured brand.",
            registry=registry,
        )
        self.late = Counter(
            "xwatch_mentions_late_total",
            "Mentions that arrived after their bucket had closed (older than the watermark).",
            registry=registry,
        )
        self.terms_dropped = Counter(
            "xwatch_terms_dropped_total",
            "New terms a brand's term tracker did not count: the open bucket held as many "
            "different terms as it counts (20,000; a flood of random hashtags).",
            ["brand"],
            registry=registry,
        )
        self.clock_steps = Counter(
            "xwatch_clock_steps_total",
            "Times the wall clock jumped ahead of the time that passed (an NTP step, a VM "
            "resumed): the buckets closed by the time that passed until it was back in line.",
            registry=registry,
        )
        self.event_time_gaps = Counter(
            "xwatch_event_time_gaps_total",
            "Holes of more than a day in a replayed stream's event time: the series went "
            "on after the hole instead of judging each of its empty buckets.",
            registry=registry,
        )
        self.duplicates = Counter(
            "xwatch_mentions_duplicate_total",
            "Mentions dropped because the same post was already ingested.",
            ["source"],
            registry=registry,
        )
        self.ingest_lag = Histogram(
            "xwatch_ingest_lag_seconds",
            "Time from a post's creation to its ingestion by xwatch.",
            ["source"],
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
            registry=registry,
        )
        self.source_up = Gauge(
            "xwatch_source_up",
            "1 while the source is connected to its peer, else 0.",
            ["source"],
            registry=registry,
        )
        self.source_reconnects = Counter(
            "xwatch_source_reconnects_total",
            "Reconnections scheduled by a source.",
            ["source"],
            registry=registry,
        )
        self.source_problems = Counter(
            "xwatch_source_problems_total",
            "Operational problems of a source, by kind (http_429, network, stall, ...).",
            ["source", "kind"],
            registry=registry,
        )
        self.x_rate_limit_remaining = Gauge(
            "xwatch_x_rate_limit_remaining",
            "Requests left in the current X API rate-limit window (x-rate-limit-remaining), "
            "by source and endpoint (stream, rules, search, counts).",
            ["source", "endpoint"],
            registry=registry,
        )
        self.x_rate_limit_reset = Gauge(
            "xwatch_x_rate_limit_reset_timestamp_seconds",
            "When the current X API rate-limit window resets (x-rate-limit-reset, Unix time).",
            ["source", "endpoint"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "xwatch_queue_depth", "Mentions waiting for the pipeline.", registry=registry
        )
        self.sources_running = Gauge(
            "xwatch_sources_running", "Sources currently producing mentions.", registry=registry
        )
        # pipeline
        self.batch_seconds = Histogram(
            "xwatch_pipeline_batch_seconds",
            "Time to process one batch of mentions.",
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
            registry=registry,
        )
        self.watermark = Gauge(
            "xwatch_watermark_timestamp_seconds",
            "Event time up to which buckets are closed (Unix time).",
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "xwatch_stage_seconds",
            "Time spent in one pipeline stage (enrich, aggregate: per batch of mentions; "
            "detect, rules: per pass closing buckets).",
            ["stage"],
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
            registry=registry,
        )
        self.sentiment_texts = Counter(
            "xwatch_sentiment_texts_total",
            "Texts scored for sentiment, by the language of their scorer "
            "(other: a language without a scorer of its own, scored by the fallback).",
            ["lang"],
            registry=registry,
        )
        self.detector_evaluations = Counter(
            "xwatch_detector_evaluations_total",
            "Closed buckets scored by a detector, by measure.",
            ["measure"],
            registry=registry,
        )
        self.buckets_closed = Counter(
            "xwatch_buckets_closed_total",
            "Buckets closed and judged, by time scale.",
            ["scale"],
            registry=registry,
        )
        # brands (what the wall screen shows)
        self.brand_mentions = Gauge(
            "xwatch_brand_mentions",
            "Mentions in the brand's last closed bucket.",
            ["brand", "scale"],
            registry=registry,
        )
        self.brand_expected = Gauge(
            "xwatch_brand_expected_mentions",
            "Expected mentions in that bucket.",
            ["brand", "scale"],
            registry=registry,
        )
        self.brand_expected_high = Gauge(
            "xwatch_brand_expected_mentions_high",
            "Upper edge of the expected band.",
            ["brand", "scale"],
            registry=registry,
        )
        self.brand_negative_share = Gauge(
            "xwatch_brand_negative_share_ratio",
            "Share of negative mentions in the brand's last closed bucket.",
            ["brand", "scale"],
            registry=registry,
        )
        self.brand_usual_negative_share = Gauge(
            "xwatch_brand_usual_negative_share_ratio",
            "The brand's usual negative share.",
            ["brand", "scale"],
            registry=registry,
        )
        self.brand_likelihood = Gauge(
            "xwatch_brand_anomaly_likelihood",
            "Calibrated anomaly likelihood of the brand's last closed bucket.",
            ["brand", "scale", "measure"],
            registry=registry,
        )
        # alerting
        self.alerts_fired = Counter(
            "xwatch_alerts_fired_total",
            "Alerts that started firing.",
            ["rule", "severity"],
            registry=registry,
        )
        self.alerts_resolved = Counter(
            "xwatch_alerts_resolved_total",
            "Alerts resolved.",
            ["rule", "severity"],
            registry=registry,
        )
        self.alerts_active = Gauge(
            "xwatch_alerts_active", "Alerts currently firing.", registry=registry
        )
        self.brand_active_alerts = Gauge(
            "xwatch_brand_active_alerts",
            "Alerts firing now for a brand (its incidents).",
            ["brand"],
            registry=registry,
        )
        self.outbox_depth = Gauge(
            "xwatch_outbox_depth",
            "Notifications waiting to be delivered by a notifier.",
            ["channel"],
            registry=registry,
        )
        self.outbox_oldest = Gauge(
            "xwatch_outbox_oldest_timestamp_seconds",
            "When the oldest notification still waiting for a notifier was queued "
            "(Unix time; 0 when none waits). Its age: time() - this.",
            ["channel"],
            registry=registry,
        )
        self.x_monthly_post_cap = Gauge(
            "xwatch_x_monthly_post_cap",
            "Posts the X plan lets an X source read a month (sources.monthly_post_cap).",
            ["source"],
            registry=registry,
        )
        self.rule_reloads = Counter(
            "xwatch_rule_reloads_total",
            "Rule reloads (SIGHUP), by result: ok, or failed (the previous rules stay).",
            ["result"],
            registry=registry,
        )
        self.rules_loaded = Gauge("xwatch_rules_loaded", "Rules in force.", registry=registry)
        self.notifications = Counter(
            "xwatch_notifications_total",
            "Delivery attempts by channel and outcome: sent, retried (a temporary failure: "
            "tried again later), failed (a permanent error, or retries given up).",
            ["channel", "outcome"],
            registry=registry,
        )
        self.notices_dropped = Counter(
            "xwatch_notifications_dropped_total",
            "Notifications dropped, never to be sent, by reason: overflow (the store had "
            "not taken them, it failed, and more such waited for the notifier than are "
            "kept: the oldest went), unreadable (the stored notice cannot be decoded: set "
            "aside as failed, its record kept).",
            ["channel", "reason"],
            registry=registry,
        )
        self.notifier_failing = Gauge(
            "xwatch_notifier_failing",
            "1 while a notifier's last delivery attempt failed (it is retrying), else 0.",
            ["channel"],
            registry=registry,
        )
        self.incidents_opened = Counter(
            "xwatch_incidents_opened_total",
            "Incidents opened (alerts of one brand grouped), by severity at opening.",
            ["severity"],
            registry=registry,
        )
        self.incidents_open = Gauge(
            "xwatch_incidents_open",
            "Incidents open now (firing, acknowledged or silenced).",
            registry=registry,
        )
        self.incident_actions = Counter(
            "xwatch_incident_actions_total",
            "What people did to incidents: action (acknowledge, resolve, escalate, silence) "
            "and via (slack, api, page).",
            ["action", "via"],
            registry=registry,
        )
        self.labels_stored = Counter(
            "xwatch_sentiment_labels_total",
            "Sentiment labels people gave alerts' sample posts, stored for training: by "
            "source (api, slack).",
            ["source"],
            registry=registry,
        )
        for source in ("api", "slack"):
            self.labels_stored.labels(source)
        self.silences_active = Gauge(
            "xwatch_silences_active", "Silences in force now.", registry=registry
        )
        # the store
        self.checkpoint_seconds = Histogram(
            "xwatch_checkpoint_seconds",
            "Time to save a checkpoint of every detector to the store.",
            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        self.checkpoints = Counter(
            "xwatch_checkpoints_total",
            "Checkpoints of the detectors' state, by outcome (saved, failed).",
            ["outcome"],
            registry=registry,
        )
        self.store_size = Gauge(
            "xwatch_store_size_bytes",
            "Size of the embedded store's database.",
            registry=registry,
        )
        self.store_writable = Gauge(
            "xwatch_store_writable",
            "1 while the store takes writes, 0 since its last write failed (until one works).",
            registry=registry,
        )
        self.store_write_errors = Counter(
            "xwatch_store_write_errors_total",
            "Writes to the store that failed, by what was written (incidents, deliveries, "
            "silences, message_refs, retention; checkpoints: xwatch_checkpoints_total; "
            "journal: posts taken without being written to the ingest journal).",
            ["operation"],
            registry=registry,
        )
        self.journal_bytes = Gauge(
            "xwatch_journal_bytes",
            "Size of the ingest journal (store.path + .journal): the posts taken since the "
            "last checkpoint and those of the buckets it left open.",
            registry=registry,
        )
        self.journal_damaged = Counter(
            "xwatch_journal_lines_damaged_total",
            "Lines of the ingest journal that could not be read back at start (skipped).",
            registry=registry,
        )
        self.incident_changes_dropped = Counter(
            "xwatch_incident_changes_dropped_total",
            "Incident changes never written to the store, by reason: refused (the store "
            "refused that change, not every write, at each of its attempts), overflow (more "
            "waited while the store failed than are kept: the oldest went). Their "
            "notifications went out; a restart does not know of them.",
            ["reason"],
            registry=registry,
        )
        self.store_pruned = Counter(
            "xwatch_store_pruned_total",
            "History deleted from the store past store.retention_days: resolved incidents "
            "(with their timeline and deliveries) and ended silences.",
            ["what"],
            registry=registry,
        )

    # -- series that exist from the start, at zero --------------------------------------
    # A counter that appears only at its first increment hides that increment from
    # ``increase()`` and leaves holes in dashboards; known label values start at zero.

    def declare_source(
        self,
        source: str,
        *,
        live: bool,
        reasons: Iterable[str] = (),
        kinds: Iterable[str] = (),
    ) -> None:
        """A source's series: received, duplicates, rejected by ``reasons``, problems by
        ``kinds``; for a live source also its connection state (0 until it connects) and
        reconnects."""
        self.received.labels(source)
        self.duplicates.labels(source)
        for reason in reasons:
            self.rejected.labels(source, reason)
        for kind in kinds:
            self.source_problems.labels(source, kind)
        if live:
            self.source_up.labels(source)
            self.source_reconnects.labels(source)

    def declare_pipeline(
        self,
        brands: Iterable[str],
        rules: Iterable[tuple[str, str]],
        langs: Iterable[str],
    ) -> None:
        """The pipeline's series: per brand, per (rule, severity), per scorer language,
        per measure and per stage."""
        for brand in brands:
            self.processed.labels(brand)
            self.own_posts.labels(brand)
            self.brand_active_alerts.labels(brand)
        self.declare_rules(rules)
        for lang in langs:
            self.sentiment_texts.labels(lang)
        for measure in Measure:
            self.detector_evaluations.labels(measure.value)
        for stage in STAGES:
            self.stage_seconds.labels(stage)

    def declare_rules(self, rules: Iterable[tuple[str, str]]) -> None:
        """The series per (rule, severity): at the start, and for the rules a reload
        brings. Those of a rule a reload removed stay until the restart: they count what
        it did, the resolution of its alerts at the reload included (a series gone before
        the next scrape would hide that)."""
        for rule, severity in rules:
            self.alerts_fired.labels(rule, severity)
            self.alerts_resolved.labels(rule, severity)

    def declare_channels(self, channels: Iterable[str]) -> None:
        for channel in channels:
            self.outbox_depth.labels(channel)
            self.outbox_oldest.labels(channel)
            self.notifier_failing.labels(channel)
            for reason in NOTICE_DROP_REASONS:
                self.notices_dropped.labels(channel, reason)
            for outcome in NOTIFICATION_OUTCOMES:
                self.notifications.labels(channel, outcome)

    def record_bucket(self, bucket: Bucket, signals: list[Signal], closed: int = 1) -> None:
        """Count ``closed`` buckets of a series; for a brand's own series, show the newest
        one (``bucket``) on the wall-screen gauges."""
        series = self._series_gauges.get(bucket.series)
        if series is None:
            series = self._series_gauges[bucket.series] = _SeriesGauges(self, bucket.series)
        series.closed.inc(closed)
        if bucket.series.topic:
            return
        series.mentions.set(bucket.count)
        series.negative_share.set(bucket.negative_share)
        for signal in signals:
            series.likelihood(signal.measure).set(signal.likelihood)
            if signal.measure is Measure.VOLUME:
                series.expected.set(signal.expected)
                series.expected_high.set(signal.high)
            elif signal.measure is Measure.NEGATIVE_SHARE:
                series.usual_negative_share.set(signal.expected)

    def forget_series(self, keys: Iterable[SeriesKey]) -> None:
        """Let go of the children looked up for series that are gone (a reload removed
        their topic or scale). Their label sets stay: they are the brand's and the scale's,
        shared with series that remain (no metric is labelled by topic)."""
        for key in keys:
            self._series_gauges.pop(key, None)


class _SeriesGauges:
    """The labelled children for one series, looked up once (``labels()`` is not free)."""

    def __init__(self, metrics: Metrics, key: SeriesKey) -> None:
        scale = format_scale(key.scale_seconds)
        brand = key.brand
        self.closed = metrics.buckets_closed.labels(scale)
        self.mentions = metrics.brand_mentions.labels(brand, scale)
        self.expected = metrics.brand_expected.labels(brand, scale)
        self.expected_high = metrics.brand_expected_high.labels(brand, scale)
        self.negative_share = metrics.brand_negative_share.labels(brand, scale)
        self.usual_negative_share = metrics.brand_usual_negative_share.labels(brand, scale)
        self._likelihood = metrics.brand_likelihood
        self._brand, self._scale = brand, scale
        self._by_measure: dict[Measure, Gauge] = {}

    def likelihood(self, measure: Measure) -> Gauge:
        gauge = self._by_measure.get(measure)
        if gauge is None:
            gauge = self._likelihood.labels(self._brand, self._scale, measure.value)
            self._by_measure[measure] = gauge
        return gauge
