"""False alarms of the volume detector on steady traffic with a daily and weekly rhythm.

    .venv/bin/python bench/rhythm.py [--weeks W] [--seeds S] [--json PATH]

The streams are synthetic and stationary: Poisson counts whose rate follows a daily
rhythm (``AMPLITUDE``: 19x from the night's trough at 02:00 UTC to the afternoon's peak
at 14:00) and, in half of them, weekends at 0.6x the weekdays. Nothing in them is news,
so every alarm is a false one. The sizes run from 3 posts a day (a topic, or a small
brand's negative posts: 0.01 a bucket) to 60,000. Two figures per stream size:

* the rate of 5-minute buckets whose likelihood reaches 0.999, either way, after the
  warm-up (nominal: about 1 in 1,000 each way);
* the alerts the shipped brand-health volume rules would send: ``mention-volume-drop``
  (15-minute buckets, 0.99999 down, two buckets in a row) and ``mention-volume-spike``
  (5-minute buckets, 0.9999 up, at least 30 posts), counted as episodes.

Until a week has been seen a quiet weekend is news (a big brand's first quiet Saturday
can alert); those alerts are counted too.

The negative share has a daily rhythm too: a second table judges the share detector on
the same streams' posts, each negative with a probability of ``BASE_SHARE`` x (1 + a x
cos(hour from 03:00)) (``a`` 0 or ``SHARE_AMPLITUDE``: 0.06 in the afternoon to 0.18 at
night), binomial or, with ``WANDERING`` as the concentration, beta-binomial (the share
wanders from bucket to bucket), or ``WEEKEND_SHARE`` times higher at weekends, so again
nothing is news: the rate of buckets at 0.999,
and the alerts of the shipped ``negative-share-spike`` rule (15-minute buckets, 0.9999
up, at least 20 posts and 8 negative; its ``min_authors`` is not applied).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine, write_json  # bench/machine.py (scripts run with bench/ on sys.path)

from xwatch.detect.share import NegativeShareDetector
from xwatch.detect.volume import CountDetector
from xwatch.model import Bucket, Measure, SeriesKey

DAY = 86400
START = datetime(2026, 11, 4, tzinfo=UTC)  # a Wednesday: the first weekend comes in week 1
AMPLITUDE = 0.9  # the rate is mean x (1 + 0.9 cos(hour from 14:00))
POSTS_PER_DAY = (3, 10, 30, 150, 600, 6_000, 60_000)  # from a topic seen a few times a day
SHARE_POSTS_PER_DAY = (600, 6_000, 60_000)
BASE_SHARE = 0.12
SHARE_AMPLITUDE = 0.5
WANDERING = 30.0  # a beta-binomial share's concentration (the smaller, the more it wanders)
WEEKEND_SHARE = 1.5
SHARE_SHAPES = (  # (daily amplitude, concentration, weekends' share x)
    (0.0, None, 1.0),
    (SHARE_AMPLITUDE, None, 1.0),
    (0.0, WANDERING, 1.0),
    (0.0, None, WEEKEND_SHARE),
)


def stream(
    per_day: int,
    weekend: float,
    seed: int,
    days: int,
    width: int,
    share_amplitude: float = 0.0,
    concentration: float | None = None,
    share_weekend: float = 1.0,
) -> Iterator[Bucket]:
    """Poisson posts per bucket; negatives binomial at the share's rhythm (drawn apart:
    the posts are the same whatever the share)."""
    rng, share_rng = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    mean = per_day * width / DAY
    key = SeriesKey("steady", "", width)
    for i in range(days * DAY // width):
        start = START + timedelta(seconds=width * i)
        hour = start.hour + start.minute / 60
        rate = mean * (1 + AMPLITUDE * math.cos((hour - 14) / 24 * 2 * math.pi))
        rate *= weekend if start.weekday() >= 5 else 1.0
        count = int(rng.poisson(rate))
        share = BASE_SHARE * (1 + share_amplitude * math.cos((hour - 3) / 24 * 2 * math.pi))
        share *= share_weekend if start.weekday() >= 5 else 1.0
        if concentration is not None:
            share = share_rng.beta(share * concentration, (1 - share) * concentration)
        negative = int(share_rng.binomial(count, share))
        yield Bucket(key, start, start + timedelta(seconds=width), count, negative, 0)


def judged(per_day: int, weekend: float, seed: int, days: int) -> dict[str, int]:
    """Buckets judged and surprising at 5 minutes, and the two rules' alert episodes."""
    figures = {"buckets": 0, "at_0_999": 0, "spike_alerts": 0, "drop_alerts": 0}
    detector, firing = CountDetector(Measure.VOLUME, 300), False
    for bucket in stream(per_day, weekend, seed, days, 300):
        signal = detector.score_one(bucket)
        detector.learn_one(bucket)
        if signal.warming_up:
            continue
        figures["buckets"] += 1
        figures["at_0_999"] += signal.likelihood >= 0.999
        spike = signal.direction == "up" and signal.likelihood >= 0.9999 and bucket.count >= 30
        figures["spike_alerts"] += spike and not firing
        firing = spike
    detector, run = CountDetector(Measure.VOLUME, 900), 0
    for bucket in stream(per_day, weekend, seed, days, 900):
        signal = detector.score_one(bucket)
        detector.learn_one(bucket)
        down = not signal.warming_up and signal.direction == "down"
        run = run + 1 if down and signal.likelihood >= 0.99999 else 0
        figures["drop_alerts"] += run == 2
    return figures


def judged_share(
    per_day: int,
    shape: tuple[float, float | None, float],
    seed: int,
    days: int,
) -> dict[str, int]:
    """Buckets judged and surprising at 5 minutes, and the shipped rule's alert episodes."""
    figures = {"buckets": 0, "at_0_999": 0, "share_alerts": 0}
    detector = NegativeShareDetector(300)
    for bucket in stream(per_day, 1.0, seed, days, 300, *shape):
        signal = detector.score_one(bucket)
        detector.learn_one(bucket)
        if not signal.warming_up:
            figures["buckets"] += 1
            figures["at_0_999"] += signal.likelihood >= 0.999
    detector, firing = NegativeShareDetector(900), False
    for bucket in stream(per_day, 1.0, seed, days, 900, *shape):
        signal = detector.score_one(bucket)
        detector.learn_one(bucket)
        alarm = (
            not signal.warming_up
            and signal.direction == "up"
            and signal.likelihood >= 0.9999
            and bucket.count >= 20
            and bucket.negative >= 8
        )
        figures["share_alerts"] += alarm and not firing
        firing = alarm
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weeks", type=int, default=5, help="weeks per stream (5)")
    parser.add_argument("--seeds", type=int, default=3, help="streams per size and shape (3)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    print(
        f"{args.seeds} streams of {args.weeks} weeks per row; 5-minute buckets at 0.999 "
        "(either way, after the warm-up); alerts of the shipped volume rules\n"
    )
    print("| posts a day | weekends | buckets at 0.999, per 1,000 | spike alerts | drop alerts |")
    print("|--:|---|--:|--:|--:|")
    rows: list[dict[str, Any]] = []
    for per_day in POSTS_PER_DAY:
        for weekend in (1.0, 0.6):
            total = {"buckets": 0, "at_0_999": 0, "spike_alerts": 0, "drop_alerts": 0}
            for seed in range(args.seeds):
                for name, value in judged(per_day, weekend, seed, args.weeks * 7).items():
                    total[name] += value
            rate = 1000 * total["at_0_999"] / max(1, total["buckets"])
            shape = "as weekdays" if weekend == 1.0 else f"{weekend:g}x"
            print(
                f"| {per_day:,} | {shape} | {rate:.2f} | {total['spike_alerts']} "
                f"| {total['drop_alerts']} |",
                flush=True,
            )
            rows.append({"posts_per_day": per_day, "weekend": weekend, **total})
    print("\nThe negative share, on the same streams' posts (weekends as weekdays):\n")
    print("| posts a day | the share | buckets at 0.999, per 1,000 | share alerts |")
    print("|--:|---|--:|--:|")
    share_rows: list[dict[str, Any]] = []
    for per_day in SHARE_POSTS_PER_DAY:
        for amplitude, concentration, weekend in SHARE_SHAPES:
            total = {"buckets": 0, "at_0_999": 0, "share_alerts": 0}
            for seed in range(args.seeds):
                share_shape = (amplitude, concentration, weekend)
                days = args.weeks * 7
                for name, value in judged_share(per_day, share_shape, seed, days).items():
                    total[name] += value
            rate = 1000 * total["at_0_999"] / max(1, total["buckets"])
            low, high = BASE_SHARE * (1 - amplitude), BASE_SHARE * (1 + amplitude)
            label = "steady" if amplitude == 0.0 else f"{low:.2f} to {high:.2f} by hour"
            if concentration is not None:
                label = f"wandering (beta-binomial, concentration {concentration:g})"
            if weekend != 1.0:
                label = f"{BASE_SHARE:.2f}, {BASE_SHARE * weekend:.2f} at weekends"
            print(f"| {per_day:,} | {label} | {rate:.2f} | {total['share_alerts']} |", flush=True)
            share_rows.append(
                {
                    "posts_per_day": per_day,
                    "amplitude": amplitude,
                    "concentration": concentration,
                    "weekend": weekend,
                    **total,
                }
            )
    if args.json:
        write_json(
            args.json,
            {"machine": machine(), "weeks": args.weeks, "rows": rows, "share_rows": share_rows},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
