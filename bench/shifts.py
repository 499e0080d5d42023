"""Lasting changes: how long a new level alarms (volume and negative share), a feed's return.

    .venv/bin/python bench/shifts.py [--seeds S] [--json PATH]

Synthetic 5-minute Poisson counts with the daily rhythm of ``bench/rhythm.py`` (19x from
the night's trough at 02:00 UTC to the afternoon's peak at 14:00), after days of calm.
Alarms are buckets at a likelihood of 0.9999 either way (the shipped rules').

* **A lasting x2** at midnight, after 8 days: the hours from the step to its last alarm
  within a day. A change that lasts is the new normal once a CUSUM has held it for
  ``adopt_after_seconds`` (3 hours), so a busy series should settle a few hours in. A
  small series settles when its level has learned the new one (its CUSUM climbs slowly
  through the night).
* **A feed's return** after 3 weeks, then a silence of 1 to 30 days (an outage of the
  source, or a quiet brand), at 20 posts an hour: the alarming buckets in the two weeks
  after the first post back. Posts coming back after days is news; how long it stays
  news is measured.
* **A lasting rise of the negative share**, after 3 days at 10 % (binomial, buckets of
  10, 40 or 200 posts): the share becomes 20 %, 30 % or 40 % for two days; the hours
  from the step to its last alarm upwards (0.9999). The share detector adopts a change
  its CUSUM has held for 3 hours, as the volume detector does.
* **The end of a long share crisis**: 6 hours at 30 % where 10 % is usual, then calm,
  then, ``PROBE_AFTER`` hours after the crisis, an hour at 40 %: whether that new wave
  alarms (the return to the share before an adopted crisis is adopted as soon as a
  CUSUM holds it at its cap).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine, write_json  # bench/machine.py (scripts run with bench/ on sys.path)

from xwatch.detect.share import NegativeShareDetector
from xwatch.detect.volume import CountDetector
from xwatch.model import Bucket, Measure, SeriesKey

WIDTH = 300
PER_DAY = 86400 // WIDTH
PER_HOUR = 3600 // WIDTH
THRESHOLD = 0.9999
START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
KEY = SeriesKey("shifts", "", WIDTH)
CALM_DAYS = 8  # before a step
HISTORY_DAYS = 21  # before a silence
STEP_SIZES = (2.0, 20.0, 200.0)  # mean posts a bucket before the step
SILENCES = (1, 3, 7, 30)  # days without a post
RETURN_RATE = 20.0 / PER_HOUR  # posts a bucket, on average, before and after a silence
SHARE_STEPS = ((200, 0.3), (200, 0.2), (40, 0.3), (10, 0.4))  # (posts a bucket, new share)
USUAL_SHARE = 0.1
PROBE_AFTER = (1.0, 4.0)  # hours after a 6-hour share crisis that a new wave comes


def rhythm(i: int) -> float:
    hour = (i % PER_DAY) / PER_HOUR
    return 1.0 + 0.9 * math.cos((hour - 14.0) / 24.0 * 2.0 * math.pi)


def alarms(counts: Sequence[int], since: int) -> list[int]:
    """The buckets from ``since`` on whose likelihood reaches ``THRESHOLD``."""
    detector, found = CountDetector(Measure.VOLUME, WIDTH), []
    for i, count in enumerate(counts):
        start = START + timedelta(seconds=WIDTH * i)
        bucket = Bucket(KEY, start, start + timedelta(seconds=WIDTH), count, 0, 0)
        if detector.score_one(bucket).likelihood >= THRESHOLD and i >= since:
            found.append(i)
        detector.learn_one(bucket)
    return found


def step_hours(per_bucket: float, seed: int) -> float:
    """Hours from a lasting x2 to its last alarm within the day after it (0: none)."""
    rng = np.random.default_rng(seed)
    step = CALM_DAYS * PER_DAY
    rates = [per_bucket * rhythm(i) * (2.0 if i >= step else 1.0) for i in range(step + PER_DAY)]
    found = alarms([int(rng.poisson(rate)) for rate in rates], since=step)
    return (found[-1] - step + 1) / PER_HOUR if found else 0.0


def return_alarms(silent_days: int, seed: int) -> int:
    """Alarming buckets in the two weeks after a feed comes back from a silence."""
    rng = np.random.default_rng(seed)
    silence = HISTORY_DAYS * PER_DAY
    back = silence + silent_days * PER_DAY
    counts = [
        0 if silence <= i < back else int(rng.poisson(RETURN_RATE * rhythm(i)))
        for i in range(back + 14 * PER_DAY)
    ]
    return len(alarms(counts, since=back))


def share_alarms(phases: Sequence[tuple[float, float]], n: int, seed: int) -> list[float]:
    """Hours (from the end of 3 calm days at ``USUAL_SHARE``) of the buckets whose share
    reads ``THRESHOLD`` upwards, through ``phases`` of (hours, share); ``n`` posts a
    bucket, negatives binomial."""
    rng = np.random.default_rng(seed)
    detector, found = NegativeShareDetector(WIDTH), []
    shares = [USUAL_SHARE] * (3 * PER_DAY)
    for hours, share in phases:
        shares += [share] * round(hours * PER_HOUR)
    for i, share in enumerate(shares):
        start = START + timedelta(seconds=WIDTH * i)
        bucket = Bucket(
            KEY, start, start + timedelta(seconds=WIDTH), n, int(rng.binomial(n, share)), 0
        )
        signal = detector.score_one(bucket)
        detector.learn_one(bucket)
        if i >= 3 * PER_DAY and signal.direction == "up" and signal.likelihood >= THRESHOLD:
            found.append((i - 3 * PER_DAY) / PER_HOUR)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=4, help="streams per row (4)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    seeds = range(args.seeds)
    print(f"machine: {machine()}")
    print(f"{args.seeds} streams per row; 5-minute buckets; alarms at {THRESHOLD} either way\n")
    print("| a lasting x2 at midnight, posts a bucket before | hours to its last alarm |")
    print("|--:|---|")
    figures: dict[str, Any] = {"steps": [], "returns": []}
    for per_bucket in STEP_SIZES:
        hours = [step_hours(per_bucket, seed) for seed in seeds]
        print(f"| {per_bucket:g} | {' / '.join(f'{h:.1f}' for h in hours)} |", flush=True)
        figures["steps"].append({"per_bucket": per_bucket, "hours": hours})
    print("\n| a feed back after a silence of | alarming buckets in the two weeks after |")
    print("|--:|---|")
    for days in SILENCES:
        counts = [return_alarms(days, seed) for seed in seeds]
        print(f"| {days} days | {' / '.join(str(c) for c in counts)} |", flush=True)
        figures["returns"].append({"silent_days": days, "alarming_buckets": counts})
    print("\n| the negative share, 10 % then for good | posts a bucket | hours to its last alarm |")
    print("|--:|--:|---|")
    figures["share_steps"] = []
    for n, share in SHARE_STEPS:
        lasts = []
        for seed in seeds:
            found = share_alarms([(48.0, share)], n, seed)
            lasts.append(found[-1] + 1 / PER_HOUR if found else 0.0)
        print(f"| {share:.0%} | {n} | {' / '.join(f'{h:.1f}' for h in lasts)} |", flush=True)
        figures["share_steps"].append({"share": share, "per_bucket": n, "hours": lasts})
    print(
        "\n| after 6 hours at 30 % (40 posts a bucket), calm for | alarming buckets in the"
        " calm | then an hour at 40 %: alarmed |"
    )
    print("|--:|---|---|")
    figures["share_probes"] = []
    for after in PROBE_AFTER:
        phases = [(6.0, 0.3), (after, USUAL_SHARE), (1.0, 0.4)]
        calm, caught = [], []
        for seed in seeds:
            found = share_alarms(phases, 40, seed)
            calm.append(sum(1 for h in found if 6.0 <= h < 6.0 + after))
            caught.append(any(6.0 + after <= h < 7.0 + after for h in found))
        cells = " / ".join("yes" if c else "no" for c in caught)
        print(f"| {after:g} hours | {' / '.join(map(str, calm))} | {cells} |", flush=True)
        figures["share_probes"].append(
            {"calm_hours": after, "calm_alarms": calm, "alarmed": caught}
        )
    if args.json is not None:
        write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
