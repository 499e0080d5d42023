"""What the end-to-end benchmarks share: a broker, a daemon fed over MQTT, a publisher.

* ``Broker``: our own mosquitto on a free port (its queue sized for a flood), or the one
  on 127.0.0.1:1883 when there is no mosquitto binary (then a flood larger than its
  queue, 1,000 messages per client by default, loses messages and the run says so).
* ``bench_settings``: a config that watches N synthetic brands (``synthetic.py``) fed by
  the MQTT source, with the repository's rules and playbooks, the store on (in a
  temporary folder, as a live deployment has it) and no web server.
* ``warm_up``: the daemon's detectors, fed a day of buckets at the rate the publisher
  will send, so that rules can fire from the first minute (a detector stays silent for
  its first day of event time); the brands' term vocabularies, fed an hour of the
  corpus' terms (their memory is there from the start; new-term rules stay in their
  first day, as without it).
* ``Timed``: wraps each notifier; records the wall time at which the daemon calls its
  ``send``. The default inner notifier does nothing; pass another ``make_notifier`` to
  measure a real one (Slack, email, webhook) end to end.
* ``run_daemon``: the daemon in this process's event loop, a publisher in a process of
  its own (``publisher.py``), CPU time and resident memory sampled while it runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import pickle
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from synthetic import Corpus, brand_ids, config_yaml, iso

from xwatch import gc_tuning
from xwatch.alerting import Notifier
from xwatch.alerting.incidents import Notice
from xwatch.daemon import Daemon
from xwatch.detect import Detector
from xwatch.detect.terms import TermModel, TermTracker, terms_of
from xwatch.model import Bucket, SeriesKey
from xwatch.pipeline import Pipeline, default_detectors
from xwatch.rules import normalize
from xwatch.settings import Settings, load_settings
from xwatch.sources.payload import parse_payload

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # the benches use the test doubles in tests/ (a local Slack)
    sys.path.append(str(ROOT))
HOST = "127.0.0.1"
BROKER_QUEUE = 5_000_000  # mosquitto's max_queued_messages: a flood waits at the broker
CONNECT_SECONDS = 20.0
WARM_SECONDS = 86400  # a detector's warm-up (CountParams.warmup_seconds)
VOCABULARY_SECONDS = 3600  # the term models' (under a new-term rule's day of warm-up)
SAMPLE_SECONDS = 0.25  # how often progress and memory are sampled
LATENESS_SECONDS = 1  # allowed lateness in the bench config (the default is 60)
SCALES = (10, 60, 300, 900)  # 10 s buckets: alerts within seconds; the defaults as well


# --- the broker -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (from /proc), 0 when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size (VmRSS) of a process, this one by default."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Broker:
    """Our own mosquitto on a free port, or the external one on 127.0.0.1:1883."""

    def __init__(self) -> None:
        path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
        self.binary = shutil.which("mosquitto", path=path)
        self.folder = Path(tempfile.mkdtemp(prefix="xwatch-bench-broker-"))
        self.port = free_port() if self.binary else 1883
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        if self.binary:
            return f"own mosquitto on {HOST}:{self.port} (max_queued_messages {BROKER_QUEUE:,})"
        return f"external broker on {HOST}:1883 (its own queue limits)"

    def __enter__(self) -> Broker:
        if self.binary is None:
            return self
        lines = [
            f"listener {self.port} {HOST}",
            "allow_anonymous true",
            "persistence false",
            f"max_queued_messages {BROKER_QUEUE}",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to "mosquitto"
        config = self.folder / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        log = (self.folder / "mosquitto.log").open("wb")
        self.process = subprocess.Popen(
            [self.binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start: see {self.folder}/mosquitto.log")

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid) if self.process else 0.0

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


# --- the publisher ----------------------------------------------------------------------


async def start_publisher(port: int, *args: str) -> asyncio.subprocess.Process:
    """``publisher.py`` in a process of its own; ``finish_publisher`` reads its result."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH / "publisher.py"),
        "--host",
        HOST,
        "--port",
        str(port),
        *args,
        stdout=asyncio.subprocess.PIPE,
    )


async def finish_publisher(process: asyncio.subprocess.Process) -> dict[str, Any]:
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the publisher failed (exit {process.returncode})")
    result: dict[str, Any] = json.loads(out)
    return result


# --- the daemon -------------------------------------------------------------------------


def bench_settings(
    folder: Path,
    brands: int,
    port: int,
    *,
    lateness: int = LATENESS_SECONDS,
    scales: Sequence[int] = SCALES,
    extra: dict[str, Any] | None = None,
    **mqtt: object,
) -> Settings:
    """Settings for ``brands`` synthetic brands fed by the MQTT source on ``port``;
    ``extra`` top-level config keys, ``mqtt`` keys of the source (``protocol``...)."""
    source = {
        "type": "mqtt",
        "host": HOST,
        "port": port,
        "client_id": f"xwatch-bench-{os.getpid()}-{time.monotonic_ns()}",
        **mqtt,
    }
    path = folder / "config.yaml"
    path.write_text(
        config_yaml(
            brand_ids(brands),
            [source],
            ROOT,
            scales=scales,
            lateness=lateness,
            store=folder / "xwatch.sqlite3",
            extra=extra,
        ),
        "utf-8",
    )
    return load_settings(path)


class NullNotifier:
    """Takes a notice and does nothing with it."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def send(self, notice: Notice) -> None:
        return None


class Timed:
    """A notifier that records when the daemon calls ``send``, then calls the real one."""

    def __init__(self, inner: Notifier) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: list[tuple[float, Notice]] = []

    async def send(self, notice: Notice) -> None:
        self.calls.append((time.time(), notice))
        await self.inner.send(notice)


def notice_brand(notice: Notice) -> str:
    """The brand a notice is about (the one place that knows a notice's shape)."""
    return notice.incident.brand


@dataclass(frozen=True, slots=True)
class Traffic:
    """What the publisher sends, per brand: for the warm-up to learn the same rates."""

    per_brand_per_second: float
    negative_share: float  # of all posts
    topic_share: dict[str, tuple[float, float]]  # topic: (share of posts, its negative share)
    terms: tuple[frozenset[str], ...]  # the terms of each post of the sample


def measure_traffic(pipeline: Pipeline, brand: str, rate: float, sample: int = 2000) -> Traffic:
    """The negative share and each topic's share of the calm posts, as the pipeline sees
    them (its own scorer and topic matchers, on a sample of the corpus)."""
    corpus = Corpus.load()
    rng = random.Random(3)
    stamp = iso(time.time())
    payloads = [
        Corpus.fill(rng.choice(corpus.calm), b"%d" % i, stamp, brand.encode())
        for i in range(sample)
    ]
    mentions = [m for p in payloads for m in parse_payload(p, "warm-up")]
    enriched = pipeline.enrich(mentions)
    negative = sum(m.is_negative for m in enriched)
    topics: dict[str, list[int]] = {}
    for mention in enriched:
        for topic in pipeline.rules.topics_of(mention, normalize(mention.text), brand):
            counts = topics.setdefault(topic, [0, 0])
            counts[0] += 1
            counts[1] += mention.is_negative
    return Traffic(
        rate / len(pipeline.config.brands),
        negative / len(enriched),
        {t: (n / len(enriched), k / max(n, 1)) for t, (n, k) in topics.items()},
        tuple(frozenset(terms_of(normalize(m.text))) for m in enriched),
    )


def warm_up(pipeline: Pipeline, traffic: Traffic, now: float, seed: int = 5) -> int:
    """Give every series detectors that have learned a day of its traffic; return how many.

    One set per (topic, scale) learns a day of buckets (Poisson counts, binomial
    negatives) ending where the live buckets start; every brand gets a copy of it.
    """
    rng = np.random.default_rng(seed)
    learned: dict[tuple[str, int], bytes] = {}
    for key in pipeline.aggregator.series:
        template = learned.get((key.topic, key.scale_seconds))
        if template is None:
            share, negative = (1.0, traffic.negative_share)
            if key.topic:
                share, negative = traffic.topic_share.get(key.topic, (0.0, 0.0))
            mean = traffic.per_brand_per_second * share * key.scale_seconds
            template = pickle.dumps(_learned(key, mean, negative, now, rng))
            learned[(key.topic, key.scale_seconds)] = template
        pipeline.detectors[key] = pickle.loads(template)  # a copy, much faster than deepcopy
    vocabularies: dict[int, TermModel] = {}
    for tracker in pipeline.terms.values():
        model = vocabularies.get(tracker.width)
        if model is None:
            model = vocabularies[tracker.width] = _vocabulary(tracker, traffic, now, rng)
        # a copy whose terms are the same strings, as models that learned them live have
        tracker.model = dataclasses.replace(model, counts=dict(model.counts))
    return len(pipeline.aggregator.series)


def _vocabulary(
    tracker: TermTracker, traffic: Traffic, now: float, rng: np.random.Generator
) -> TermModel:
    """A term model that has learned an hour of buckets of the sample's posts."""
    model = TermModel(tracker.width, tracker.model.params)
    width = tracker.width
    last = math.floor(now / width) * width
    for start in range(last - VOCABULARY_SECONDS, last, width):
        posts = int(rng.poisson(traffic.per_brand_per_second * width))
        counts: Counter[str] = Counter()
        for index in rng.integers(0, len(traffic.terms), posts):
            counts.update(traffic.terms[index] - tracker.stop)
        model.learn(start, posts, dict(counts))
    return model


def _learned(
    key: SeriesKey, mean: float, negative: float, now: float, rng: np.random.Generator
) -> list[Detector]:
    detectors = default_detectors(key.scale_seconds)
    width = key.scale_seconds
    last = math.floor(now / width) * width
    starts = range(last - WARM_SECONDS, last, width)
    counts = rng.poisson(mean, len(starts))
    negatives = rng.binomial(counts, negative)
    for start, count, negatives_in in zip(starts, counts, negatives, strict=True):
        begin = datetime.fromtimestamp(start, UTC)
        end = begin + timedelta(seconds=width)
        bucket = Bucket(key, begin, end, int(count), int(negatives_in), 0)
        for detector in detectors:
            detector.learn_one(bucket)
    return detectors


@dataclass(slots=True)
class Run:
    """What one daemon run measured."""

    samples: list[tuple[float, int, int]] = field(default_factory=list)  # wall, ingested, RSS
    publisher: dict[str, Any] = field(default_factory=dict)
    daemon_cpu: float = 0.0
    broker_cpu: float = 0.0
    wall: float = 0.0
    notices: list[tuple[float, Notice]] = field(default_factory=list)
    series: int = 0
    late: float = 0.0
    duplicates: float = 0.0
    batches: float = 0.0  # pipeline batches (mentions / batches: the mean batch size)

    def rate_between(self, low: int, high: int) -> float:
        """Mentions/s while ``ingested`` went from ``low`` to ``high``."""
        first = next(s for s in self.samples if s[1] >= low)
        last = next((s for s in self.samples if s[1] >= high), self.samples[-1])
        return (last[1] - first[1]) / max(last[0] - first[0], 1e-9)


Done = Callable[[Daemon, dict[str, Any] | None], bool]


async def run_daemon(
    settings: Settings,
    broker: Broker,
    publisher_args: Sequence[str],
    *,
    done: Done,
    traffic_rate: float,
    make_notifier: Callable[[str], Notifier] = NullNotifier,
    limit: float = 600.0,
) -> Run:
    """Run a daemon and a publisher until ``done(daemon, publisher result or None)``.

    The detectors are warmed up for ``traffic_rate`` mentions/s over all brands first.
    """
    notifiers = {name: Timed(make_notifier(name)) for name in settings.config.notifiers}
    daemon = Daemon(settings, notifiers=dict(notifiers))
    task = asyncio.create_task(daemon.run())
    run = Run()
    try:
        await asyncio.wait_for(daemon.started.wait(), CONNECT_SECONDS)
        brand = settings.config.brands[0].id
        traffic = measure_traffic(daemon.pipeline, brand, traffic_rate)
        run.series = warm_up(daemon.pipeline, traffic, time.time())
        # as ``xwatch run`` does once loaded, its detectors restored from the store (which
        # the warm-up stands for here)
        gc_tuning.settle()
        deadline = time.monotonic() + CONNECT_SECONDS
        while not all(daemon.report.up.get(s.name) for s in daemon.sources):
            if time.monotonic() > deadline or task.done():
                raise RuntimeError("the daemon's MQTT source did not connect")
            await asyncio.sleep(0.05)
        cpu0, broker0, wall0 = time.process_time(), broker.cpu(), time.monotonic()
        publisher = await start_publisher(broker.port, *publisher_args)
        result: dict[str, Any] | None = None
        finishing = asyncio.create_task(finish_publisher(publisher))
        deadline = time.monotonic() + limit
        while not done(daemon, result):
            if task.done():
                task.result()
                raise RuntimeError("the daemon stopped by itself")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no end after {limit:.0f}s: {daemon.ingested} ingested")
            if finishing.done() and result is None:
                result = finishing.result()
            run.samples.append((time.time(), daemon.ingested, rss_bytes()))
            await asyncio.sleep(SAMPLE_SECONDS)
        run.samples.append((time.time(), daemon.ingested, rss_bytes()))
        run.daemon_cpu = time.process_time() - cpu0
        run.broker_cpu = broker.cpu() - broker0
        run.wall = time.monotonic() - wall0
        run.publisher = result if result is not None else await finishing
        await asyncio.sleep(0.5)  # notices of the last buckets
        registry = daemon.registry
        run.late = registry.get_sample_value("xwatch_mentions_late_total") or 0.0
        run.batches = registry.get_sample_value("xwatch_pipeline_batch_seconds_count") or 0.0
        run.duplicates = sum(
            daemon.registry.get_sample_value("xwatch_mentions_duplicate_total", {"source": s})
            or 0.0
            for s in (source.name for source in daemon.sources)
        )
    finally:
        daemon.stop.set()
        await asyncio.wait_for(task, 60)
    run.notices = sorted(call for timed in notifiers.values() for call in timed.calls)
    return run


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (nearest rank), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]
