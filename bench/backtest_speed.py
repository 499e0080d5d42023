"""How long ``xwatch backtest`` takes on a week of mentions for 100 brands.

    .venv/bin/python bench/backtest_speed.py [--hours H | --days D] [--brands N] [--json PATH]

The mentions are synthetic (``synthetic.py``: the demo's texts and authors), each about
one of ``--brands`` brands found by its terms (as posts from X are), at the demo brand's
average rate (3,674 posts a day per brand, with a daily rhythm), in event-time order,
gzip'd as a history file would be. The file is made once and kept under build/bench/.

The run is the real command, in a process of its own:
``xwatch backtest -c CONFIG --input FILE --json`` (the config watches the brands with the
repository's rules; default detection settings). Wall and CPU time of that process are
measured, start-up included. The command splits the brands across one process per CPU
(``--jobs`` chooses): each process reads the whole file and judges its brands.

A week (2.6 million posts for 100 brands) takes many minutes here, so by default only
``--hours`` (3) of it is replayed and the week's time is projected from it in
proportion (posts and buckets both grow linearly with the time covered; the part is
centred on 09:00 UTC, where the daily rhythm is at its mean); ``--days 7`` replays the
whole week. The projection leans low: those hours are all in the detectors' day of
warm-up, when a bucket is only learned, not judged, so only the whole week is the figure.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from machine import machine, write_json  # bench/machine.py (scripts run with bench/ on sys.path)
from synthetic import DEMO_POSTS_PER_DAY, Corpus, brand_ids, config_yaml, history, write_history

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "bench"
START = datetime(2026, 11, 16, tzinfo=UTC)  # a Monday
MEAN_HOUR = 9.0  # the daily rhythm crosses its mean at 09:00 (and 21:00) UTC
WEEK_HOURS = 168.0
TARGET_SECONDS = 60.0  # a week for 100 brands in under a minute (issue #9)


def history_file(brands: int, hours: float) -> tuple[Path, int]:
    """The synthetic history (made once) and its number of posts."""
    path = BUILD / f"history-{brands}-brands-{hours:g}h.jsonl.gz"
    count_path = path.with_suffix(".count")
    if not path.exists() or not count_path.exists():
        BUILD.mkdir(parents=True, exist_ok=True)
        print(f"making {path.name} ...", file=sys.stderr, flush=True)
        # Less than a day: centred on 09:00, so that the rate averages the day's mean.
        start = START if hours >= 24 else START + timedelta(hours=MEAN_HOUR - hours / 2)
        lines = history(Corpus.load(), brand_ids(brands), start, hours * 3600.0, DEMO_POSTS_PER_DAY)
        partial = path.with_name(path.name + ".part.gz")
        count = write_history(partial, lines)
        partial.rename(path)
        count_path.write_text(str(count))
    return path, int(count_path.read_text())


def run_backtest(config: Path, path: Path, jobs: int | None) -> dict[str, Any]:
    """``xwatch backtest`` on ``path``: wall and CPU seconds (the processes it starts
    included), alert events printed. ``jobs``: its ``--jobs`` (None: its default, one
    process per CPU)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    command = [sys.executable, "-m", "xwatch", "backtest", "-c", str(config), "--input"]
    command += [str(path), "--json", *(["--jobs", str(jobs)] if jobs else [])]
    done = subprocess.run(
        command,
        capture_output=True,
        check=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    events = sum(1 for line in done.stdout.splitlines() if line.strip())
    return {"seconds": wall, "cpu_seconds": cpu, "alert_events": events}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    span = parser.add_mutually_exclusive_group()
    span.add_argument("--hours", type=float, default=3.0, help="replay this much (default 3)")
    span.add_argument("--days", type=float, help="replay this many days (7: the whole week)")
    parser.add_argument("--brands", type=int, default=100)
    parser.add_argument(
        "--jobs", type=int, help="the command's --jobs (default: its own, one process per CPU)"
    )
    parser.add_argument("--json", type=Path, help="write the figures there")
    args = parser.parse_args()
    hours = args.days * 24 if args.days else args.hours
    print(f"machine: {machine()}", flush=True)
    path, mentions = history_file(args.brands, hours)
    config = BUILD / f"backtest-{args.brands}-brands.yaml"
    source = {"type": "replay", "path": str(path)}
    config.write_text(config_yaml(brand_ids(args.brands), [source], ROOT), "utf-8")
    result = run_backtest(config, path, args.jobs)
    scale = WEEK_HOURS / hours
    week = result["seconds"] * scale
    results = {
        "benchmark": "backtest_speed",
        "machine": machine(),
        "brands": args.brands,
        "jobs": args.jobs or os.cpu_count(),
        "hours": hours,
        "mentions": mentions,
        "week_mentions": round(mentions * scale) if hours < WEEK_HOURS else mentions,
        "projected": hours < WEEK_HOURS,
        "week_seconds": week,
        "target_seconds": TARGET_SECONDS,
        **result,
        "mentions_per_second": mentions / result["seconds"],
    }
    kind = (
        "projected from the part replayed (in warm-up: a low estimate)"
        if results["projected"]
        else "measured"
    )
    print(
        f"\n{args.brands} brands, {hours:g} h of event time, {results['jobs']} processes: "
        f"{mentions:,} mentions in "
        f"{result['seconds']:.1f} s ({results['mentions_per_second']:,.0f}/s, CPU "
        f"{result['cpu_seconds']:.1f} s, {result['alert_events']} alert events)\n"
        f"a week ({results['week_mentions']:,} mentions): {week:,.0f} s, {kind} "
        f"(target < {TARGET_SECONDS:.0f} s: {week / TARGET_SECONDS:.1f}x the target)"
    )
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
