"""Detection delay of the daemon's detectors on synthetic crises injected into real traffic.

    .venv/bin/python bench/detection.py [--quick] [--json PATH] [--data DIR]

Backgrounds are the five NAB realTweets series (5-minute mention counts) read from
``../shared/data/nab`` (measurement only: nothing is copied into the project; exit 2
when the data is absent). For each file, onsets are drawn with a fixed seed, spread over
the part after the first 3 days and at least 6 hours away from NAB's labelled anomaly
windows. Each onset starts a 2-hour crisis:

* volume: the counts from the onset on are multiplied by k (2, 5, 10), judged by the
  daemon's ``CountDetector`` (volume, default parameters: calibrated on the series' own
  past; ``--uncalibrated``: without that, for a same-run comparison);
* negative share: negatives are drawn binomially at a usual share p0 = 0.12 from the NAB
  counts, and at 2 x p0 from the onset on (volume unchanged), judged by the daemon's
  ``NegativeShareDetector``.

A detector alarms on a bucket when its signal has likelihood >= 0.9999 (the shipped
rules' threshold), direction "up" and is not warming up, as the rules engine requires
(the rules' min_count / min_negative floors are not applied). Detectors run from
scratch on the background up to the onset (once per file, copied at each onset: they
are deterministic), then on the crisis. Delay = crisis buckets seen until the first
alarm, the alarming one included (1 = at the close of the first crisis bucket,
5 minutes after the onset); "missed" when there is no alarm within the 2 hours.

The oracle is a one-sided CUSUM that knows the truth: for volume a Poisson CUSUM with
the before-rate = the mean of the un-injected background over the 2 hours from the
onset and the after-rate = k x that; for the share a binomial CUSUM knowing p0 and
2 x p0. It starts from zero at the onset (the worst case, Lorden's). Its threshold h is
calibrated per file (and per k) so that, on the un-injected background (after day 3,
outside the labelled windows), it raises no more alarms than the detector raises false
alerts there (the smallest such h, found by bisection). The oracle restarts from zero
after each alarm, so one alarm is one alert; the detector's false alerts are counted the
same way, as runs of consecutive alarming buckets (what the daemon sends: one alert per
episode, which stays firing while the evidence lasts). On the background the volume
oracle's before-rate is the same forward 2-hour mean, bucket by bucket.

Delays are pooled over files; median and p90 count a miss as infinitely late, so a p90
reads "missed" when more than 10 % of the crises were missed. Figures are measurements,
not pass/fail: the issue's target is a detector within 1.5x of the oracle.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine, write_json  # bench/machine.py (scripts run with bench/ on sys.path)

from xwatch.detect import Detector
from xwatch.detect.share import NegativeShareDetector
from xwatch.detect.volume import CountDetector, CountParams
from xwatch.model import Bucket, Measure, SeriesKey, Signal, utc

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "nab"
WIDTH = 300  # NAB realTweets: one row per 5 minutes
THRESHOLD = 0.9999  # the shipped rules' likelihood for volume and negative share
CRISIS_BUCKETS = 2 * 3600 // WIDTH
SKIP = timedelta(days=3)
MARGIN = timedelta(hours=6)
VOLUME_FACTORS = (2.0, 5.0, 10.0)
P0 = 0.12
SHARE_FACTOR = 2.0
SEED = 20150226
MISSED = math.inf
H_FLOOR = 1e-6  # an oracle threshold this low alarms on any bucket with a positive log-LR


# -- data -----------------------------------------------------------------------------


@dataclass
class Background:
    name: str
    starts: list[datetime]
    counts: list[int]
    windows: list[tuple[datetime, datetime]]
    skip_index: int = 0
    region: list[bool] = field(default_factory=list)  # where false alarms are counted
    onsets: list[int] = field(default_factory=list)

    @property
    def region_days(self) -> float:
        return sum(self.region) * WIDTH / 86400.0

    def segments(self) -> list[tuple[int, int]]:
        """Maximal runs [a, b) of the false-alarm region."""
        runs: list[tuple[int, int]] = []
        begin: int | None = None
        for i, inside in enumerate([*self.region, False]):
            if inside and begin is None:
                begin = i
            elif not inside and begin is not None:
                runs.append((begin, i))
                begin = None
        return runs


@dataclass
class Case:
    """One measure at one crisis strength, pooled over files."""

    measure: str
    factor: float
    detector: list[float] = field(default_factory=list)
    oracle: list[float] = field(default_factory=list)


@dataclass
class FileResult:
    name: str
    mean_count: float
    region_days: float
    onsets: int
    false_alarms: dict[str, int] = field(default_factory=dict)  # alarming buckets
    false_episodes: dict[str, int] = field(default_factory=dict)  # runs of them
    thresholds: dict[str, float] = field(default_factory=dict)
    median_delays: dict[str, tuple[float, float]] = field(default_factory=dict)


def load_backgrounds(data: Path) -> list[Background]:
    windows_path = data / "windows.json"
    files = sorted((data / "realTweets").glob("*.csv"))
    if not files or not windows_path.is_file():
        print(
            f"bench/detection.py: NAB data not found under {data} (expected realTweets/*.csv "
            "and windows.json, see ../shared/data/README.md); nothing measured",
            file=sys.stderr,
        )
        sys.exit(2)
    labelled: dict[str, list[list[str]]] = json.loads(windows_path.read_text())
    backgrounds = []
    for path in files:
        starts: list[datetime] = []
        counts: list[int] = []
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                starts.append(utc(datetime.fromisoformat(row["timestamp"])))
                counts.append(max(0, round(float(row["value"]))))
        windows = [
            (utc(datetime.fromisoformat(a)), utc(datetime.fromisoformat(b)))
            for a, b in labelled.get(f"realTweets/{path.name}", [])
        ]
        backgrounds.append(
            Background(path.stem.removeprefix("Twitter_volume_"), starts, counts, windows)
        )
    return backgrounds


def place_onsets(bg: Background, points: int, rng: np.random.Generator) -> None:
    """The false-alarm region, and ``points`` onsets spread over the eligible part."""
    width = timedelta(seconds=WIDTH)
    first = bg.starts[0] + SKIP
    bg.skip_index = next(i for i, t in enumerate(bg.starts) if t >= first)
    bg.region = [
        i >= bg.skip_index and not any(a <= t <= b for a, b in bg.windows)
        for i, t in enumerate(bg.starts)
    ]
    eligible = []
    for i in range(bg.skip_index, len(bg.starts) - CRISIS_BUCKETS + 1):
        begin = bg.starts[i] - MARGIN
        end = bg.starts[i + CRISIS_BUCKETS - 1] + width + MARGIN
        if not any(begin < b and a < end for a, b in bg.windows):
            eligible.append(i)
    strata = np.array_split(np.array(eligible, dtype=np.int64), min(points, len(eligible)))
    bg.onsets = sorted(int(rng.choice(stratum)) for stratum in strata if len(stratum))


# -- the detectors ----------------------------------------------------------------------


def is_alarm(signal: Signal) -> bool:
    """What the rules engine fires on (rules.py), at the shipped threshold."""
    return signal.direction == "up" and not signal.warming_up and signal.likelihood >= THRESHOLD


def count_false_alarms(
    bg: Background, alarms: Sequence[bool], name: str, result: FileResult
) -> int:
    """Alarming buckets in the false-alarm region, and how many runs (alerts) they make:
    the runs are what the oracle is calibrated to."""
    flags = [a and inside for a, inside in zip(alarms, bg.region, strict=True)]
    result.false_alarms[name] = sum(flags)
    result.false_episodes[name] = sum(
        1 for i, flag in enumerate(flags) if flag and (i == 0 or not flags[i - 1])
    )
    return result.false_episodes[name]


def run_background(
    detector: Detector, buckets: Sequence[Bucket], onsets: Sequence[int]
) -> tuple[list[bool], dict[int, Detector]]:
    """Alarms on the whole background, and a copy of the detector just before each onset."""
    wanted = set(onsets)
    alarms: list[bool] = []
    snapshots: dict[int, Detector] = {}
    for i, bucket in enumerate(buckets):
        if i in wanted:
            snapshots[i] = copy.deepcopy(detector)
        alarms.append(is_alarm(detector.score_one(bucket)))
        detector.learn_one(bucket)
    return alarms, snapshots


def detector_delay(detector: Detector, crisis: Sequence[Bucket]) -> float:
    for i, bucket in enumerate(crisis):
        alarm = is_alarm(detector.score_one(bucket))
        if alarm:
            return float(i + 1)
        detector.learn_one(bucket)
    return MISSED


# -- the oracle ---------------------------------------------------------------------------


def cusum_alarms(increments: Sequence[float], segments: Sequence[tuple[int, int]], h: float) -> int:
    """Alarms of a one-sided CUSUM restarted at 0 at each segment and after each alarm."""
    alarms = 0
    for begin, end in segments:
        s = 0.0
        for x in increments[begin:end]:
            s += x
            if s < 0.0:
                s = 0.0
            elif s >= h:
                alarms += 1
                s = 0.0
    return alarms


def cusum_peak(increments: Sequence[float], segments: Sequence[tuple[int, int]]) -> float:
    """The largest value the statistic reaches without restarts: above it, no alarm."""
    peak = 0.0
    for begin, end in segments:
        s = 0.0
        for x in increments[begin:end]:
            s = max(0.0, s + x)
            peak = max(peak, s)
    return peak


def calibrate(
    increments: Sequence[float], segments: Sequence[tuple[int, int]], target: int
) -> float:
    """The smallest h whose alarms on the background are no more than ``target``."""
    hi = cusum_peak(increments, segments) * (1 + 1e-9) + 1e-9
    lo = 0.0
    while hi - lo > 1e-4 * hi + H_FLOOR:
        mid = (lo + hi) / 2
        if cusum_alarms(increments, segments, mid) <= target:
            hi = mid
        else:
            lo = mid
    return max(hi, H_FLOOR)


def cusum_delay(increments: Sequence[float], h: float) -> float:
    s = 0.0
    for i, x in enumerate(increments):
        s += x
        if s < 0.0:
            s = 0.0
        elif s >= h:
            return float(i + 1)
    return MISSED


def forward_means(counts: Sequence[int]) -> list[float]:
    """The mean of each bucket and the next ones over 2 hours (fewer at the end)."""
    values = np.asarray(counts, dtype=np.float64)
    sums = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(len(values))
    ends = np.minimum(idx + CRISIS_BUCKETS, len(values))
    return [float(v) for v in (sums[ends] - sums[idx]) / (ends - idx)]


def poisson_increments(xs: Sequence[float], rates: Sequence[float], k: float) -> list[float]:
    """log-likelihood ratio of Poisson(k * rate) against Poisson(rate) for each value."""
    log_k = math.log(k)
    return [x * log_k - (k - 1.0) * r for x, r in zip(xs, rates, strict=True)]


def binomial_increments(ks: Sequence[int], ns: Sequence[int], p0: float, p1: float) -> list[float]:
    up, down = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
    return [k * up + (n - k) * down for k, n in zip(ks, ns, strict=True)]


# -- the runs --------------------------------------------------------------------------


def buckets_of(bg: Background, counts: Sequence[int], negatives: Sequence[int]) -> list[Bucket]:
    key = SeriesKey(bg.name)
    step = timedelta(seconds=WIDTH)
    return [
        Bucket(key, start, start + step, count, negative, 0)
        for start, count, negative in zip(bg.starts, counts, negatives, strict=True)
    ]


def label(measure: str, factor: float) -> str:
    return f"{measure} x{factor:g}"


def measure_volume(
    bg: Background, cases: dict[str, Case], result: FileResult, params: CountParams
) -> None:
    zeros = [0] * len(bg.counts)
    buckets = buckets_of(bg, bg.counts, zeros)
    detector = CountDetector(Measure.VOLUME, WIDTH, params)
    alarms, snapshots = run_background(detector, buckets, bg.onsets)
    target = count_false_alarms(bg, alarms, "volume", result)
    rates = forward_means(bg.counts)
    segments = bg.segments()
    for k in VOLUME_FACTORS:
        h = calibrate(poisson_increments(bg.counts, rates, k), segments, target)
        result.thresholds[label("volume", k)] = h
        det: list[float] = []
        orc: list[float] = []
        for onset in bg.onsets:
            window = range(onset, onset + CRISIS_BUCKETS)
            injected = [round(bg.counts[i] * k) for i in window]
            crisis = [
                Bucket(b.series, b.start, b.end, c, 0, 0)
                for b, c in zip(buckets[onset : onset + CRISIS_BUCKETS], injected, strict=True)
            ]
            det.append(detector_delay(copy.deepcopy(snapshots[onset]), crisis))
            before = rates[onset]
            orc.append(cusum_delay(poisson_increments(injected, [before] * len(injected), k), h))
        cases[label("volume", k)].detector.extend(det)
        cases[label("volume", k)].oracle.extend(orc)
        result.median_delays[label("volume", k)] = (quantile(det, 0.5), quantile(orc, 0.5))


def measure_share(
    bg: Background, cases: dict[str, Case], result: FileResult, rng: np.random.Generator
) -> None:
    p1 = P0 * SHARE_FACTOR
    negatives = [int(v) for v in rng.binomial(np.asarray(bg.counts, dtype=np.int64), P0)]
    buckets = buckets_of(bg, bg.counts, negatives)
    alarms, snapshots = run_background(NegativeShareDetector(WIDTH), buckets, bg.onsets)
    target = count_false_alarms(bg, alarms, "negative share", result)
    h = calibrate(binomial_increments(negatives, bg.counts, P0, p1), bg.segments(), target)
    name = label("negative share", SHARE_FACTOR)
    result.thresholds[name] = h
    det: list[float] = []
    orc: list[float] = []
    for onset in bg.onsets:
        window = buckets[onset : onset + CRISIS_BUCKETS]
        drawn = rng.binomial(np.asarray([b.count for b in window], dtype=np.int64), p1)
        crisis = [
            Bucket(b.series, b.start, b.end, b.count, int(k), 0)
            for b, k in zip(window, drawn, strict=True)
        ]
        det.append(detector_delay(copy.deepcopy(snapshots[onset]), crisis))
        ks = [b.negative for b in crisis]
        orc.append(cusum_delay(binomial_increments(ks, [b.count for b in crisis], P0, p1), h))
    cases[name].detector.extend(det)
    cases[name].oracle.extend(orc)
    result.median_delays[name] = (quantile(det, 0.5), quantile(orc, 0.5))


# -- figures ---------------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    """The smallest value with at least a fraction q of the values at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def miss_rate(values: Sequence[float]) -> float:
    return sum(math.isinf(v) for v in values) / len(values) if values else math.nan


def ratio(a: float, b: float) -> float:
    """detector / oracle; infinite when only the detector missed, undefined when both did."""
    if math.isnan(a) or math.isnan(b) or math.isinf(b) or b == 0:
        return math.nan
    return a / b


def delay_text(value: float) -> str:
    if math.isnan(value):
        return "-"
    return "missed" if math.isinf(value) else f"{value:.0f}"


def ratio_text(value: float) -> str:
    if math.isnan(value):
        return "-"
    return "∞" if math.isinf(value) else f"{value:.2f}"


def finite(value: float) -> float | None:
    """JSON has no infinity: missed (or undefined) is null."""
    return None if math.isinf(value) or math.isnan(value) else value


def summary_rows(cases: dict[str, Case]) -> list[dict[str, Any]]:
    rows = []
    for name, case in cases.items():
        d50, d90 = quantile(case.detector, 0.5), quantile(case.detector, 0.9)
        o50, o90 = quantile(case.oracle, 0.5), quantile(case.oracle, 0.9)
        rows.append(
            {
                "case": name,
                "measure": case.measure,
                "factor": case.factor,
                "crises": len(case.detector),
                "detector": {
                    "median": d50,
                    "p90": d90,
                    "miss_rate": miss_rate(case.detector),
                    "delays": case.detector,
                },
                "oracle": {
                    "median": o50,
                    "p90": o90,
                    "miss_rate": miss_rate(case.oracle),
                    "delays": case.oracle,
                },
                "ratio_median": ratio(d50, o50),
                "ratio_p90": ratio(d90, o90),
            }
        )
    return rows


def print_tables(
    rows: list[dict[str, Any]], files: list[FileResult], elapsed: float, calibrated: bool
) -> None:
    print(f"machine: {machine()}; {elapsed:.1f} s")
    print(
        f"threshold: likelihood >= {THRESHOLD}, direction up; crisis {CRISIS_BUCKETS} buckets "
        f"of {WIDTH // 60} min; delay in buckets seen (1 = {WIDTH // 60} min after the onset); "
        f"volume detector {'calibrated' if calibrated else 'uncalibrated'}"
    )
    print()
    print(
        "| crisis | crises | detector median | detector p90 | detector missed "
        "| oracle median | oracle p90 | oracle missed | ratio median | ratio p90 |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        d, o = r["detector"], r["oracle"]
        print(
            f"| {r['case']} | {r['crises']} | {delay_text(d['median'])} | {delay_text(d['p90'])} "
            f"| {d['miss_rate']:.0%} | {delay_text(o['median'])} | {delay_text(o['p90'])} "
            f"| {o['miss_rate']:.0%} | {ratio_text(r['ratio_median'])} "
            f"| {ratio_text(r['ratio_p90'])} |"
        )
    print()
    names = [r["case"] for r in rows]
    print(
        "| file | mean / 5 min | FA days | volume FA/day (runs) | share FA/day (runs) | "
        + " | ".join(f"{n}: median det / oracle (h)" for n in names)
        + " |"
    )
    print("|---|--:|--:|--:|--:|" + "--:|" * len(names))
    for f in files:
        rates = [
            f"{f.false_alarms[m] / f.region_days:.2f} ({f.false_episodes[m] / f.region_days:.2f})"
            for m in ("volume", "negative share")
        ]
        cells = [
            f"{delay_text(f.median_delays[n][0])} / {delay_text(f.median_delays[n][1])} "
            f"({f.thresholds[n]:.3g})"
            for n in names
        ]
        print(
            f"| {f.name} | {f.mean_count:.1f} | {f.region_days:.1f} | "
            + " | ".join(rates + cells)
            + " |"
        )
    print()
    print(
        "FA days: the un-injected background where false alarms are counted (after day 3, "
        "outside the labelled windows). FA/day: alarming buckets per day (runs: consecutive "
        "alarming buckets counted once). h: the oracle CUSUM threshold calibrated there to the "
        "detector's count of runs (h of 1e-06: even a one-bucket likelihood-ratio "
        "test raises fewer false alarms than the detector)."
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="5 crises per file (about 10 s)")
    parser.add_argument("--points", type=int, default=None, help="crises per file (default 20)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the NAB folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--uncalibrated",
        action="store_true",
        help="the volume detector without its calibration on the series' own past",
    )
    args = parser.parse_args(argv)
    points = args.points or (5 if args.quick else 20)
    params = CountParams(calibrate=not args.uncalibrated)

    began = time.perf_counter()
    backgrounds = load_backgrounds(args.data)
    cases = {label("volume", k): Case("volume", k) for k in VOLUME_FACTORS}
    cases[label("negative share", SHARE_FACTOR)] = Case("negative share", SHARE_FACTOR)
    files: list[FileResult] = []
    for n, bg in enumerate(backgrounds):
        place_onsets(bg, points, np.random.default_rng([args.seed, n, 0]))
        result = FileResult(bg.name, float(np.mean(bg.counts)), bg.region_days, len(bg.onsets))
        files.append(result)
        measure_volume(bg, cases, result, params)
        measure_share(bg, cases, result, np.random.default_rng([args.seed, n, 1]))
    rows = summary_rows(cases)
    elapsed = time.perf_counter() - began
    print_tables(rows, files, elapsed, params.calibrate)

    if args.json is not None:
        document = {
            "benchmark": "detection",
            "machine": machine(),
            "elapsed_seconds": elapsed,
            "settings": {
                "threshold": THRESHOLD,
                "bucket_seconds": WIDTH,
                "crisis_buckets": CRISIS_BUCKETS,
                "crises_per_file": points,
                "seed": args.seed,
                "volume_calibrated": params.calibrate,
                "volume_factors": list(VOLUME_FACTORS),
                "share_p0": P0,
                "share_factor": SHARE_FACTOR,
                "skip_days": SKIP.days,
                "margin_hours": MARGIN.total_seconds() / 3600,
                "delay_unit": "buckets seen until the alarm, the alarming one included",
                "null": "a missed crisis (delay), or a ratio with a missed side",
            },
            "summary": [
                {
                    **r,
                    "detector": {
                        k: ([finite(x) for x in v] if isinstance(v, list) else finite(v))
                        for k, v in r["detector"].items()
                    },
                    "oracle": {
                        k: ([finite(x) for x in v] if isinstance(v, list) else finite(v))
                        for k, v in r["oracle"].items()
                    },
                    "ratio_median": finite(r["ratio_median"]),
                    "ratio_p90": finite(r["ratio_p90"]),
                }
                for r in rows
            ],
            "files": [
                {
                    "name": f.name,
                    "mean_count": f.mean_count,
                    "false_alarm_days": f.region_days,
                    "crises": f.onsets,
                    "false_alarms": f.false_alarms,
                    "false_alarm_runs": f.false_episodes,
                    "false_alarms_per_day": {
                        k: v / f.region_days for k, v in f.false_alarms.items()
                    },
                    "oracle_thresholds": f.thresholds,
                    "median_delays": {
                        k: {"detector": finite(a), "oracle": finite(b)}
                        for k, (a, b) in f.median_delays.items()
                    },
                }
                for f in files
            ],
        }
        write_json(args.json, document)


if __name__ == "__main__":
    main()
