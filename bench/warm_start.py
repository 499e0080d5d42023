"""What a warm start from X's counts buys a brand's first live weeks (volume detector).

    .venv/bin/python bench/warm_start.py [--seeds S] [--json PATH]

With ``warm_start`` the X source brings each brand's posts per minute over the last 7
days (X's recent counts), and ``Pipeline.warm_start`` has the brand's volume detectors
learn them, as buckets, before the first live post. Without it a new brand's detectors
warm up on live posts: a day in which nothing is judged, then a first week in which a
first quiet weekend is news. This compares the two on the same synthetic streams as
``bench/rhythm.py`` (Poisson, a daily rhythm of 19x, weekends at 0.6x; 150 to 60,000
posts a day), 5-minute buckets:

* live for two weeks, starting on a Wednesday: the share of the first live day's
  buckets judged, and buckets at 0.999 per 1,000 judged (either way: all false alarms,
  nothing is news), with the warm start's 7 days learned or not;
* a x5 crisis six hours after going live (2 hours: Poisson at 5 times each live bucket's
  count, at least 1): buckets until the first alarm at 0.9999 upwards, or "not judged"
  while the detector still warms up.
"""

from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine, write_json  # bench/machine.py (scripts run with bench/ on sys.path)
from rhythm import POSTS_PER_DAY, stream

from xwatch.detect.volume import CountDetector
from xwatch.model import Bucket, Measure

WIDTH = 300
WARM_DAYS = 7
LIVE_DAYS = 14
PER_DAY = 86400 // WIDTH
WEEKEND = 0.6
CRISIS_AFTER = 6 * 12  # buckets after going live
CRISIS_BUCKETS = 24
CRISIS_FACTOR = 5


def run(per_day: int, seed: int, warm: bool) -> dict[str, Any]:
    buckets = list(stream(per_day, WEEKEND, seed, WARM_DAYS + LIVE_DAYS, WIDTH))
    history, live = buckets[: WARM_DAYS * PER_DAY], buckets[WARM_DAYS * PER_DAY :]
    detector = CountDetector(Measure.VOLUME, WIDTH)
    if warm:
        for bucket in history:
            detector.learn_one(bucket)
    first_day_judged = judged = alarms = 0
    crisis_delay: float | None = None
    for i, bucket in enumerate(live):
        if i == CRISIS_AFTER:
            crisis_delay = crisis(detector, live[i : i + CRISIS_BUCKETS], seed)
        signal = detector.score_one(bucket)
        detector.learn_one(bucket)
        if signal.warming_up:
            continue
        first_day_judged += i < PER_DAY
        judged += 1
        alarms += signal.likelihood >= 0.999
    return {
        "first_day_judged": first_day_judged / PER_DAY,
        "per_1000": 1000 * alarms / max(judged, 1),
        "crisis_delay": crisis_delay,
    }


def crisis(detector: CountDetector, calm: list[Bucket], seed: int) -> float | None:
    """Buckets until the first alarm on a copy of the detector fed the calm buckets times
    ``CRISIS_FACTOR`` (None: not judged, the detector warms up; inf: missed)."""
    rng = np.random.default_rng([seed, 7])
    surging = copy.deepcopy(detector)
    for j, bucket in enumerate(calm):
        surge = Bucket(
            bucket.series,
            bucket.start,
            bucket.end,
            int(rng.poisson(CRISIS_FACTOR * max(bucket.count, 1))),
            0,
            0,
        )
        signal = surging.score_one(surge)
        surging.learn_one(surge)
        if signal.warming_up:
            return None
        if signal.direction == "up" and signal.likelihood >= 0.9999:
            return float(j + 1)
    return math.inf


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures there")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    rows: list[dict[str, Any]] = []
    for per_day in POSTS_PER_DAY:
        for warm in (False, True):
            runs = [run(per_day, seed, warm) for seed in range(args.seeds)]
            delays = [r["crisis_delay"] for r in runs]
            rows.append(
                {
                    "posts_per_day": per_day,
                    "warm_start": warm,
                    "first_day_judged": float(np.mean([r["first_day_judged"] for r in runs])),
                    "per_1000": float(np.mean([r["per_1000"] for r in runs])),
                    "crisis_delays": delays,
                }
            )
    print(
        f"\n{args.seeds} streams a row; live for {LIVE_DAYS} days from a Wednesday; weekends "
        f"at {WEEKEND:g}x; 5-minute buckets\n"
    )
    print(
        "| posts a day | warm start | first live day judged | at 0.999 per 1,000 judged "
        f"| x{CRISIS_FACTOR} crisis 6 h in: buckets to alarm |"
    )
    print("|--:|---|--:|--:|---|")
    for row in rows:
        shown = ", ".join(
            "not judged" if d is None else "missed" if math.isinf(d) else f"{d:g}"
            for d in row["crisis_delays"]
        )
        print(
            f"| {row['posts_per_day']:,} | {'yes' if row['warm_start'] else 'no'} "
            f"| {row['first_day_judged']:.0%} | {row['per_1000']:.2f} | {shown} |"
        )
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "warm_start",
                "machine": machine(),
                "seeds": args.seeds,
                "rows": [
                    {**row, "crisis_delays": [_json_delay(d) for d in row["crisis_delays"]]}
                    for row in rows
                ],
            },
        )


def _json_delay(delay: float | None) -> float | str | None:
    return "missed" if delay is not None and math.isinf(delay) else delay


if __name__ == "__main__":
    main()
