"""Resident memory of the daemon over a soak at a steady rate, with 10,000 active series.

    .venv/bin/python bench/memory.py [--soak-minutes M] [--rate R] [--series N] [--json PATH]
    .venv/bin/python bench/memory.py --soak-minutes 30 --warm-seconds 990
    .venv/bin/python bench/memory.py --soak-minutes 5 --warm-seconds 300 --heap-every 20

The daemon (in this process) is fed over MQTT by a publisher in a process of its own
(``rig.py``, ``publisher.py``) at ``--rate`` posts per second, spread evenly over enough
brands that the pipeline has at least ``--series`` series (brand and rule topics, at
every scale), every one with detectors warmed up on a day of its traffic, so every
series is active from the start, and every brand's term vocabulary on an hour of it
(``rig.warm_up``). The store on (in a temporary folder), notifiers that do nothing.

What is measured: the resident set size (VmRSS) of this process, sampled 4 times a
second. A warm-up (``--warm-seconds``) comes first, while the bounded structures fill:
the open buckets (a bucket stays open for its width plus the allowed lateness, and
holds its authors, up to the most a rule asks for, and its terms), each brand series'
history ring (made when its first bucket closes), the deduplicator's ids (its capacity is set to
what the warm-up brings, ``--dedup-capacity`` to choose: at the default 200,000 ids and
1,000 posts/s they take over 3 minutes to fill). With the default config (60, 300 and
900 s buckets, 60 s of lateness: the default ``--scales``, ``--lateness``) the largest
buckets fill for 16 minutes: the short run's 90 s warm-up covers the 1-minute buckets
only, so its growth includes the others filling; the full run warms up for 16.5 minutes
(``--warm-seconds 990``). Then the soak: the RSS at its start and at its end (medians of
10 s), the largest, and the slope (least squares, MiB per hour). "Flat" means the end
within 10 % of the start.

Where the memory goes (to attribute a growth to a structure, not guess):

* ``--heap-every S``: every S seconds, cheaply, the RSS split into pymalloc's arenas and
  the bytes of its live blocks, glibc's heap (in use, free, mmapped), the objects the
  collector tracks; at the end, the RSS after ``malloc_trim`` (what glibc held free).
* ``--census``: at the soak's start and end, the deep size of each part of the daemon
  (term models, open term buckets, detectors, history, aggregator, deduplicator...) and
  the objects by type (blocks the loop a few seconds each: a diagnosis, not a figure).
* ``--checkpoint-seconds S``: the store's checkpoint interval (a run without checkpoints
  shows what their transient memory does to the RSS).

The garbage collector over the soak, too (``CollectorWatch``, on ``gc.callbacks``): its
collections of each generation, the time it held the event loop (seconds a minute),
and its longest pause, a full collection's: it walks every object the collector tracks
and has not frozen (``xwatch.gc_tuning``).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from machine import machine, write_json  # bench/machine.py (scripts run with bench/ on sys.path)
from prometheus_client import CollectorRegistry
from rig import Broker, bench_settings, rss_bytes, run_daemon

from xwatch.daemon import Daemon
from xwatch.metrics import Metrics
from xwatch.pipeline import Pipeline
from xwatch.sentiment.trained import router_from_config

MIB = 1024 * 1024
FLAT = 0.10  # the target: within 10 %
WINDOW = 10.0  # seconds of samples for the start and end figures


def series_per_brand(folder: Path, port: int, scales: tuple[int, ...]) -> int:
    """How many series one brand has with the repository's rules (brand + topics, x scales)."""
    settings = bench_settings(folder, 1, port, scales=scales)
    config = settings.config
    pipeline = Pipeline(
        config,
        settings.rules,
        settings.playbooks,
        router_from_config(config),
        Metrics(CollectorRegistry()),
    )
    return len(pipeline.aggregator.series)


class CollectorWatch:
    """Times each garbage collection (a ``gc.callbacks`` entry): when it ended, its
    generation and how long it took."""

    def __init__(self) -> None:
        self.started = 0.0
        self.collections: list[tuple[float, int, float]] = []  # (ended, generation, seconds)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self.started = now
        else:
            self.collections.append((time.monotonic(), info["generation"], now - self.started))

    def summary(self, start: float, end: float) -> dict[str, Any]:
        """Over [start, end] (monotonic seconds): collections by generation, seconds a
        minute in the collector, the longest pause."""
        within = [(g, took) for at, g, took in self.collections if start <= at <= end]
        minutes = max(end - start, 1e-9) / 60
        return {
            "collections": [sum(1 for g, _ in within if g == gen) for gen in range(3)],
            "seconds_per_minute": sum(took for _, took in within) / minutes,
            "longest_pause_seconds": max((took for _, took in within), default=0.0),
        }


async def soak(
    broker: Broker,
    brands: int,
    args: argparse.Namespace,
    scales: tuple[int, ...],
    warm: float,
    dedup: int,
) -> dict[str, Any]:
    rate, soak_seconds = args.rate, args.soak_minutes * 60
    with tempfile.TemporaryDirectory() as folder:
        settings = bench_settings(
            Path(folder),
            brands,
            broker.port,
            lateness=args.lateness,
            scales=scales,
            extra={"dedup_capacity": dedup, **_store(Path(folder), args.checkpoint_seconds)},
        )
        total = warm + soak_seconds

        censuses: list[dict[str, Any]] = []
        heaps: list[dict[str, Any]] = []
        began = [0.0]

        def done(daemon: Daemon, publisher: dict[str, Any] | None) -> bool:
            if args.census:
                now = time.monotonic()
                if not began[0]:
                    began[0] = now
                due = warm + len(censuses) * soak_seconds  # at the soak's start, then its end
                if len(censuses) < 2 and now - began[0] >= due - (5.0 if censuses else 0.0):
                    censuses.append(census(daemon, now - began[0]))
                    print(json.dumps(censuses[-1]), flush=True)
            if args.heap_every:
                now = time.monotonic()
                began[0] = began[0] or now
                if not heaps or now - began[0] >= heaps[-1]["at_seconds"] + args.heap_every:
                    heaps.append({"at_seconds": round(now - began[0], 1), **heap()})
                    print(json.dumps(heaps[-1]), flush=True)
                if publisher is not None:  # the end: how much of the RSS glibc holds free
                    trimmed = {"at_seconds": round(now - began[0], 1), **heap()}
                    trimmed["rss_after_malloc_trim_bytes"] = malloc_trim()
                    heaps.append(trimmed)
                    print(json.dumps(trimmed), flush=True)
            return publisher is not None

        publish = ["--brands", str(brands), "--rate", f"{rate:.1f}", "--seconds", str(total)]
        watch = CollectorWatch()
        gc.callbacks.append(watch)
        try:
            run = await run_daemon(
                settings, broker, publish, done=done, traffic_rate=rate, limit=total + 120
            )
        finally:
            gc.callbacks.remove(watch)
    start = run.samples[0][0] + warm
    # the samples' times are wall clock, the collections' monotonic: the soak's window
    # in monotonic seconds, counted back from the last sample
    offset = time.time() - time.monotonic()
    collector = watch.summary(start - offset, run.samples[-1][0] - offset)
    soaked = [(t, rss) for t, _, rss in run.samples if t >= start]
    first = statistics.median(rss for t, rss in soaked if t < soaked[0][0] + WINDOW)
    last = statistics.median(rss for t, rss in soaked if t >= soaked[-1][0] - WINDOW)
    return {
        "brands": brands,
        "series": run.series,
        "rate": rate,
        "achieved_rate": run.publisher["background"] / max(soak_seconds + warm, 1e-9),
        "ingested": run.samples[-1][1],
        "warm_seconds": warm,
        "scales": list(scales),
        "lateness": args.lateness,
        "soak_seconds": soak_seconds,
        "dedup_capacity": dedup,
        "checkpoint_seconds": settings.config.store.checkpoint_interval_seconds,
        "rss_start_bytes": first,
        "rss_end_bytes": last,
        "rss_max_bytes": max(rss for _, rss in soaked),
        "rss_idle_bytes": run.samples[0][2],  # detectors warm, no post yet
        "growth": last / first - 1.0,
        "slope_mib_per_hour": _slope(soaked) * 3600 / MIB,
        "late": run.late,
        "daemon_cpu_share": run.daemon_cpu / max(run.wall, 1e-9),
        "collector": collector,
        **({"census": censuses} if censuses else {}),
        **({"heap": heaps} if heaps else {}),
    }


def _store(folder: Path, checkpoint_seconds: float | None) -> dict[str, Any]:
    """The store's config when ``--checkpoint-seconds`` sets its interval (else none:
    ``bench_settings``' own, the config's default interval)."""
    if checkpoint_seconds is None:
        return {}
    store = {"enabled": True, "path": str(folder / "xwatch.sqlite3")}
    return {"store": {**store, "checkpoint_interval_seconds": checkpoint_seconds}}


def census(daemon: Daemon, at: float) -> dict[str, Any]:
    """Where the daemon's memory is: the deep size of each of its parts (an object counted
    once, under the first part that reaches it), the sizes of the bounded structures, and
    the number of objects of each type the garbage collector tracks. Blocks the loop for
    a few seconds: only with ``--census``, at the soak's start and end."""
    began = time.monotonic()
    pipeline = daemon.pipeline
    parts: dict[str, object] = {
        "term_models": [t.model for t in pipeline.terms.values()],
        "term_open": [t.open for t in pipeline.terms.values()],
        "detectors": pipeline.detectors,
        "history": pipeline.history,
        "aggregator": pipeline.aggregator,
        "dedup": pipeline.dedup,
        "pipeline_rest": pipeline,
        "daemon_rest": daemon,
    }
    seen: set[int] = {id(parts)}
    sizes = {}
    for name, root in parts.items():
        sizes[name] = _deep_size(root, seen)
    models = [t.model for t in pipeline.terms.values()]
    strings = {id(term) for m in models for term in m.counts}
    kinds = Counter(type(o).__name__ for o in gc.get_objects())
    return {
        "at_seconds": round(at, 1),
        "census_seconds": round(time.monotonic() - began, 1),
        "rss_bytes": rss_bytes(),
        "deep_bytes": sizes,
        "trackers": len(pipeline.terms),
        "term_entries": sum(len(m.counts) for m in models),
        "term_strings_distinct_objects": len(strings),
        "term_entries_max_per_tracker": max((len(m.counts) for m in models), default=0),
        "open_term_buckets": sum(len(t.open) for t in pipeline.terms.values()),
        "dedup_ids": len(pipeline.dedup),
        "detector_series": len(pipeline.detectors),
        "gc_objects": dict(kinds.most_common(25)),
    }


_MALLINFO2 = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2.split()]


def heap() -> dict[str, Any]:
    """Where the resident memory is, cheaply (milliseconds): the process's anonymous and
    file-backed pages (``smaps_rollup``), glibc's heap (``mallinfo2``: in use and free in
    its arenas, and mmapped blocks), pymalloc's arenas and the bytes of its live blocks
    (``sys._debugmallocstats``), the objects the collector tracks, the threads."""
    rollup = {
        line.split(":")[0]: int(line.split()[1]) * 1024
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]
        if line.split()[-1] == "kB"
    }
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    pymalloc = _pymalloc()
    return {
        "rss_bytes": rollup.get("Rss", 0),
        "anonymous_bytes": rollup.get("Anonymous", 0),
        "file_bytes": rollup.get("Pss_File", 0),
        "shmem_bytes": rollup.get("Pss_Shmem", 0),
        "malloc_in_use_bytes": info.uordblks,
        "malloc_free_bytes": info.fordblks,
        "malloc_arena_bytes": info.arena,
        "malloc_mmapped_bytes": info.hblkhd,
        **pymalloc,
        "gc_objects": len(gc.get_objects()),
        "threads": threading.active_count(),
    }


def malloc_trim() -> int:
    """Have glibc give back the free pages of all its arenas; the RSS after it."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_bytes()


def _pymalloc() -> dict[str, int]:
    """pymalloc's arenas and live block bytes, read from ``sys._debugmallocstats``."""
    with tempfile.TemporaryFile("w+") as out:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read()
    found = {}
    for key, label in (
        ("pymalloc_arenas", "# arenas allocated current"),
        ("pymalloc_block_bytes", "# bytes in allocated blocks"),
        ("pymalloc_free_bytes", "# bytes in available blocks"),
        ("pymalloc_total_bytes", "Total"),
    ):
        for line in text.splitlines():
            if line.startswith(label):
                found[key] = int(line.split("=")[-1].replace(",", "").strip())
                break
    return found


def _deep_size(root: object, seen: set[int]) -> int:
    """Bytes of ``root`` and all it reaches that ``seen`` does not hold yet (then it does)."""
    total, stack = 0, [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type | type(sys)):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def _slope(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time, bytes per second."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_r = sum(r for _, r in points) / n
    num = sum((t - mean_t) * (r - mean_r) for t, r in points)
    den = sum((t - mean_t) ** 2 for t, _ in points)
    return num / den if den else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--soak-minutes", type=float, default=2.0)
    parser.add_argument("--warm-seconds", type=float, default=90.0)
    parser.add_argument("--scales", default="60,300,900", help="bucket widths, seconds")
    parser.add_argument("--lateness", type=int, default=60, help="allowed lateness, seconds")
    parser.add_argument("--rate", type=float, default=1000.0, help="posts per second")
    parser.add_argument("--series", type=int, default=10_000, help="active series at least")
    parser.add_argument(
        "--dedup-capacity", type=int, help="ids remembered (default: what the warm-up brings)"
    )
    parser.add_argument("--json", type=Path, help="write the figures there")
    parser.add_argument(
        "--checkpoint-seconds",
        type=float,
        help="the store's checkpoint interval, wall seconds (default: the config's)",
    )
    parser.add_argument(
        "--heap-every",
        type=float,
        help="every so many seconds, where the resident memory is (heap, pymalloc: cheap)",
    )
    parser.add_argument(
        "--census",
        action="store_true",
        help="at the soak's start and end, where the memory is (by part, by type)",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    scales = tuple(sorted(int(s) for s in args.scales.split(",")))
    warm = args.warm_seconds
    dedup = args.dedup_capacity or max(1000, int(args.rate * warm * 0.8))
    with Broker() as broker, tempfile.TemporaryDirectory() as folder:
        brands = math.ceil(args.series / series_per_brand(Path(folder), broker.port, scales))
        result = asyncio.run(soak(broker, brands, args, scales, warm, dedup))
    results = {"benchmark": "memory", "machine": machine(), "target_growth": FLAT, **result}
    print(
        f"\n{result['series']:,} series ({brands} brands), {result['achieved_rate']:,.0f} "
        f"posts/s for {args.soak_minutes:g} min after a {warm:g} s warm-up "
        f"(scales {args.scales} s, lateness {args.lateness} s): "
        f"RSS {result['rss_start_bytes'] / MIB:,.1f} -> {result['rss_end_bytes'] / MIB:,.1f} MiB "
        f"({result['growth']:+.1%}; max {result['rss_max_bytes'] / MIB:,.1f} MiB, slope "
        f"{result['slope_mib_per_hour']:+.1f} MiB/h; before the first post "
        f"{result['rss_idle_bytes'] / MIB:,.1f} MiB)"
    )
    collector = result["collector"]
    young, middle, full = collector["collections"]
    print(
        f"garbage collector over the soak: {full} full collections ({middle} of the middle "
        f"generation, {young} young), {collector['seconds_per_minute']:.2f} s a minute, "
        f"longest pause {collector['longest_pause_seconds']:.2f} s"
    )
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
