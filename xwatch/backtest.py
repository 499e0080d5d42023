"""Backtests: history through the daemon's own code, in event time.

* ``replay_file``: a mentions file through the whole pipeline (the replay source
  at full speed, the same ``Pipeline``); returns the alert events the daemon
  would have sent.
* ``nab_scores``: a NAB series (one count per bucket) through the daemon's volume
  detector with its default parameters; one score in [0, 1] per row, no look-ahead.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from xwatch.detect.volume import CountDetector
from xwatch.metrics import Metrics
from xwatch.model import AlertEvent, Bucket, Measure, SeriesKey, Signal
from xwatch.pipeline import Pipeline
from xwatch.sentiment.trained import router_from_config
from xwatch.settings import Settings
from xwatch.sources import MetricsReport
from xwatch.sources.replay import ReplaySource

BATCH = 1000


async def replay_file(settings: Settings, path: Path | None) -> list[AlertEvent]:
    config = settings.config
    metrics = Metrics(CollectorRegistry())
    pipeline = Pipeline(
        config,
        settings.rules,
        settings.playbooks,
        router_from_config(config),
        metrics,
    )
    source = ReplaySource(path or Path("/dev/stdin"), "backtest", 0.0, MetricsReport(metrics))
    events: list[AlertEvent] = []
    batch = []
    async with source:
        async for mention in source:
            batch.append(mention)
            if len(batch) >= BATCH:
                events.extend(pipeline.ingest(batch))
                batch = []
    events.extend(pipeline.ingest(batch))
    events.extend(pipeline.flush())
    return events


EPISODE_HALFLIFE_SECONDS = 6 * 3600.0


def nab_scores(rows: Iterable[tuple[datetime, float]]) -> list[float]:
    """Anomaly scores for a series of (bucket start, count), oldest first.

    A score says how strongly a bucket should *start* an alert, as the daemon sends
    one alert per episode rather than one per bucket: it is the bucket's surprise
    above the bar left by the surprises just before it (the bar halves every
    ``EPISODE_HALFLIFE_SECONDS``). The first bucket of a burst scores its full
    surprise; the next buckets of the same burst score only what they add.
    """
    rows = list(rows)
    if not rows:
        return []
    decay = 0.5 ** (_bucket_width(rows) / EPISODE_HALFLIFE_SECONDS)
    bar = 0.0
    scores = []
    for signal in nab_signals(rows):
        surprise = 0.0 if signal.warming_up else signal.surprise
        scores.append(nab_score(max(0.0, surprise - bar)))
        bar = max(bar * decay, surprise)
    return scores


def nab_signals(rows: Iterable[tuple[datetime, float]]) -> list[Signal]:
    """The volume detector's signal for each (bucket start, count), oldest first.

    The daemon's detector with its default parameters, score before learn: row i's
    signal depends on rows 0..i only. ``nab_scores`` and the backtest report use it.
    """
    rows = list(rows)
    if not rows:
        return []
    width = _bucket_width(rows)
    key = SeriesKey("nab", "", width)
    detector = CountDetector(Measure.VOLUME, width)
    signals = []
    for start, value in rows:
        count = max(0, round(value))
        bucket = Bucket(key, start, start + timedelta(seconds=width), count, 0, 0)
        signals.append(detector.score_one(bucket))
        detector.learn_one(bucket)
    return signals


def nab_score(surprise: float) -> float:
    """A score in [0, 1] that keeps the order of tail probabilities far below 1e-16.

    ``1 - tail`` rounds to 1.0 for every tail below about 1e-16, which would make
    a one-in-a-million bucket and a one-in-a-googol bucket tie. The NAB scorer only
    uses the order of scores (it searches the threshold), so a monotone map of the
    surprise ``-log10(tail)`` loses nothing: 0.5 at 1e-1, 0.75 at 1e-3, 0.9 at 1e-9.
    """
    return surprise / (1.0 + surprise)


def _bucket_width(rows: list[tuple[datetime, float]]) -> int:
    """The most common gap between rows, in seconds (at least 1)."""
    gaps: dict[int, int] = {}
    for (a, _), (b, _) in itertools.pairwise(rows):
        gap = int((b - a).total_seconds())
        if gap > 0:
            gaps[gap] = gaps.get(gap, 0) + 1
    return max(gaps, key=lambda g: gaps[g]) if gaps else 300


def event_to_json(event: AlertEvent) -> dict[str, Any]:
    alert = event.alert
    signal = alert.signal
    return {
        "event": event.kind.value,
        "at": event.at.isoformat(),
        "identity": alert.identity,
        "rule": alert.rule_id,
        "severity": alert.severity.value,
        "brand": alert.series.brand,
        "topic": alert.series.topic,
        "scale_seconds": alert.series.scale_seconds,
        "measure": signal.measure.value,
        "direction": signal.direction,
        "bucket_start": signal.start.isoformat(),
        "bucket_end": signal.end.isoformat(),
        "observed": signal.observed,
        "expected": signal.expected,
        "band": [signal.low, signal.high],
        "likelihood": signal.likelihood,
        "count": alert.bucket.count,
        "negative": alert.bucket.negative,
        "samples": [
            {
                "id": m.id,
                "url": m.url,
                "handle": m.author.handle,
                "followers": m.author.followers,
                "text": m.text,
            }
            for m in alert.bucket.samples
        ],
        "playbook": {"id": alert.playbook.id, "url": alert.playbook.url},
    }
