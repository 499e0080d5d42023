"""Where the in-process pipeline spends its time: cProfile of a replay, by component.

    .venv/bin/python bench/hotpath.py [--mentions N] [--top N] [--json PATH]

Profiles ``xwatch.backtest.replay_file`` (the replay source and the daemon's pipeline,
as ``bench/pipeline.py`` times it) on the dense synthetic file (100 brands found by
their terms), on the bundled demo week, and on 3 hours of ``bench/backtest_speed.py``'s
history (100 brands at the demo brand's rate: closing buckets weighs most there). The
profiler itself slows the run about 2x; the shares are what matter (other work on the
machine adds noise to them).

Each function's own time goes to a component (parse, sentiment, brand matching,
buckets, detectors, rules...). Time in built-ins and in the standard library (regex
searches, ``dataclasses.replace``, ``asyncio``) goes to the functions that called them,
in proportion, so that "rules" includes the regexes the rules run. Then the functions
with the most time, the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
from collections import defaultdict
from pathlib import Path
from typing import Any

from backtest_speed import history_file
from machine import machine, write_json  # bench/machine.py (scripts run with bench/ on sys.path)
from pipeline import DENSE_BRANDS, dense_file, settings_for
from synthetic import brand_ids

from xwatch.backtest import replay_file
from xwatch.demo.generate import bundled_demo_path
from xwatch.settings import Settings

Func = tuple[str, int, str]  # (file, line, name), as pstats keys them

# (part of the file path, component); the first match wins.
COMPONENTS = (
    ("json/", "parse: JSON"),
    ("xwatch/sources/payload.py", "parse: payload → Mention"),
    ("xwatch/sources/replay.py", "replay source (file, gzip)"),
    ("gzip.py", "replay source (file, gzip)"),
    ("xwatch/sentiment/", "sentiment"),
    ("vaderSentiment", "sentiment"),
    ("xwatch/dedup.py", "dedup"),
    ("xwatch/detect/buckets.py", "buckets (aggregate, close)"),
    ("xwatch/detect/terms.py", "term trackers"),
    ("xwatch/detect/history.py", "history (alert charts)"),
    ("xwatch/detect/", "detectors (score, learn)"),
    ("xwatch/rules.py", "rules (topic match, firing)"),
    ("xwatch/alerting/", "alert lifecycle"),
    ("xwatch/metrics.py", "metrics"),
    ("prometheus_client", "metrics"),
    ("xwatch/model.py", "records (model.py)"),
    ("xwatch/clock.py", "pipeline (clock)"),
)
# pipeline.py by function: its stages are worth telling apart
PIPELINE_PARTS = {
    "_brands_of": "brand matching (pipeline._brands_of)",
    "ingest": "pipeline.ingest (glue: dedup, brands)",
    "enrich": "pipeline.enrich (glue)",
    "_score": "pipeline.enrich (glue)",
    "_count_languages": "pipeline.enrich (glue)",
    "_aggregate": "pipeline._aggregate (glue)",
    "_add_author": "pipeline._aggregate (glue)",
}


def transparent(func: Func) -> bool:
    """Built-ins, the standard library and comprehensions: their time goes to whoever
    called them (a generator expression's to the function it is written in)."""
    path, _, name = func
    if path == "~" or path.startswith("<") or name.startswith("<"):
        return True
    return (
        "/lib/python3" in path
        and "site-packages" not in path
        and not path.endswith(("json/decoder.py", "json/__init__.py", "gzip.py"))
    )


def component(func: Func) -> str:
    path, _, name = func
    if path.endswith("xwatch/pipeline.py"):
        return PIPELINE_PARTS.get(name, "pipeline (other: close, judge, alerts)")
    for part, label in COMPONENTS:
        if part in path:
            return label
    if "/bench/" in path:
        return "benchmark harness"
    if "xwatch/" in path:
        return f"other xwatch ({path.rsplit('xwatch/', 1)[1]})"
    return "other"


def attribute(stats: dict[Func, Any]) -> dict[Func, float]:
    """Each non-transparent function's own time plus its share of the transparent
    functions it called (recursively, by the time each caller spent in them)."""
    owned: dict[Func, float] = defaultdict(float)

    def give(func: Func, amount: float, depth: int) -> None:
        if not transparent(func) or depth > 20:
            owned[func] += amount
            return
        callers = stats[func][4] if func in stats else {}
        total = sum(entry[2] for entry in callers.values())
        if total <= 0:
            owned[func] += amount
            return
        for caller, entry in callers.items():
            give(caller, amount * entry[2] / total, depth + 1)

    for func, (_, _, own, _, _) in stats.items():
        give(func, own, 0)
    return owned


def profile(settings: Settings, path: Path) -> tuple[float, dict[Func, Any]]:
    # The default (wall) clock: a CPU-time clock is a system call here, and its cost on
    # every call would weigh the functions called most.
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(replay_file(settings, path))
    profiler.disable()
    stats = pstats.Stats(profiler)
    return stats.total_tt, stats.stats  # type: ignore[attr-defined]


def report(name: str, total: float, stats: dict[Func, Any], top: int) -> dict[str, Any]:
    owned = attribute(stats)
    by_component: dict[str, float] = defaultdict(float)
    for func, amount in owned.items():
        by_component[component(func)] += amount
    print(f"\n{name}: {total:.1f} s under the profiler\n")
    print("| component | share |")
    print("|---|--:|")
    for label, amount in sorted(by_component.items(), key=lambda kv: -kv[1]):
        if amount / total >= 0.005:
            print(f"| {label} | {amount / total:.1%} |")
    print("\n| function (own time + the built-ins it called) | share |")
    print("|---|--:|")
    functions = sorted(owned.items(), key=lambda kv: -kv[1])[:top]
    for func, amount in functions:
        where = func[0].split("/site-packages/")[-1].split("/work/main/")[-1]
        print(f"| {where}:{func[1]} {func[2]} | {amount / total:.1%} |")
    return {
        "seconds": total,
        "components": {
            k: v / total for k, v in sorted(by_component.items(), key=lambda kv: -kv[1])
        },
        "functions": [
            {"function": f"{f[0].split('/work/main/')[-1]}:{f[1]} {f[2]}", "share": a / total}
            for f, a in functions
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mentions", type=int, default=100_000, help="the dense file's size")
    parser.add_argument("--top", type=int, default=15, help="functions listed")
    parser.add_argument("--json", type=Path, help="write the shares there")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    results: dict[str, Any] = {"benchmark": "hotpath", "machine": machine()}
    dense = dense_file(args.mentions)
    total, stats = profile(settings_for("dense", brand_ids(DENSE_BRANDS), dense), dense)
    results["dense"] = report(f"dense ({DENSE_BRANDS} brands)", total, stats, args.top)
    demo = bundled_demo_path()
    total, stats = profile(settings_for("demo", None, demo), demo)
    results["demo"] = report("demo week", total, stats, args.top)
    history, _ = history_file(DENSE_BRANDS, 3.0)
    total, stats = profile(settings_for("history", brand_ids(DENSE_BRANDS), history), history)
    results["history"] = report(f"history ({DENSE_BRANDS} brands, 3 h)", total, stats, args.top)
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
