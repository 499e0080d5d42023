"""Throughput of the in-process pipeline on the bundled demo (no broker, no I/O but the file).

    .venv/bin/python bench/pipeline.py [--repeat N]

Prints mentions per second for: parsing only, parsing + sentiment, and the whole
pipeline (dedup, enrichment, buckets at every scale, detectors, rules, lifecycle),
plus microseconds per closed bucket in the detectors. Figures depend on the
machine: compare them as ratios, and note the machine with them.
"""

from __future__ import annotations

import argparse
import gzip
import time
from collections.abc import Callable
from pathlib import Path

from machine import machine  # bench/machine.py (scripts run with bench/ on sys.path)
from prometheus_client import CollectorRegistry

from xwatch.demo.generate import bundled_demo_path
from xwatch.metrics import Metrics
from xwatch.model import Mention
from xwatch.pipeline import Pipeline
from xwatch.sentiment.router import default_router
from xwatch.settings import load_settings
from xwatch.sources.payload import parse_payload

ROOT = Path(__file__).resolve().parent.parent


def read_lines() -> list[bytes]:
    with gzip.open(bundled_demo_path()) as handle:
        return [line for line in handle if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best is kept)")
    args = parser.parse_args()
    lines = read_lines()
    settings = load_settings(None, default_base=ROOT)

    def best(run: Callable[[], object]) -> float:
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return min(times)

    mentions: list[Mention] = []

    def parse() -> None:
        mentions.clear()
        for line in lines:
            mentions.extend(parse_payload(line, "bench"))

    router = default_router("en")

    def sentiment() -> None:
        for i in range(0, len(mentions), 1000):
            chunk = mentions[i : i + 1000]
            router.score([m.text for m in chunk], [m.lang for m in chunk])

    closed = [0]

    def pipeline() -> None:
        registry = CollectorRegistry()
        p = Pipeline(settings.config, settings.rules, settings.playbooks, router, Metrics(registry))
        for i in range(0, len(mentions), 1000):
            p.ingest(mentions[i : i + 1000])
        p.flush()
        closed[0] = int(
            sum(
                registry.get_sample_value("xwatch_buckets_closed_total", {"scale": s}) or 0
                for s in ("1m", "5m", "15m")
            )
        )

    t_parse = best(parse)
    t_sentiment = best(sentiment)
    t_pipeline = best(pipeline)
    n = len(mentions)
    print(f"machine: {machine()}")
    print(f"{n} mentions, {closed[0]} buckets closed per run (best of {args.repeat})")
    print(f"{'stage':<40}{'mentions/s':>12}")
    print(f"{'parse JSON lines':<40}{n / t_parse:>12,.0f}")
    print(f"{'sentiment (routed, en + ja)':<40}{n / t_sentiment:>12,.0f}")
    print(f"{'whole pipeline (from parsed mentions)':<40}{n / t_pipeline:>12,.0f}")


if __name__ == "__main__":
    main()
