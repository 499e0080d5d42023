"""The volume detector's calibration after a series changes for good: does it forget?

    .venv/bin/python bench/regime.py [--weeks W] [--seeds S] [--json PATH]

The count detector calibrates its surprise on the series' own past (``CountDetector``:
a surprise the series has often shown is discounted). That past fades with a half-life
(``CountParams.calibration_halflife_seconds``). This measures what the fading buys when
a series changes regime, against the same detector whose past never fades, in the same
run. Synthetic 5-minute counts, Poisson at ``MEAN`` a bucket; "bursty": in about one
bucket in ``BURST_EVERY`` a burst starts, 1 to 6 buckets at 3x to 10x. Two streams, each
two phases of ``--weeks`` (default 13, a quarter):

* bursty, then calm: 2-hour crises at x3 (``CRISIS_FACTOR``) injected in the last four
  weeks (``ONSETS`` per seed, each on a copy of the detector as it stood at the onset):
  the buckets until the first alarm at 0.9999 upwards (the shipped rules' threshold),
  median, and the share missed in the 2 hours; and the same crises on a series that was
  calm throughout, for reference;
* calm, then bursty: alarm episodes (runs of buckets at 0.9999 upwards) per week in
  the last four weeks. The bursts are this series' normal now; about
  ``7 * 288 / BURST_EVERY`` start each week.
"""

from __future__ import annotations

import argparse
import copy
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine, write_json  # bench/machine.py (scripts run with bench/ on sys.path)

from xwatch.detect.volume import CountDetector, CountParams
from xwatch.model import Bucket, Measure, SeriesKey

WIDTH = 300
PER_WEEK = 7 * 86400 // WIDTH
MEAN = 20.0
BURST_EVERY = 150
CRISIS_FACTOR = 3.0
CRISIS_BUCKETS = 24
ONSETS = 30
THRESHOLD = 0.9999
START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
KEY = SeriesKey("regime", "", WIDTH)
DETECTORS = {
    "fades (shipped)": CountParams(),
    "never fades": CountParams(calibration_halflife_seconds=math.inf),
}


def calm(buckets: int, rng: np.random.Generator) -> list[int]:
    return [int(c) for c in rng.poisson(MEAN, buckets)]


def bursty(buckets: int, rng: np.random.Generator) -> list[int]:
    counts = calm(buckets, rng)
    i = 0
    while i < buckets:
        if rng.random() < 1 / BURST_EVERY:
            length, factor = int(rng.integers(1, 7)), float(rng.uniform(3, 10))
            for j in range(i, min(i + length, buckets)):
                counts[j] = int(rng.poisson(MEAN * factor))
            i += length
        else:
            i += 1
    return counts


def bucket(i: int, count: int) -> Bucket:
    start = START + timedelta(seconds=WIDTH * i)
    return Bucket(KEY, start, start + timedelta(seconds=WIDTH), count, 0, 0)


def episodes_per_week(params: CountParams, counts: Sequence[int], first: int) -> float:
    """Runs of buckets alarming upwards at ``THRESHOLD``, from bucket ``first`` on."""
    detector = CountDetector(Measure.VOLUME, WIDTH, params)
    runs, alarming = 0, False
    for i, count in enumerate(counts):
        b = bucket(i, count)
        if i >= first:
            signal = detector.score_one(b)
            now = signal.likelihood >= THRESHOLD and signal.direction == "up"
            runs += now and not alarming
            alarming = now
        detector.learn_one(b)
    return runs / ((len(counts) - first) / PER_WEEK)


def delays(params: CountParams, background: Sequence[int], onsets: Sequence[int]) -> list[float]:
    """Buckets from each onset to the first alarm (inf: none in the crisis's 2 hours)."""
    detector = CountDetector(Measure.VOLUME, WIDTH, params)
    out, learned = [], 0
    for onset in sorted(onsets):
        for i in range(learned, onset):
            detector.learn_one(bucket(i, background[i]))
        learned = onset
        crisis = copy.deepcopy(detector)
        rng = np.random.default_rng(onset)
        delay = math.inf
        for j in range(CRISIS_BUCKETS):
            b = bucket(onset + j, int(rng.poisson(CRISIS_FACTOR * MEAN)))
            signal = crisis.score_one(b)
            crisis.learn_one(b)
            if signal.likelihood >= THRESHOLD and signal.direction == "up":
                delay = j + 1
                break
        out.append(delay)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weeks", type=int, default=13, help="weeks in each phase")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the figures there")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    phase = args.weeks * PER_WEEK
    last = 2 * phase - 4 * PER_WEEK  # the last four weeks are measured
    pooled: dict[str, dict[str, list[float]]] = {
        name: {"delays": [], "calm_delays": [], "episodes": []} for name in DETECTORS
    }
    for seed in range(1, args.seeds + 1):
        rng = np.random.default_rng(seed)
        bursty_then_calm = bursty(phase, rng) + calm(phase, rng)
        calm_then_bursty = calm(phase, rng) + bursty(phase, rng)
        calm_throughout = calm(2 * phase, rng)
        onsets = sorted(
            int(i) for i in rng.choice(np.arange(last, 2 * phase - CRISIS_BUCKETS), ONSETS, False)
        )
        for name, params in DETECTORS.items():
            figures = pooled[name]
            figures["delays"] += delays(params, bursty_then_calm, onsets)
            figures["calm_delays"] += delays(params, calm_throughout, onsets)
            figures["episodes"].append(episodes_per_week(params, calm_then_bursty, last))
    results: dict[str, Any] = {
        "benchmark": "regime",
        "machine": machine(),
        "weeks_per_phase": args.weeks,
        "seeds": args.seeds,
        "detectors": {},
    }
    print(
        f"\n{args.weeks} weeks a phase, {args.seeds} seeds, {ONSETS} crises of x{CRISIS_FACTOR:g} "
        f"each; alarms at {THRESHOLD} upwards; bursts start about "
        f"{PER_WEEK / BURST_EVERY:.0f} times a week\n"
    )
    print(
        "| calibration | calm after a bursty phase: x3 delay, median (missed) "
        "| calm throughout: x3 delay, median (missed) "
        "| bursty after a calm phase: alarm episodes a week |"
    )
    print("|---|--:|--:|--:|")
    for name, figures in pooled.items():
        row = {
            "median_delay": float(np.median(figures["delays"])),
            "missed": float(np.mean(np.isinf(figures["delays"]))),
            "calm_median_delay": float(np.median(figures["calm_delays"])),
            "calm_missed": float(np.mean(np.isinf(figures["calm_delays"]))),
            "episodes_per_week": float(np.mean(figures["episodes"])),
        }
        results["detectors"][name] = row
        print(
            f"| {name} | {row['median_delay']:g} ({row['missed']:.0%}) "
            f"| {row['calm_median_delay']:g} ({row['calm_missed']:.0%}) "
            f"| {row['episodes_per_week']:.2f} |"
        )
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
