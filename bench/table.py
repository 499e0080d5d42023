"""Run every benchmark and print one table: the figures, the targets, the ratios.

    .venv/bin/python bench/table.py [--full] [--only NAME ...] [--no-run]

Each benchmark runs in a process of its own, one after the other (they share 2 cores:
running two at once would measure each other), prints its own details as it goes and
writes its figures to build/bench/NAME.json; then this prints the summary table and
writes it to build/bench/summary.json. ``make bench`` runs the short version (about 10
minutes on this 2-core machine); ``--full`` the long one (about an hour and a half: a
30-minute soak after a 16-minute warm-up, the whole week's backtest, larger floods and
more spikes). ``--no-run`` prints the table from the JSON files already there.

Targets are issue #9's; "vs target" is the measured figure over the target (higher is
better for rates, lower for times and growth).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from machine import machine  # bench/machine.py (scripts run with bench/ on sys.path)

BENCH = Path(__file__).resolve().parent
OUT = BENCH.parent / "build" / "bench"
MIB = 1024 * 1024

# name: (script, short arguments, full arguments)
RUNS: dict[str, tuple[str, list[str], list[str]]] = {
    "pipeline": ("pipeline.py", ["--repeat", "1", "--mentions", "50000"], ["--repeat", "3"]),
    "hotpath": ("hotpath.py", ["--mentions", "30000"], ["--mentions", "100000"]),
    "end_to_end": (
        "end_to_end.py",
        # a flood of 10 s or more: the rate the daemon sustains, its start-up (the series
        # made, their first buckets) weighing little (40,000 read 8,500-9,900/s, 150,000
        # 10,600-11,100/s on one day)
        ["--count", "100000", "--latency-seconds", "60"],
        ["--count", "150000", "--latency-seconds", "300"],
    ),
    "memory": (
        "memory.py",
        ["--soak-minutes", "2"],
        ["--soak-minutes", "30", "--warm-seconds", "990"],
    ),
    "backtest_speed": ("backtest_speed.py", ["--hours", "3"], ["--days", "7"]),
    "detection": ("detection.py", ["--quick"], []),
    "rhythm": ("rhythm.py", [], ["--seeds", "10"]),
    "regime": ("regime.py", [], ["--seeds", "6"]),
    "shifts": ("shifts.py", ["--seeds", "2"], ["--seeds", "6"]),
    "warm_start": ("warm_start.py", [], ["--seeds", "10"]),
    "cost": ("cost.py", ["--quick"], ["--series", "10000"]),
    "journal": ("journal.py", ["--posts", "100000"], ["--posts", "300000"]),
}

Row = tuple[str, str, str, str]  # what, measured, target, measured vs target
NOTES = (
    "Alert latency: from the publication of a spike's first post to the daemon calling the "
    "notifier's send(), and to a local Slack receiving the message (the real Slack notifier "
    "and slack-sdk, tests/fake_slack.py); a count rule fires at the post that makes it hold, "
    "on its bucket still open (a share rule waits for the bucket to close: here 10 s + 1 s "
    "allowed lateness; with the default config 60 s + 60 s).",
    "Everything shares 2 cores (publisher, broker, daemon; and whatever else runs): "
    "compare ratios measured in the same run.",
)


def run(name: str, full: bool) -> str:
    """Run one benchmark; "" when it went well, else why not."""
    script, short, long = RUNS[name]
    command = [sys.executable, str(BENCH / script), *(long if full else short)]
    command += ["--json", str(OUT / f"{name}.json")]
    print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    code = subprocess.call(command)
    print(f"=== {name}: {time.monotonic() - started:.0f} s, exit {code}", flush=True)
    if code == 2 and name == "detection":
        return "skipped: no ../shared/data/nab"
    return "" if code == 0 else f"failed (exit {code})"


def load(name: str) -> dict[str, Any] | None:
    path = OUT / f"{name}.json"
    return json.loads(path.read_text("utf-8")) if path.exists() else None


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}/s"


def ratio(measured: float | None, target: float | None) -> str:
    if measured is None or not target:
        return "-"
    return f"{measured / target:.0%}"


def pipeline_rows(r: dict[str, Any]) -> list[Row]:
    target = r["target"]
    rows = []
    for name, label in (("dense", "dense replay, 100 brands"), ("demo", "demo week, 1 brand")):
        d = r[name]
        rows.append(
            (
                f"In-process pipeline, {label} ({d['mentions']:,} mentions)",
                f"{rate(d['rate'])} ({d['cpu_us_per_mention']:.0f} µs CPU each)",
                f">= {target:,.0f}/s",
                ratio(d["rate"], target),
            )
        )
    j = r.get("dense_jobs")
    if j is not None:
        rows.append(
            (
                f"In-process pipeline, dense replay split across {j['jobs']} processes "
                f"(xwatch backtest --jobs {j['jobs']})",
                f"{rate(j['rate'])} (start-up not counted: {j['fixed_seconds']:.1f} s)",
                f">= {target:,.0f}/s",
                ratio(j["rate"], target),
            )
        )
    return rows


def end_to_end_rows(r: dict[str, Any]) -> list[Row]:
    x, ceiling, sub = r["xwatch"], r["aiomqtt"], r["mosquitto_sub"]
    cpu = x.get("cpu_seconds", {})
    rows: list[Row] = [
        (
            f"MQTT end to end: xwatch ({x.get('count', 0):,} msgs, 100 brands, "
            f"mean batch {x.get('mean_batch', 0):.0f})",
            f"{rate(x.get('rate'))} (CPU s: daemon {cpu.get('consumer', 0):.0f}, "
            f"publisher {cpu.get('publisher', 0):.0f}, broker {cpu.get('broker', 0):.0f})",
            ">= 10,000/s",
            ratio(x.get("rate"), 10_000),
        ),
        (
            "MQTT ceiling: plain aiomqtt subscriber, xwatch vs it",
            rate(ceiling.get("rate")),
            ">= 50 %",
            ratio(x.get("rate"), ceiling.get("rate")),
        ),
        (
            "MQTT: the same subscriber, paho's property tables shared (xwatch reads in bulk)",
            rate(r.get("aiomqtt_shared_tables", {}).get("rate")),
            "-",
            f"xwatch {ratio(x.get('rate'), r.get('aiomqtt_shared_tables', {}).get('rate'))}",
        ),
        (
            "MQTT: mosquitto_sub (C), what broker + machine allow",
            rate(sub.get("rate")),
            "-",
            f"xwatch {ratio(x.get('rate'), sub.get('rate'))}",
        ),
    ]
    v311 = r.get("xwatch_mqtt311")
    if v311:
        rows.append(
            (
                "MQTT end to end: xwatch with protocol 3.1.1 instead of 5",
                rate(v311.get("rate")),
                ">= 10,000/s",
                ratio(v311.get("rate"), 10_000),
            )
        )
    bare = r.get("xwatch_no_journal")
    if bare:
        rows.append(
            (
                "MQTT end to end: xwatch without its ingest journal (store.journal: false)",
                rate(bare.get("rate")),
                "-",
                f"with it {ratio(x.get('rate'), bare.get('rate'))}",
            )
        )
    for level, lat in r["latency"].items():
        p50, p99 = lat["p50_seconds"], lat["p99_seconds"]
        shown = "-" if p50 is None else f"p50 {p50 * 1000:,.0f} ms, p99 {p99 * 1000:,.0f} ms"
        slack50, slack99 = lat.get("slack_p50_seconds"), lat.get("slack_p99_seconds")
        if slack50 is not None and slack99 is not None:
            shown += f"; at Slack p50 {slack50 * 1000:,.0f} ms, p99 {slack99 * 1000:,.0f} ms"
        rows.append(
            (
                f"Alert latency at {level} of it ({rate(lat['achieved_rate'])}), see note",
                f"{shown} ({lat['notified']}/{lat['spikes']} spikes alerted, "
                f"{lat['false_alarms']} false, {lat.get('mention_notices', '-')} by mention "
                f"rules, {lat['late']:.0f} late posts)",
                "-",
                "-",
            )
        )
    return rows


def memory_rows(r: dict[str, Any]) -> list[Row]:
    return [
        (
            f"Memory soak: {r['series']:,} series, {rate(r['achieved_rate'])}, "
            f"{r['soak_seconds'] / 60:g} min after {r['warm_seconds'] / 60:.1f} min warm-up",
            f"RSS {r['rss_start_bytes'] / MIB:,.0f} -> {r['rss_end_bytes'] / MIB:,.0f} MiB "
            f"({r['growth']:+.1%}, {r['slope_mib_per_hour']:+.0f} MiB/h)",
            "within 10 %",
            f"{abs(r['growth']) / r['target_growth']:.0%} of the margin",
        ),
        (
            "Garbage collector over that soak",
            f"{r['collector']['collections'][2]} full collections, "
            f"{r['collector']['seconds_per_minute']:.2f} s a minute, longest pause "
            f"{r['collector']['longest_pause_seconds']:.2f} s",
            "",
            "",
        ),
    ]


def backtest_rows(r: dict[str, Any]) -> list[Row]:
    kind = f"projected from {r['hours']:g} h in warm-up, low" if r["projected"] else "measured"
    return [
        (
            f"Backtest: a week, {r['brands']} brands ({r['week_mentions']:,} mentions)",
            f"{r['week_seconds']:,.0f} s, {kind} ({rate(r['mentions_per_second'])})",
            f"< {r['target_seconds']:.0f} s",
            f"{r['week_seconds'] / r['target_seconds']:.1f}x the time",
        )
    ]


def hotpath_rows(r: dict[str, Any]) -> list[Row]:
    rows = []
    for name in ("dense", "demo", "history"):
        if name not in r:
            continue
        top = list(r[name]["components"].items())[:4]
        shares = ", ".join(f"{label} {share:.0%}" for label, share in top)
        rows.append((f"Hot path ({name}): top components", shares, "-", "-"))
    return rows


def detection_rows(r: dict[str, Any]) -> list[Row]:
    rows = []
    for case in r["summary"]:
        det, ora = case["detector"], case["oracle"]
        rows.append(
            (
                f"Detection delay, {case['case']} (buckets of 5 min, median)",
                f"{det['median'] or 'missed'} vs oracle {ora['median'] or 'missed'} "
                f"(missed {det['miss_rate']:.0%} vs {ora['miss_rate']:.0%})",
                "<= 1.5x the oracle",
                "-" if case["ratio_median"] is None else f"{case['ratio_median']:.2f}x",
            )
        )
    return rows


def false_alarm_row(what: str, rows: list[dict[str, Any]], alerts: int) -> Row:
    """One row of ``bench/rhythm.py``: the rate at 0.999 per size, against the issue's test
    of calibration (nominal about 1 in 1,000 buckets each way; "within 2x")."""
    rates = [1000 * row["at_0_999"] / max(1, row["buckets"]) for row in rows]
    sizes = " / ".join(f"{row['posts_per_day']:,}" for row in rows)
    return (
        f"False alarms at 0.999 per 1,000 buckets, {what}, {sizes} posts a day",
        " / ".join(f"{rate:.1f}" for rate in rates) + f" ({alerts} shipped-rule alerts)",
        "<= 2 (nominal 1)",
        f"{max(rates) / 2:.1f}x the bound",
    )


def rhythm_rows(r: dict[str, Any]) -> list[Row]:
    """False alarms on steady rhythmic streams: the volume detector's, then the share's."""
    rows = []
    for weekend in sorted({row["weekend"] for row in r["rows"]}, reverse=True):
        mine = [row for row in r["rows"] if row["weekend"] == weekend]
        alerts = sum(row["spike_alerts"] + row["drop_alerts"] for row in mine)
        shape = "weekends as weekdays" if weekend == 1.0 else f"weekends at {weekend:g}x"
        rows.append(false_alarm_row(f"steady rhythmic streams ({shape})", mine, alerts))

    def shape_of(row: dict[str, Any]) -> tuple[float, float, float]:
        return row["amplitude"], row.get("concentration") or 0.0, row.get("weekend", 1.0)

    for amplitude, concentration, weekend in sorted(
        {shape_of(row) for row in r.get("share_rows", [])}
    ):
        mine = [
            row for row in r["share_rows"] if shape_of(row) == (amplitude, concentration, weekend)
        ]
        shape = "steady" if amplitude == 0.0 else f"with a daily rhythm (x1 +/- {amplitude:g})"
        if concentration:
            shape = f"wandering (concentration {concentration:g})"
        if weekend != 1.0:
            shape = f"{weekend:g}x at weekends"
        alerts = sum(row["share_alerts"] for row in mine)
        rows.append(false_alarm_row(f"negative share {shape}", mine, alerts))
    return rows


def regime_rows(r: dict[str, Any]) -> list[Row]:
    """The volume detector's calibration after a change of regime, fading or not."""
    figures = "; ".join(
        f"{name}: {row['median_delay']:g} buckets ({row['calm_median_delay']:g} on a series "
        f"calm throughout), {row['episodes_per_week']:.1f} a week"
        for name, row in r["detectors"].items()
    )
    return [
        (
            f"After a change of regime ({r['weeks_per_phase']}-week phases): x3 crisis delay "
            "once calm after a bursty phase; alarms a week once bursty after a calm one",
            figures,
            "-",
            "-",
        )
    ]


def shifts_rows(r: dict[str, Any]) -> list[Row]:
    """Lasting changes: hours a doubling alarms before it is the new normal; alarms after
    a feed's return from a silence."""
    steps = "; ".join(
        f"{row['per_bucket']:g} a bucket: {max(row['hours']):.1f} h" for row in r["steps"]
    )
    returns = "; ".join(
        f"{row['silent_days']} days: {max(row['alarming_buckets'])}" for row in r["returns"]
    )
    return [
        (
            "A lasting x2: hours to its last alarm, the worst stream (adopted after 3 h held)",
            steps,
            "-",
            "-",
        ),
        ("A feed back after a silence: alarming buckets in the 2 weeks after", returns, "-", "-"),
    ]


def warm_start_rows(r: dict[str, Any]) -> list[Row]:
    """A new brand's first live weeks, with and without the warm start from X's counts."""
    rows = []
    for warm in (False, True):
        mine = [row for row in r["rows"] if row["warm_start"] is warm]
        sizes = " / ".join(f"{row['posts_per_day']:,}" for row in mine)
        rows.append(
            (
                f"A new brand's first 2 live weeks, {'with' if warm else 'without'} a warm "
                f"start from X's counts ({sizes} posts a day): first day judged; at 0.999 "
                "per 1,000 buckets judged",
                " / ".join(f"{row['first_day_judged']:.0%}" for row in mine)
                + "; "
                + " / ".join(f"{row['per_1000']:.1f}" for row in mine),
                "<= 2 (nominal 1)",
                f"{max(row['per_1000'] for row in mine) / 2:.1f}x the bound",
            )
        )
    return rows


def cost_rows(r: dict[str, Any]) -> list[Row]:
    per_series = r["time"]["by_detector_and_mean_count"]["per series (default_detectors: all 3)"]
    memory = r["memory"]
    worst = max(memory["rss_marginal_per_series"], memory["traced_per_series_30_days"])
    projected = memory["rss_baseline_bytes"] + worst * memory["projection_series"]
    return [
        (
            "Detector cost per series per bucket (mean 5 / 50 / 500 posts)",
            " / ".join(f"{v:.0f} µs" for v in per_series.values()),
            "-",
            "-",
        ),
        (
            f"Detector memory, {memory['projection_series']:,} series (projected)",
            f"{projected / MIB:,.0f} MiB",
            f"< {memory['target_bytes'] / MIB:,.0f} MiB",
            ratio(projected, memory["target_bytes"]),
        ),
    ]


def journal_rows(r: dict[str, Any]) -> list[Row]:
    write, start = r["write"], r["start"]
    return [
        (
            "Ingest journal: write per post, size per post",
            f"{write['us_per_post']:.1f} µs, {write['bytes_per_post']:.0f} bytes",
            "-",
            "-",
        ),
        (
            f"Ingest journal: a start reading back {start['posts']:,} posts "
            f"({start['brands']} brands)",
            f"{start['seconds']:.1f} s ({rate(start['posts_per_second'])})",
            "-",
            "-",
        ),
    ]


BUILDERS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "pipeline": pipeline_rows,
    "end_to_end": end_to_end_rows,
    "memory": memory_rows,
    "backtest_speed": backtest_rows,
    "hotpath": hotpath_rows,
    "detection": detection_rows,
    "rhythm": rhythm_rows,
    "regime": regime_rows,
    "shifts": shifts_rows,
    "warm_start": warm_start_rows,
    "cost": cost_rows,
    "journal": journal_rows,
}


def table(problems: dict[str, str]) -> list[Row]:
    rows: list[Row] = []
    for name, build in BUILDERS.items():
        result = load(name)
        if problems.get(name) or result is None:
            rows.append((name, problems.get(name) or "not run", "-", "-"))
            continue
        try:
            rows.extend(build(result))
        except (KeyError, TypeError, ValueError) as exc:  # a result from an older version
            rows.append((name, f"unreadable result ({exc!r})", "-", "-"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="the long version (1.5 hours)")
    parser.add_argument("--only", nargs="+", choices=sorted(RUNS), help="run only these")
    parser.add_argument("--no-run", action="store_true", help="only print the table")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    problems: dict[str, str] = {}
    if not args.no_run:
        for name in args.only or list(RUNS):
            problems[name] = run(name, args.full)
    rows = table(problems)
    header: Row = ("benchmark", "measured", "target", "vs target")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    print(f"\nmachine: {machine()}; {time.monotonic() - started:.0f} s")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |")
    summary = {"machine": machine(), "full": args.full, "rows": [list(row) for row in rows]}
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    for note in NOTES:
        print(note)
    print(f"table written to {OUT / 'summary.json'}")


if __name__ == "__main__":
    main()
