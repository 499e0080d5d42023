"""The ingest journal's cost: writing each post, its size, and reading it back at start.

    .venv/bin/python bench/journal.py [--posts N] [--brands N] [--json PATH]

* Write: ``Journal.append`` of one post at a time (as the daemon does for each post a live
  source hands over), microseconds per post, and bytes per post on disk. Posts: the
  synthetic stream of ``synthetic.py`` (the demo's texts) for ``--brands`` brands.
* Start: a daemon (``Daemon``, MQTT source pointed at a port nobody listens on: it
  retries in the background) whose store has no checkpoint yet and whose journal holds
  the ``--posts`` posts (dated over the last minutes, as after a crash); the time from
  ``run()`` to ``started`` is the start-up's cost of the journal: reading every post
  back and counting it again through the pipeline (the web server answers meanwhile).

Figures depend on the machine (see ``machine()``): compare them as ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from machine import machine, write_json  # bench/machine.py (scripts run with bench/ on sys.path)
from synthetic import Corpus, brand_ids, config_yaml, history

from xwatch.daemon import Daemon
from xwatch.journal import Journal, encode
from xwatch.model import Mention
from xwatch.settings import load_settings
from xwatch.sources.payload import parse_payload

ROOT = Path(__file__).resolve().parent.parent


def posts(count: int, brands: list[str]) -> list[Mention]:
    """``count`` posts of the synthetic stream, the last one a minute ago."""
    rate = 1000.0  # posts per second of event time
    start = datetime.now(UTC) - timedelta(seconds=count / rate + 60)
    per_brand_per_day = rate / len(brands) * 86400
    out: list[Mention] = []
    lines = history(Corpus.load(), brands, start, count / rate * 1.2, per_brand_per_day)
    for line in lines:
        out.extend(parse_payload(line, "mqtt"))
        if len(out) >= count:
            break
    return out[:count]


def write_cost(mentions: list[Mention], folder: Path) -> dict[str, float]:
    journal = Journal.open(folder)
    started = time.perf_counter()
    for mention in mentions:
        journal.append((mention,))
    seconds = time.perf_counter() - started
    journal.close()
    return {
        "us_per_post": seconds / len(mentions) * 1e6,
        "bytes_per_post": sum(len(encode(m)) for m in mentions) / len(mentions),
    }


async def start_cost(folder: Path, brands: list[str]) -> float:
    """Seconds from ``run()`` to ``started`` for a daemon whose journal is in ``folder``."""
    source = {"type": "mqtt", "host": "127.0.0.1", "port": 9, "reconnect_max_seconds": 5}
    config = folder / "config.yaml"
    config.write_text(config_yaml(brands, [source], ROOT, store=folder / "xwatch.sqlite3"), "utf-8")
    daemon = Daemon(load_settings(config))
    started = time.perf_counter()
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.started.wait(), 3600)
        return time.perf_counter() - started
    finally:
        daemon.stop.set()
        await asyncio.wait_for(task, 60)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--brands", type=int, default=100)
    parser.add_argument("--json", type=Path, help="write the figures there")
    args = parser.parse_args()
    brands = brand_ids(args.brands)
    mentions = posts(args.posts, brands)
    results: dict[str, Any] = {"benchmark": "journal", "machine": machine()}
    print(f"machine: {results['machine']}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        results["write"] = write_cost(mentions, Path(scratch) / "write")
    print(f"write: {results['write']}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        journal = Journal.open(folder / "xwatch.sqlite3.journal")
        journal.append(mentions)
        journal.close()
        seconds = asyncio.run(start_cost(folder, brands))
    rate = len(mentions) / seconds
    results["start"] = {
        "posts": len(mentions),
        "brands": args.brands,
        "seconds": seconds,
        "posts_per_second": rate,
    }
    print(f"start: {results['start']}", flush=True)
    print()
    print("| what | figure |")
    print("|---|--:|")
    print(f"| write, one post at a time | {results['write']['us_per_post']:.1f} µs a post |")
    print(f"| size on disk | {results['write']['bytes_per_post']:.0f} bytes a post |")
    print(
        f"| start with {len(mentions):,} posts in the journal ({args.brands} brands) "
        f"| {seconds:.1f} s ({rate:,.0f} posts/s) |"
    )
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
