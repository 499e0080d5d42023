"""Throughput of the in-process pipeline from a replay file (no broker, no network).

    .venv/bin/python bench/pipeline.py [--repeat N] [--mentions N] [--json PATH]

Each file goes through ``xwatch.backtest.replay_file``: the replay source (read, parse)
and the daemon's ``Pipeline`` (dedup, language and sentiment with the default scorers,
brand and topic matching, buckets at every scale, the detectors, the rules, the alert
lifecycle), as ``xwatch backtest`` runs it. Two files:

* dense: synthetic posts (``synthetic.py``: the demo's texts) for 100 brands, found by
  their terms (as posts from X are), about 5,000 posts per second of event time: the
  cost per post, with few buckets closing;
* demo: the bundled demo week (one brand, 25,718 posts, a bucket closing for about every
  post): the cost per bucket weighs as much as the cost per post.

Mentions per second of wall time, best of ``--repeat`` runs; the setup (config, rules,
sentiment resources: timed on its own) is not counted. CPU seconds per mention are shown
too: the machine is shared, and CPU time moves less than wall time when it is busy.

The dense file also goes through ``replay_in_processes`` with ``--jobs`` processes (2:
this machine's cores), as ``xwatch backtest --jobs`` runs it: the brands split across
processes, each reading and parsing the whole file. Its fixed cost (starting the
processes, each one's setup) is measured on a one-post file and not counted either.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from machine import machine, write_json  # bench/machine.py (scripts run with bench/ on sys.path)
from prometheus_client import CollectorRegistry
from synthetic import Corpus, brand_ids, config_yaml, history, write_history

from xwatch import gc_tuning
from xwatch.backtest import replay_file, replay_in_processes
from xwatch.demo.generate import bundled_demo_path
from xwatch.metrics import Metrics
from xwatch.pipeline import Pipeline
from xwatch.sentiment.trained import router_from_config
from xwatch.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "bench"
DENSE_BRANDS = 100
DENSE_RATE = 5000.0  # posts per second of event time
TARGET = 30_000.0  # mentions/s (issue #9)
START = datetime(2026, 11, 16, 9, tzinfo=UTC)


def dense_file(mentions: int) -> Path:
    """The dense synthetic replay file (made once, kept under build/bench/)."""
    path = BUILD / f"dense-{DENSE_BRANDS}-brands-{mentions}.jsonl"
    if not path.exists():
        BUILD.mkdir(parents=True, exist_ok=True)
        seconds = mentions / DENSE_RATE
        per_brand_per_day = DENSE_RATE / DENSE_BRANDS * 86400
        lines = history(Corpus.load(), brand_ids(DENSE_BRANDS), START, seconds, per_brand_per_day)
        write_history(path.with_suffix(".tmp"), lines)
        path.with_suffix(".tmp").rename(path)
    return path


def settings_for(name: str, brands: list[str] | None, path: Path) -> Settings:
    """The embedded default config for the demo; for the dense file, its brands."""
    if brands is None:
        return load_settings(None, default_base=ROOT)
    config = BUILD / f"{name}-config.yaml"
    source = {"type": "replay", "path": str(path)}
    config.write_text(config_yaml(brands, [source], ROOT), "utf-8")
    return load_settings(config)


def count_lines(path: Path) -> int:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as lines:
        return sum(1 for line in lines if line.strip())


def measure(settings: Settings, path: Path, repeat: int) -> dict[str, Any]:
    """Best wall time and CPU time of ``replay_file`` on ``path``, less the setup."""
    setup = []
    for _ in range(repeat):  # what replay_file does before the first post
        started = time.perf_counter()
        config = settings.config
        router = router_from_config(config)
        Pipeline(config, settings.rules, settings.playbooks, router, Metrics(CollectorRegistry()))
        setup.append(time.perf_counter() - started)
    walls, cpus, events = [], [], 0
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        events = len(asyncio.run(replay_file(settings, path)))
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    mentions = count_lines(path)
    best_setup = min(setup)
    return {
        "mentions": mentions,
        "alert_events": events,
        "seconds": min(walls) - best_setup,
        "setup_seconds": best_setup,
        "rate": mentions / (min(walls) - best_setup),
        "cpu_us_per_mention": (min(cpus) - best_setup) / mentions * 1e6,
    }


def measure_jobs(settings: Settings, path: Path, jobs: int, repeat: int) -> dict[str, Any]:
    """Best wall time of ``replay_in_processes`` on ``path``, less its fixed cost (the
    same on a file of its first post alone)."""
    first = BUILD / f"{path.stem}-first-post.jsonl"
    with path.open("rb") as lines:
        first.write_bytes(next(line for line in lines if line.strip()))

    def best(file: Path) -> float:
        walls = []
        for _ in range(repeat):
            started = time.perf_counter()
            replay_in_processes(settings, file, jobs)
            walls.append(time.perf_counter() - started)
        return min(walls)

    fixed = best(first)
    seconds = best(path) - fixed
    mentions = count_lines(path)
    return {
        "mentions": mentions,
        "jobs": jobs,
        "seconds": seconds,
        "fixed_seconds": fixed,
        "rate": mentions / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=2, help="runs per file (best is kept)")
    parser.add_argument("--mentions", type=int, default=100_000, help="posts in the dense file")
    parser.add_argument("--json", type=Path, help="write the figures there")
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="processes for the split run"
    )
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    dense = dense_file(args.mentions)
    results: dict[str, Any] = {"benchmark": "pipeline", "machine": machine(), "target": TARGET}
    dense_settings = settings_for("dense", brand_ids(DENSE_BRANDS), dense)
    gc_tuning.settle()  # as ``xwatch backtest`` does once its settings are loaded
    results["dense"] = measure(dense_settings, dense, args.repeat)
    results["dense"]["brands"] = DENSE_BRANDS
    results["dense_jobs"] = measure_jobs(dense_settings, dense, args.jobs, args.repeat)
    results["demo"] = measure(
        settings_for("demo", None, bundled_demo_path()), bundled_demo_path(), args.repeat
    )
    results["demo"]["brands"] = 1
    print(
        f"\n| replay file | brands | mentions | mentions/s | CPU µs/mention | vs {TARGET:,.0f}/s |"
    )
    print("|---|--:|--:|--:|--:|--:|")
    for name in ("dense", "demo"):
        r = results[name]
        print(
            f"| {name} | {r['brands']} | {r['mentions']:,} | {r['rate']:,.0f} "
            f"| {r['cpu_us_per_mention']:.0f} | {r['rate'] / TARGET:.0%} |"
        )
    j = results["dense_jobs"]
    print(
        f"| dense, {j['jobs']} processes | {DENSE_BRANDS} | {j['mentions']:,} | {j['rate']:,.0f} "
        f"| - | {j['rate'] / TARGET:.0%} |"
    )
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
