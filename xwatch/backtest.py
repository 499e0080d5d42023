"""Backtests: history through the daemon's own code, in event time.

* ``replay_file``: a mentions file through the whole pipeline (the replay source
  at full speed, the same ``Pipeline``); returns the alert events the daemon
  would have sent, in event time (``in_event_time``).
* ``replay_in_processes``: the same, the brands split across processes (brands are
  judged independently of each other); the same events, whatever the split.
* ``nab_scores``: a NAB series (one count per bucket) through the daemon's volume
  detector with its default parameters; one score in [0, 1] per row, no look-ahead.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from xwatch import gc_tuning
from xwatch.alerting.codec import to_json
from xwatch.detect.volume import CountDetector, CountParams
from xwatch.metrics import Metrics
from xwatch.model import AlertEvent, Bucket, Measure, SeriesKey, Signal
from xwatch.pipeline import Pipeline
from xwatch.sentiment.trained import router_from_config
from xwatch.settings import Settings
from xwatch.sources import MetricsReport
from xwatch.sources.replay import ReplaySource

BATCH = 1000
PROGRESS_SECONDS = 5.0  # a progress line this often (wall time), when asked for

Progress = Callable[[str], None]


async def replay_file(
    settings: Settings,
    path: Path | None,
    shard: frozenset[str] | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[AlertEvent]:
    """The alert events of the mentions in ``path`` (stdin if None), in event time;
    ``shard``: only those of these brands (see ``Pipeline``); ``progress``: told how far
    the replay is every ``PROGRESS_SECONDS`` of ``clock``."""
    config = settings.config
    metrics = Metrics(CollectorRegistry())
    pipeline = Pipeline(
        config,
        settings.rules,
        settings.playbooks,
        router_from_config(config),
        metrics,
        shard=shard,
    )
    source = ReplaySource(path or Path("/dev/stdin"), "backtest", 0.0, MetricsReport(metrics))
    events: list[AlertEvent] = []
    batch = []
    read, reported = 0, clock()
    async with source:
        async for mention in source:
            batch.append(mention)
            if len(batch) >= BATCH:
                events.extend(pipeline.ingest(batch))
                read += len(batch)
                batch = []
                if progress is not None and clock() - reported >= PROGRESS_SECONDS:
                    reported = clock()
                    progress(_progress_line(read, pipeline.clock.newest, len(events), shard))
    events.extend(pipeline.ingest(batch))
    events.extend(pipeline.flush())
    return in_event_time(events, settings)


def _progress_line(
    read: int, newest: datetime | None, events: int, shard: frozenset[str] | None
) -> str:
    when = f", event time {newest:%Y-%m-%d %H:%M} UTC" if newest is not None else ""
    whose = f" (the {len(shard)} brands of one process)" if shard is not None else ""
    return f"backtest: {read:,} mentions read{when}, {events:,} alert events{whose}"


def print_progress(line: str) -> None:
    """``progress`` for the command line: on stderr."""
    print(line, file=sys.stderr, flush=True)


def in_event_time(events: Sequence[AlertEvent], settings: Settings) -> list[AlertEvent]:
    """Events by their event time, then by brand in the config's order; a brand's events
    at one instant stay in the pipeline's order. A whole pipeline emits each brand's
    events in the same order as a shard does, so sorting both gives the same list."""
    rank = {brand.id: i for i, brand in enumerate(settings.config.brands)}
    return sorted(events, key=lambda e: (e.at, rank.get(e.alert.series.brand, len(rank))))


def shards(brands: Sequence[str], jobs: int) -> list[frozenset[str]]:
    """``brands`` dealt round-robin into at most ``jobs`` non-empty shards."""
    count = max(1, min(jobs, len(brands)))
    return [frozenset(brands[i::count]) for i in range(count)]


def replay_in_processes(
    settings: Settings, path: Path, jobs: int, progress: bool = False
) -> list[AlertEvent]:
    """``replay_file`` with the brands split across ``jobs`` processes (``progress``: the
    first one prints its progress on stderr; they all read at about its pace).

    Every process reads and parses the whole file (a post may be about brands of several
    shards, and each shard's clock must move as a whole pipeline's does), and scores,
    counts and judges only the posts about its own brands: the parts that grow with the
    number of brands are divided, the reading is not. The events are those of
    ``replay_file``, in the same order.
    """
    parts = shards([brand.id for brand in settings.config.brands], jobs)
    if len(parts) == 1:
        report = print_progress if progress else None
        return asyncio.run(replay_file(settings, path, progress=report))
    # spawn, not fork: a fresh interpreter, whatever threads this one has started
    context = multiprocessing.get_context("spawn")
    jobs_of = [(settings, path, part, progress and i == 0) for i, part in enumerate(parts)]
    with ProcessPoolExecutor(len(parts), mp_context=context) as pool:
        results = list(pool.map(_replay_shard, jobs_of))
    return in_event_time([event for events in results for event in events], settings)


def _replay_shard(job: tuple[Settings, Path, frozenset[str], bool]) -> list[AlertEvent]:
    settings, path, shard, progress = job
    gc_tuning.settle()  # a process of its own, as ``xwatch backtest`` settles its own
    return asyncio.run(replay_file(settings, path, shard, print_progress if progress else None))


def nab_scores(rows: Iterable[tuple[datetime, float]]) -> list[float]:
    """Anomaly scores for a series of (bucket start, count), oldest first.

    A score says how strongly a bucket should *start* an alert, as the daemon sends
    one alert per episode rather than one per bucket: it is the detector's surprise
    (already calibrated on the series' own past, see ``CountDetector``) above the bar
    left by the surprises just before it (the bar halves every
    ``episode_halflife_seconds`` of the detector's parameters, the calm after which the
    shipped config resolves an alert). The first bucket of a burst scores its full
    surprise; the next buckets of the same burst score only what they add.

    One bar for both directions: an episode is one anomaly whichever way it goes (the
    dip after a burst is part of it), where the daemon, and the backtest report, keep
    up and down as two alerts; so a drop right after a burst can score low here and
    still start an alert in the report. A bar per direction scored lower on NAB's
    Twitter series (58.81 against 62.13, standard profile): those dips are mostly
    the burst's own end.
    """
    rows = list(rows)
    if not rows:
        return []
    halflife = CountParams().episode_halflife_seconds
    decay = 0.5 ** (_bucket_width(rows) / halflife)
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
        "run": to_json(signal.run),  # the buckets whose evidence together made it, or None
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
