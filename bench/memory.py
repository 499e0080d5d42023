"""Resident memory of the daemon over a soak at a steady rate, with 10,000 active series.

    .venv/bin/python bench/memory.py [--soak-minutes M] [--rate R] [--series N] [--json PATH]
    .venv/bin/python bench/memory.py --soak-minutes 30 --warm-seconds 990

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
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import tempfile
from pathlib import Path
from typing import Any

from machine import machine, write_json  # bench/machine.py (scripts run with bench/ on sys.path)
from prometheus_client import CollectorRegistry
from rig import Broker, bench_settings, run_daemon

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
            extra={"dedup_capacity": dedup},
        )
        total = warm + soak_seconds

        def done(daemon: Daemon, publisher: dict[str, Any] | None) -> bool:
            return publisher is not None

        publish = ["--brands", str(brands), "--rate", f"{rate:.1f}", "--seconds", str(total)]
        run = await run_daemon(
            settings, broker, publish, done=done, traffic_rate=rate, limit=total + 120
        )
    start = run.samples[0][0] + warm
    soaked = [(t, rss) for t, _, rss in run.samples if t >= start]
    first = statistics.median(rss for t, rss in soaked if t < start + WINDOW)
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
        "rss_start_bytes": first,
        "rss_end_bytes": last,
        "rss_max_bytes": max(rss for _, rss in soaked),
        "rss_idle_bytes": run.samples[0][2],  # detectors warm, no post yet
        "growth": last / first - 1.0,
        "slope_mib_per_hour": _slope(soaked) * 3600 / MIB,
        "late": run.late,
        "daemon_cpu_share": run.daemon_cpu / max(run.wall, 1e-9),
    }


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
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
