"""False alarms of a brand whose audience lives in local time: daylight saving and weekends.

    .venv/bin/python bench/timezones.py [--seeds S] [--json PATH]

The streams are synthetic and steady on a New York brand's clock and calendar: Poisson
posts per 5 minutes whose rate follows a local daily rhythm (night trough 1/10 of the
14:00 peak), weekends at ``WEEKEND`` x the weekdays, negatives binomial at a share with
its own local rhythm (0.06 to 0.18). Six weeks are learned, then four weeks across a
daylight-saving change: Sunday 2026-03-08 (spring: UTC-5 to UTC-4) or Sunday 2026-11-01
(autumn: UTC-4 to UTC-5). Nothing in them is news, so every alarm is a false one.

Each stream is judged twice, by detectors learning the rhythm in UTC (as every version
before the brands' ``timezone``) and in ``America/New_York`` (the brand's). Counted as
the shipped brand-health rules would alert (episodes: runs of alarming buckets):
volume up at 5 and 15 minutes (0.9999, at least 30 posts), volume down at 15 minutes
(0.99999, two buckets in a row), negative share up at 15 minutes (0.9999, at least 20
posts and 8 negative; ``min_authors`` not applied). Figures are episodes per brand in
the week of the change and per week over the three after, summed over the four rules,
averaged over seeds.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from multiprocessing import Pool
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from machine import machine, write_json  # bench/machine.py (scripts run with bench/ on sys.path)

from xwatch.detect.share import NegativeShareDetector
from xwatch.detect.volume import CountDetector
from xwatch.model import Bucket, Measure, SeriesKey

ZONE = "America/New_York"
CHANGES = {  # the changes' instants in UTC, and the weeks judged around them
    "spring": datetime(2026, 3, 8, 7, tzinfo=UTC),  # 02:00 EST: clocks go to 03:00 EDT
    "autumn": datetime(2026, 11, 1, 6, tzinfo=UTC),  # 02:00 EDT: clocks go back to 01:00
}
LEARNED, AFTER = timedelta(weeks=6), timedelta(weeks=4)
WIDTH = 300
AMPLITUDE = 9 / 11  # trough / peak = 0.1
WEEKEND = 0.6
BASE_SHARE, SHARE_AMPLITUDE = 0.12, 0.5
SIZES = (20.0, 200.0, 2000.0)  # mean posts per 5 minutes
SEASONS = tuple(CHANGES)


def stream(mean: float, seed: int, season: str) -> list[tuple[datetime, int, int]]:
    rng = np.random.default_rng([seed, 0])
    share_rng = np.random.default_rng([seed, 1])
    rows = []
    day = CHANGES[season].replace(hour=0)
    at, end = day - LEARNED, day + AFTER
    while at < end:
        local = (at + timedelta(seconds=WIDTH / 2)).astimezone(ZoneInfo(ZONE))
        hour = local.hour + local.minute / 60
        rate = mean * (1 + AMPLITUDE * math.cos((hour - 14) / 24 * 2 * math.pi))
        count = int(rng.poisson(rate * (WEEKEND if local.weekday() >= 5 else 1.0)))
        share = BASE_SHARE * (1 + SHARE_AMPLITUDE * math.cos((hour - 3) / 24 * 2 * math.pi))
        rows.append((at, count, int(share_rng.binomial(count, share))))
        at += timedelta(seconds=WIDTH)
    return rows


def episodes(flags: Sequence[tuple[datetime, bool]], in_a_row: int = 1) -> list[datetime]:
    """When each run of alarming buckets alerts (at its ``in_a_row``-th bucket)."""
    starts, run = [], 0
    for at, flag in flags:
        run = run + 1 if flag else 0
        if run == in_a_row:
            starts.append(at)
    return starts


def judge(rows: list[tuple[datetime, int, int]], width: int, zone: str) -> dict[str, list[Any]]:
    key = SeriesKey("b", "", width)
    volume = CountDetector(Measure.VOLUME, width, timezone=zone)
    share = NegativeShareDetector(width, timezone=zone)
    up, down, shares = [], [], []
    for at, n, k in rows:
        b = Bucket(key, at, at + timedelta(seconds=width), n, k, 0)
        v, s = volume.score_one(b), share.score_one(b)
        volume.learn_one(b)
        share.learn_one(b)
        judged = not v.warming_up
        up.append((at, judged and v.direction == "up" and v.likelihood >= 0.9999 and n >= 30))
        down.append((at, judged and v.direction == "down" and v.likelihood >= 0.99999))
        shares.append(
            (
                at,
                not s.warming_up
                and s.direction == "up"
                and s.likelihood >= 0.9999
                and n >= 20
                and k >= 8,
            )
        )
    return {"up": episodes(up), "down": episodes(down, 2), "share": episodes(shares)}


def run(job: tuple[float, int, str, str]) -> tuple[tuple[float, int, str, str], list[float]]:
    """Episodes in the week of the change, and per week over the three after."""
    mean, seed, season, zone = job
    five = stream(mean, seed, season)
    fifteen = [
        (five[i][0], sum(r[1] for r in five[i : i + 3]), sum(r[2] for r in five[i : i + 3]))
        for i in range(0, len(five) - 2, 3)
    ]
    alerts = judge(five, 300, zone)["up"]
    by_rule = judge(fifteen, 900, zone)
    alerts += by_rule["up"] + by_rule["down"] + by_rule["share"]
    change, week = CHANGES[season], timedelta(weeks=1)
    first = sum(change <= at < change + week for at in alerts)
    later = sum(change + week <= at for at in alerts) / 3.0
    return job, [float(first), later]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    jobs = [
        (mean, seed, season, zone)
        for mean in SIZES
        for season in SEASONS
        for seed in range(args.seeds)
        for zone in ("UTC", ZONE)
    ]
    print(f"machine: {machine()}")
    print(f"{len(jobs)} streams of 10 weeks (6 learned, 4 across the change), 2 processes ...")
    with Pool(2) as pool:
        results = dict(pool.map(run, jobs, chunksize=1))
    print()
    print("False alert episodes of a New York brand, the four brand-health rules summed,")
    print(f"mean of {args.seeds} seeds; weekends at {WEEKEND}x on the local calendar:")
    print()
    print("| posts / 5 min | change | learned in | week of the change | per week, the 3 after |")
    print("|--:|---|---|--:|--:|")
    rows = []
    for mean in SIZES:
        for season in SEASONS:
            for zone in ("UTC", ZONE):
                figures = [results[(mean, seed, season, zone)] for seed in range(args.seeds)]
                first = sum(f[0] for f in figures) / len(figures)
                later = sum(f[1] for f in figures) / len(figures)
                rows.append({"mean": mean, "season": season, "zone": zone, "first": first,
                             "later": later})  # fmt: skip
                print(f"| {mean:g} | {season} | {zone} | {first:.1f} | {later:.1f} |")
    if args.json:
        write_json(args.json, {"machine": machine(), "seeds": args.seeds, "rows": rows})


if __name__ == "__main__":
    main()
