"""Cost of the detectors: time per bucket and memory per series.

    .venv/bin/python bench/cost.py [--quick] [--series N] [--json PATH]

Time: microseconds per bucket (``score_one`` then ``learn_one``, as the pipeline calls
them) for each detector alone and for the whole set a pipeline series has
(``xwatch.pipeline.default_detectors``: volume, negative share, negative volume), on
synthetic 5-minute counts: Poisson around a daily rhythm at a mean of 5, 50 and 500
mentions per bucket, negatives binomial at a share of 0.12. Fresh detectors each run;
the best of 3 runs is kept. The buckets are built before the clock starts. The volume
detector is also timed without its calibration on the series' own past (``calibrate``
off), in the same run, for the calibration's cost.

Memory: N series (a ``SeriesKey`` and its three detectors in a dict, as the pipeline
keeps them), each fed one day of 5-minute buckets at its own rate (log-uniform between
2 and 200 per bucket). Reported: the growth of the resident set (VmRSS, from
/proc/self/status) per series, from the start and between N/2 and N series (the
marginal cost, free of one-off allocations), and the bytes tracemalloc counts per
series on a further batch (just created, and after a day). Detector state may keep
growing after a day (new objects as counts and factors change), so a few series are
also fed 30 days; the calibration's share of the state (fixed-size: per count detector
two ``OnsetTail``s and the calibrated CUSUMs) is reported after a day and after 30
days. The projection is for 10,000 series, per-series cost x 10,000, with and without
the process's baseline (interpreter and libraries). Feeding 10,000 series a day takes
2 to 4 minutes on a small machine, so the default N is 1,000 (``--series 10000`` to do
it all); memory per series is the same at any N (compare the two RSS figures).

Figures depend on the machine: compare them as ratios, and note the machine with them.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine, write_json  # bench/machine.py (scripts run with bench/ on sys.path)

from xwatch.detect import Detector
from xwatch.detect.share import NegativeShareDetector
from xwatch.detect.tails import OnsetTail
from xwatch.detect.volume import CountDetector, CountParams
from xwatch.model import Bucket, Measure, SeriesKey
from xwatch.pipeline import default_detectors

WIDTH = 300
PER_DAY = 86400 // WIDTH
SHARE = 0.12
RATES = (5.0, 50.0, 500.0)
TARGET_SERIES = 10_000
TARGET_BYTES = 500 * 1024 * 1024
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
SEED = 7
MIB = 1024 * 1024

Counts = tuple[list[int], list[int]]  # mentions and negatives per bucket


def synthetic(mean: float, buckets: int, rng: np.random.Generator) -> Counts:
    """Poisson counts around a daily rhythm (quiet nights, busy afternoons), a bit of weekly."""
    t = np.arange(buckets) * WIDTH / 86400.0  # days since the epoch
    daily = 1.0 + 0.6 * np.sin(2 * np.pi * (t - 0.375))  # low around 3:00, high around 15:00
    weekly = np.where(np.floor(t) % 7 >= 5, 0.8, 1.05)
    counts = rng.poisson(mean * daily * weekly)
    negatives = rng.binomial(counts, SHARE)
    return [int(c) for c in counts], [int(k) for k in negatives]


def make_buckets(key: SeriesKey, counts: Counts, starts: Sequence[datetime]) -> list[Bucket]:
    step = timedelta(seconds=WIDTH)
    return [
        Bucket(key, start, start + step, n, k, 0)
        for start, n, k in zip(starts, counts[0], counts[1], strict=False)
    ]


def feed(detectors: Sequence[Detector], buckets: Sequence[Bucket]) -> None:
    for bucket in buckets:
        for detector in detectors:
            detector.score_one(bucket)
            detector.learn_one(bucket)


# -- time ------------------------------------------------------------------------------


def seconds_to_feed(make: Callable[[], list[Detector]], buckets: Sequence[Bucket]) -> float:
    detectors = make()
    start = time.perf_counter()
    feed(detectors, buckets)
    return time.perf_counter() - start


SETS: dict[str, Callable[[], list[Detector]]] = {
    "CountDetector (volume)": lambda: [CountDetector(Measure.VOLUME, WIDTH)],
    "CountDetector (volume, uncalibrated)": lambda: [
        CountDetector(Measure.VOLUME, WIDTH, CountParams(calibrate=False))
    ],
    "NegativeShareDetector": lambda: [NegativeShareDetector(WIDTH)],
    "CountDetector (negative volume)": lambda: [CountDetector(Measure.NEGATIVE_VOLUME, WIDTH)],
    "per series (default_detectors: all 3)": lambda: default_detectors(WIDTH),
}


def measure_time(buckets_per_run: int, repeat: int) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng([SEED, 0])
    starts = [EPOCH + timedelta(seconds=WIDTH * i) for i in range(buckets_per_run)]
    table: dict[str, dict[str, float]] = {name: {} for name in SETS}
    for mean in RATES:
        buckets = make_buckets(SeriesKey("bench"), synthetic(mean, buckets_per_run, rng), starts)
        for make in SETS.values():  # warm up (first calls into scipy, caches)
            seconds_to_feed(make, buckets[:PER_DAY])
        best = dict.fromkeys(SETS, math.inf)
        for _ in range(repeat):  # round robin, so that a busy moment does not spoil one cell
            for name, make in SETS.items():
                best[name] = min(best[name], seconds_to_feed(make, buckets))
        for name, seconds in best.items():
            table[name][f"{mean:g}"] = seconds / len(buckets) * 1e6
    return table


# -- memory ----------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class Population:
    """Series and their detectors, as the pipeline keeps them, fed from a pool of days."""

    def __init__(self, days: int, pool_size: int, rng: np.random.Generator) -> None:
        self.buckets = days * PER_DAY
        self.starts = [EPOCH + timedelta(seconds=WIDTH * i) for i in range(self.buckets)]
        means = np.exp(rng.uniform(math.log(2.0), math.log(200.0), pool_size))
        self.pool = [synthetic(float(m), self.buckets, rng) for m in means]
        self.series: dict[SeriesKey, list[Detector]] = {}

    def add(self, first: int, count: int, *, fed: bool = True) -> None:
        for i in range(first, first + count):
            key = SeriesKey(f"brand-{i:06d}")
            detectors = default_detectors(WIDTH)
            self.series[key] = detectors
            if fed:
                feed(detectors, make_buckets(key, self.pool[i % len(self.pool)], self.starts))


def traced_per_series(days: int, count: int, first: int, rng: np.random.Generator) -> float:
    """Bytes tracemalloc counts per series for ``count`` series fed ``days`` days."""
    population = Population(max(days, 1), 8, rng)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    population.add(first, count, fed=days > 0)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return used / count


def calibration_bytes(tail: OnsetTail) -> int:
    """Bytes of one detector's calibration state: its lists and the numbers only they hold
    (CPython shares small ints and a list's repeated zeros)."""
    size = sys.getsizeof(tail)
    for values in (tail.reached, tail.excess):
        size += sys.getsizeof(values)
        unique = {id(v): v for v in values if not (isinstance(v, int) and -5 <= v <= 256)}
        size += sum(sys.getsizeof(v) for v in unique.values())
    return size


def cusum_bytes(detector: CountDetector) -> int:
    """Bytes of a count detector's calibrated CUSUMs (two short lists of floats)."""
    return sum(
        sys.getsizeof(values) + sum(sys.getsizeof(v) for v in values)
        for values in (detector.calibrated_up, detector.calibrated_down)
    )


def calibration_per_series(days: int, rng: np.random.Generator) -> float:
    """Bytes of the calibration state per series (per count detector: two ``OnsetTail``s,
    episode heights and bucket surprises, and the calibrated CUSUMs), after ``days``
    days: bounded, whatever the length of the stream."""
    population = Population(days, 4, rng)
    population.add(0, 4)
    detectors = [d for ds in population.series.values() for d in ds if isinstance(d, CountDetector)]
    total = sum(
        calibration_bytes(d.onsets) + calibration_bytes(d.bucket_tails) + cusum_bytes(d)
        for d in detectors
    )
    return total / len(population.series)


def measure_memory(series: int, traced: int, aged: int) -> dict[str, Any]:
    rng = np.random.default_rng([SEED, 1])
    population = Population(1, 64, rng)
    gc.collect()
    baseline = rss_bytes()
    half = series // 2
    started = time.perf_counter()
    population.add(0, half)
    gc.collect()
    middle = rss_bytes()
    population.add(half, series - half)
    gc.collect()
    after = rss_bytes()
    feeding = time.perf_counter() - started
    result: dict[str, Any] = {
        "series": series,
        "buckets_per_series": population.buckets,
        "feeding_seconds": feeding,
        "rss_baseline_bytes": baseline,
        "rss_after_bytes": after,
        "rss_per_series": (after - baseline) / series,
        "rss_marginal_per_series": (after - middle) / (series - half),
        "traced_series": traced,
        "traced_per_series_created": traced_per_series(0, traced, series, rng),
        "traced_per_series_day": traced_per_series(1, traced, series + traced, rng),
        "aged_series": aged,
        "traced_per_series_30_days": traced_per_series(30, aged, series + 2 * traced, rng),
        "calibration_per_series_day": calibration_per_series(1, rng),
        "calibration_per_series_30_days": calibration_per_series(30, rng),
    }
    del population
    return result


# -- report ----------------------------------------------------------------------------


def print_report(
    times: dict[str, dict[str, float]],
    memory: dict[str, Any],
    buckets_per_run: int,
    repeat: int,
    elapsed: float,
) -> None:
    print(f"machine: {machine()}; {elapsed:.1f} s")
    print()
    print(
        f"Time per bucket, score_one + learn_one (µs; {buckets_per_run} buckets of 5 min, "
        f"best of {repeat}), by mean mentions per bucket:"
    )
    print()
    print("| detector | " + " | ".join(f"mean {r:g}" for r in RATES) + " |")
    print("|---|" + "--:|" * len(RATES))
    for name, row in times.items():
        print(f"| {name} | " + " | ".join(f"{row[f'{r:g}']:.1f}" for r in RATES) + " |")
    print()
    m = memory
    print(
        f"Memory per series (3 detectors + key, as the pipeline holds them): {m['series']:,} "
        f"series fed {m['buckets_per_series']} buckets (a day) each in "
        f"{m['feeding_seconds']:.1f} s; tracemalloc on {m['traced_series']:,} more series, "
        f"and on {m['aged_series']} series fed 30 days:"
    )
    print()
    print(f"| measure | bytes / series | {TARGET_SERIES:,} series |")
    print("|---|--:|--:|")
    rows = [
        ("RSS growth / series (VmRSS, from the start)", m["rss_per_series"]),
        ("RSS growth / series (VmRSS, marginal: N/2 → N)", m["rss_marginal_per_series"]),
        ("tracemalloc: just created", m["traced_per_series_created"]),
        ("tracemalloc: after a day", m["traced_per_series_day"]),
        ("tracemalloc: after 30 days", m["traced_per_series_30_days"]),
    ]
    for label, per in rows:
        print(f"| {label} | {per:,.0f} | {per * TARGET_SERIES / MIB:,.1f} MiB |")
    print(
        f"| of which the calibration (2 count detectors' tails and CUSUMs): after a day | "
        f"{m['calibration_per_series_day']:,.0f} | "
        f"{m['calibration_per_series_day'] * TARGET_SERIES / MIB:,.1f} MiB |"
    )
    print(
        f"| of which the calibration: after 30 days (bounded) | "
        f"{m['calibration_per_series_30_days']:,.0f} | "
        f"{m['calibration_per_series_30_days'] * TARGET_SERIES / MIB:,.1f} MiB |"
    )
    largest = max(per for _, per in rows)
    total = m["rss_baseline_bytes"] + largest * TARGET_SERIES
    print()
    print(
        f"process baseline (interpreter, numpy, scipy, xwatch): "
        f"{m['rss_baseline_bytes'] / MIB:.0f} MiB RSS; projected process for "
        f"{TARGET_SERIES:,} series at the largest figure above: {total / MIB:,.0f} MiB "
        f"(target in the issue: {TARGET_SERIES:,} series under {TARGET_BYTES / MIB:.0f} MB; "
        "detector state only: buckets being aggregated and alert state come on top)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smaller version (about 10 s)")
    parser.add_argument("--series", type=int, default=None, help="series fed a day (1,000)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    repeat = 3
    buckets_per_run = 2 * PER_DAY if args.quick else 14 * PER_DAY
    series = args.series or (200 if args.quick else 1_000)
    traced = 20 if args.quick else 100  # tracemalloc slows feeding about 6x
    aged = 1 if args.quick else 3

    began = time.perf_counter()
    times = measure_time(buckets_per_run, repeat)
    memory = measure_memory(max(series, 2), traced, aged)
    elapsed = time.perf_counter() - began
    print_report(times, memory, buckets_per_run, repeat, elapsed)

    if args.json is not None:
        document = {
            "benchmark": "cost",
            "machine": machine(),
            "elapsed_seconds": elapsed,
            "time": {
                "unit": "microseconds per bucket (score_one + learn_one)",
                "buckets_per_run": buckets_per_run,
                "repeat": repeat,
                "by_detector_and_mean_count": times,
            },
            "memory": {
                **memory,
                "projection_series": TARGET_SERIES,
                "target_bytes": TARGET_BYTES,
            },
        }
        write_json(args.json, document)


if __name__ == "__main__":
    main()
