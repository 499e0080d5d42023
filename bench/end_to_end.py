"""End to end over MQTT: sustained throughput against the broker's ceiling, and alert latency.

    .venv/bin/python bench/end_to_end.py [--count N] [--latency-seconds S] [--json PATH]

Everything runs on this machine: mosquitto (our own, on a free port), a publisher in a
process of its own (``publisher.py``: synthetic posts for 100 brands, QoS 1, one post per
message on ``xwatch/mentions/<brand>``), and the consumer in this process.

Throughput: the publisher floods N messages (the broker queues what the consumer has not
taken yet) and the consumer's rate is measured from the 10 % to the 100 % mark, for:

* ``mosquitto_sub`` (C, QoS 1, output thrown away): what the broker and the machine allow;
* a plain aiomqtt subscriber that does nothing (MQTT 5, QoS 1, the same Receive Maximum
  as xwatch), on paho-mqtt as released: the ceiling for a Python consumer built on the
  same library (the issue's ceiling, which the ratios are against);
* the same subscriber with paho's MQTT 5 property tables shared
  (``xwatch.sources.paho_tables``): what is left of the ceiling once paho stops
  rebuilding its tables for every message (the xwatch source installs them too, but
  reads its messages without paho's decoding: ``paho_bulk``, below);
* the xwatch daemon (``Daemon`` with the MQTT source, QoS 1 with manual acks, each post
  in the ingest journal before it is acknowledged, and once without the journal; the
  source reads the socket and writes its acks in bulk, ``xwatch.sources.paho_bulk``): each
  mention through dedup, sentiment, brand and topic matching, buckets, the detectors, the
  rules and the incident book; notifiers that do nothing (``rig.Timed(NullNotifier)``;
  the latency runs below use the Slack notifier);
  the source speaks MQTT 5 (the default), and then 3.1.1 (paho parses the properties of
  every MQTT 5 message, a cost 3.1.1 does not have). The allowed lateness is the
  default's (60 s, so that the posts waiting at the broker are not late), so few
  buckets close during a flood this short: this is the cost per post (at 100 brands and
  thousands of posts a second, closing buckets costs a few % more; the latency runs
  below close 10-second buckets all the time).

Latency: a fresh daemon, its detectors warmed up on a day of the same traffic, fed at
10 % and at 80 % of the throughput xwatch sustained, while every 10-second bucket
``--spike-brands`` brands get a strong spike (crisis posts, mostly negative: at least
40 and twice the brand's usual count in the bucket, published over its first half). A
spike's latency is the time from the publication of its first post (its bucket's start)
to the daemon calling the notifier's ``send`` for the brand's incident with a part that
a signal rule fired on that bucket (or a later one), and to Slack receiving the message
that shows it: the notifiers are the real Slack notifier (slack-sdk's client) against
the local Slack of the tests (``tests/fake_slack.py``, in this process), which notes
when each request arrives (the ``chat.postMessage`` of a new incident, or the
``chat.update`` of an open one, named by the message's metadata; the chart goes up
after it, in the thread, and is not counted). A count rule fires at the post that
makes it hold, on the bucket still open; a rule on the share waits for the bucket to
close (its end plus the allowed lateness: here 10 s + 1 s; with the default config,
60 s + 60 s). A mention rule may notify on a background post (one of them is a
complaint from a large account, ``high-reach-complaint``); that notice is not the
spike's. Spikes without such a notice are counted as missed; notices of a signal rule
for brands that did not spike, as false alarms; notices of a mention rule for them (a
background post that such a rule is there to catch), apart. (Until an earlier version,
latency was timed from the instant the spike's bucket may close, its end plus the
allowed lateness, when every alert waited for it.)

CPU seconds used by the daemon (this process), the publisher and the broker are
reported with each run: they share 2 cores, so each takes time from the others.
Figures depend on the machine: compare them as ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
from machine import machine, write_json  # bench/machine.py (scripts run with bench/ on sys.path)
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from rig import (
    HOST,
    Broker,
    Run,
    bench_settings,
    finish_publisher,
    notice_brand,
    percentile,
    run_daemon,
    start_publisher,
)

from tests.fake_slack import CHANNELS, FakeSlack
from tests.fake_slack import TOKEN as SLACK_TOKEN
from xwatch.alerting import MemoryRefs
from xwatch.alerting.incidents import Notice
from xwatch.alerting.slack import SlackNotifier
from xwatch.config import SlackNotifierConfig
from xwatch.daemon import Daemon
from xwatch.model import Measure
from xwatch.sources import paho_tables
from xwatch.sources.mqtt import RECEIVE_MAXIMUM

TOPIC = "xwatch/mentions/#"
SPIKE_SCALE = 10
TARGET_RATE = 10_000.0  # mentions/s end to end (issue #9)
TARGET_SHARE = 0.5  # of the ceiling


def mosquitto_sub_ceiling(broker: Broker, count: int, brands: int) -> dict[str, Any]:
    """``mosquitto_sub`` takes ``count`` messages; its rate from the 10 % mark."""
    binary = shutil.which("mosquitto_sub")
    if binary is None:
        return {"skipped": "no mosquitto_sub"}
    with tempfile.TemporaryFile() as out:
        sub = subprocess.Popen(
            [
                binary,
                "-h",
                HOST,
                "-p",
                str(broker.port),
                "-V",
                "mqttv5",
                "-q",
                "1",
                "-t",
                TOPIC,
                "-C",
                str(count),
                "-F",
                "%U",
            ],
            stdout=out,
        )
        time.sleep(0.5)  # subscribed (the broker answers within milliseconds)
        broker0 = broker.cpu()
        publisher = asyncio.run(_publish_flood(broker, count, brands))
        sub.wait(timeout=600)
        out.seek(0)
        stamps = [float(line) for line in out.read().split()]
    return _flood_result(stamps, count, publisher, broker.cpu() - broker0, consumer_cpu=None)


async def _publish_flood(broker: Broker, count: int, brands: int) -> dict[str, Any]:
    process = await start_publisher(broker.port, "--brands", str(brands), "--count", str(count))
    return await finish_publisher(process)


def _flood_result(
    stamps: list[float],
    count: int,
    publisher: dict[str, Any],
    broker_cpu: float,
    consumer_cpu: float | None,
) -> dict[str, Any]:
    if len(stamps) < count:
        return {"error": f"only {len(stamps)} of {count} messages arrived", "count": count}
    first = stamps[count // 10]
    rate = (count - count // 10) / max(stamps[-1] - first, 1e-9)
    return {
        "count": count,
        "rate": rate,
        "seconds": stamps[-1] - stamps[0],
        "publisher_seconds": publisher["ended"] - publisher["started"],
        "cpu_seconds": {
            "consumer": consumer_cpu,
            "publisher": publisher["cpu_seconds"],
            "broker": broker_cpu,
        },
    }


async def aiomqtt_ceiling(
    broker: Broker, count: int, brands: int, *, shared_tables: bool = False
) -> dict[str, Any]:
    """A plain aiomqtt subscriber that counts messages and does nothing else; on paho as
    released, or (``shared_tables``) with its property tables shared as xwatch's source
    has them."""
    if shared_tables:
        paho_tables.install()
    else:
        paho_tables.uninstall()
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.ReceiveMaximum = RECEIVE_MAXIMUM
    stamps: list[float] = []
    async with aiomqtt.Client(
        HOST,
        broker.port,
        identifier=f"xwatch-bench-ceiling-{time.monotonic_ns()}",
        protocol=aiomqtt.ProtocolVersion.V5,
        properties=properties,
    ) as client:
        await client.subscribe(TOPIC, qos=1)
        cpu0, broker0 = time.process_time(), broker.cpu()
        publisher = asyncio.create_task(_publish_flood(broker, count, brands))
        async for _ in client.messages:
            stamps.append(time.time())
            if len(stamps) >= count:
                break
        cpu = time.process_time() - cpu0
        result = await publisher
    return _flood_result(stamps, count, result, broker.cpu() - broker0, consumer_cpu=cpu)


async def xwatch_throughput(
    broker: Broker, count: int, brands: int, protocol: str = "5", *, journal: bool = True
) -> dict[str, Any]:
    """The daemon takes ``count`` flooded messages through the whole pipeline (each post
    written to the ingest journal first, unless ``journal`` is false)."""
    with tempfile.TemporaryDirectory() as folder:
        store = {"enabled": True, "path": str(Path(folder) / "xwatch.sqlite3"), "journal": journal}
        # The default allowed lateness (60 s): the flood waits at the broker for up to
        # count / rate seconds, and the live clock would make older posts late.
        settings = bench_settings(
            Path(folder),
            brands,
            broker.port,
            lateness=60,
            protocol=protocol,
            extra={"store": store},
        )

        def done(daemon: Daemon, publisher: dict[str, Any] | None) -> bool:
            return daemon.ingested >= count

        run = await run_daemon(
            settings,
            broker,
            ["--brands", str(brands), "--count", str(count)],
            done=done,
            traffic_rate=3000.0,
        )
    rate = run.rate_between(count // 10, count)
    return {
        "count": count,
        "rate": rate,
        "seconds": run.wall,
        "series": run.series,
        "publisher_seconds": run.publisher["ended"] - run.publisher["started"],
        "cpu_seconds": {
            "consumer": run.daemon_cpu,
            "publisher": run.publisher["cpu_seconds"],
            "broker": run.broker_cpu,
        },
        "rss_bytes": run.samples[-1][2],
        "duplicates": run.duplicates,
        "late": run.late,
        "mean_batch": run.samples[-1][1] / max(run.batches, 1.0),
    }


async def latency(
    broker: Broker, rate: float, seconds: float, brands: int, spike_brands: int
) -> dict[str, Any]:
    """Spikes at ``rate`` mentions/s: from each spike's first post to ``send`` and to the
    local Slack receiving its message."""
    usual = rate / brands * SPIKE_SCALE  # a brand's posts per bucket
    posts = max(40, round(2 * usual))
    async with FakeSlack() as slack:
        return await _latency_with(slack, broker, rate, seconds, brands, spike_brands, posts)


async def _latency_with(
    slack: FakeSlack,
    broker: Broker,
    rate: float,
    seconds: float,
    brands: int,
    spike_brands: int,
    posts: int,
) -> dict[str, Any]:
    config = SlackNotifierConfig(type="slack", channel=next(iter(CHANNELS)), api_url=slack.api_url)
    refs = MemoryRefs()

    def slack_notifier(name: str) -> SlackNotifier:
        return SlackNotifier(config, name, SLACK_TOKEN, "http://127.0.0.1/incidents/", refs)

    with tempfile.TemporaryDirectory() as folder:
        settings = bench_settings(Path(folder), brands, broker.port)

        def done(daemon: Daemon, publisher: dict[str, Any] | None) -> bool:
            return publisher is not None and time.time() > publisher["ended"] + 3.0

        run = await run_daemon(
            settings,
            broker,
            [
                "--brands",
                str(brands),
                "--rate",
                f"{rate:.1f}",
                "--seconds",
                str(seconds),
                "--spike-after",
                "5",
                "--spike-scale",
                str(SPIKE_SCALE),
                "--spike-brands",
                str(spike_brands),
                "--spike-posts",
                str(posts),
            ],
            done=done,
            traffic_rate=rate,
            make_notifier=slack_notifier,
            limit=seconds + 120,
        )
    return _latency_result(run, rate, posts, slack)


def _latency_result(run: Run, rate: float, posts: int, slack: FakeSlack) -> dict[str, Any]:
    # each spike's first post: its bucket's start (the publisher lists the end)
    spikes = {brand: end - SPIKE_SCALE for brand, end in run.publisher["spikes"]}
    first: dict[str, tuple[float, Notice]] = {}  # each brand's first notice of a spike
    mention_notices = 0  # mention rules on background posts (a high-reach complaint)
    for at, notice in run.notices:
        brand = notice_brand(notice)
        if not _by_signal(notice):
            mention_notices += 1
            continue
        if brand in spikes and not _of_spike(notice, spikes[brand]):
            continue  # a signal before the spike's (on a wider scale's earlier bucket)
        first.setdefault(brand, (at, notice))
    delays = [first[b][0] - start for b, start in spikes.items() if b in first]
    at_slack = [
        _slack_received(slack, *first[b]) - start for b, start in spikes.items() if b in first
    ]
    sent = run.publisher["sent"]
    achieved = run.publisher["background"] / max(
        run.publisher["ended"] - run.publisher["started"], 1e-9
    )
    return {
        "rate": rate,
        "achieved_rate": achieved,
        "spike_posts": posts,
        "spikes": len(spikes),
        "notified": len(delays),
        "missed": len(spikes) - len(delays),
        "false_alarms": len(set(first) - set(spikes)),
        "mention_notices": mention_notices,
        "p50_seconds": percentile(delays, 50),
        "p99_seconds": percentile(delays, 99),
        "max_seconds": max(delays, default=None),
        "slack_p50_seconds": percentile(at_slack, 50),
        "slack_p99_seconds": percentile(at_slack, 99),
        "sent": sent,
        "late": run.late,
        "cpu_seconds": {
            "consumer": run.daemon_cpu,
            "publisher": run.publisher["cpu_seconds"],
            "broker": run.broker_cpu,
        },
        "wall_seconds": run.wall,
    }


def _slack_received(slack: FakeSlack, sent: float, notice: Notice) -> float:
    """When the local Slack received the message that shows ``notice`` (posted for a new
    incident, or edited for an open one: the message's metadata names the incident);
    infinite if it never did."""
    for call in slack.calls:
        if call.method not in ("chat.postMessage", "chat.update") or call.at < sent:
            continue
        payload = (call.args.get("metadata") or {}).get("event_payload") or {}
        if payload.get("incident_id") == notice.incident.id:
            return call.at
    return math.inf


def _by_signal(notice: Notice) -> bool:
    """Whether a signal rule (volume, share, new terms) fired a part of the notice, not
    only a rule on single mentions."""
    return any(part.first.signal.measure is not Measure.MENTION for part in notice.incident.parts)


def _of_spike(notice: Notice, start: float) -> bool:
    """Whether a notice is about a spike that starts at ``start`` (Unix time): a part
    fired by a signal rule on a bucket that ends after it (a bucket still open ends at
    the post it was judged at; a wider scale's may have started before the spike).
    Background posts can make a mention rule fire for a spiking brand (a negative post
    from a large account), even before its spike: that notice is not the spike's."""
    return any(
        part.first.signal.measure is not Measure.MENTION
        and part.first.signal.end.timestamp() > start
        for part in notice.incident.parts
    )


def _cpu(result: dict[str, Any]) -> str:
    cpu = result.get("cpu_seconds", {})
    parts = [f"{k} {v:.1f}" for k, v in cpu.items() if v is not None]
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=60_000, help="messages per flood")
    parser.add_argument("--brands", type=int, default=100)
    parser.add_argument("--latency-seconds", type=float, default=60.0, help="per load level")
    parser.add_argument("--spike-brands", type=int, default=5, help="brands spiking per bucket")
    parser.add_argument("--json", type=Path, help="write the figures there")
    args = parser.parse_args()
    started = time.monotonic()
    print(f"machine: {machine()}", flush=True)
    results: dict[str, Any] = {"benchmark": "end_to_end", "machine": machine()}
    with Broker() as broker:
        results["broker"] = broker.name
        print(f"broker: {broker.name}", flush=True)
        results["mosquitto_sub"] = mosquitto_sub_ceiling(broker, args.count, args.brands)
        print(f"mosquitto_sub: {results['mosquitto_sub']}", flush=True)
        results["aiomqtt"] = asyncio.run(aiomqtt_ceiling(broker, args.count, args.brands))
        print(f"aiomqtt: {results['aiomqtt']}", flush=True)
        results["aiomqtt_shared_tables"] = asyncio.run(
            aiomqtt_ceiling(broker, args.count, args.brands, shared_tables=True)
        )
        print(f"aiomqtt, shared tables: {results['aiomqtt_shared_tables']}", flush=True)
        results["xwatch"] = asyncio.run(xwatch_throughput(broker, args.count, args.brands))
        print(f"xwatch: {results['xwatch']}", flush=True)
        results["xwatch_mqtt311"] = asyncio.run(
            xwatch_throughput(broker, args.count, args.brands, protocol="3.1.1")
        )
        print(f"xwatch over MQTT 3.1.1: {results['xwatch_mqtt311']}", flush=True)
        results["xwatch_no_journal"] = asyncio.run(
            xwatch_throughput(broker, args.count, args.brands, journal=False)
        )
        print(f"xwatch without its journal: {results['xwatch_no_journal']}", flush=True)
        sustained = results["xwatch"]["rate"]
        results["latency"] = {}
        for share in (0.1, 0.8):
            result = asyncio.run(
                latency(
                    broker, share * sustained, args.latency_seconds, args.brands, args.spike_brands
                )
            )
            results["latency"][f"{share:.0%}"] = result
            print(f"latency at {share:.0%}: {result}", flush=True)
    results["elapsed_seconds"] = time.monotonic() - started
    _print(results)
    if args.json:
        write_json(args.json, results)


def _print(results: dict[str, Any]) -> None:
    ceiling = results["aiomqtt"].get("rate")
    print()
    print("| consumer | mentions/s | vs aiomqtt | CPU s (consumer, publisher, broker) |")
    print("|---|--:|--:|---|")
    names = ("mosquitto_sub", "aiomqtt", "aiomqtt_shared_tables", "xwatch", "xwatch_mqtt311")
    for name in (*names, "xwatch_no_journal"):
        result = results.get(name, {})
        rate = result.get("rate")
        if rate is None:
            print(f"| {name} | {result} | | |")
            continue
        ratio = f"{rate / ceiling:.0%}" if ceiling else "-"
        print(f"| {name} | {rate:,.0f} | {ratio} | {_cpu(result)} |")
    print()
    print(
        "| load | mentions/s | spikes | notified | send() p50 / p99 s | Slack p50 / p99 s "
        "| false alarms | mention-rule notices | late |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for level, r in results["latency"].items():
        sent = _seconds(r["p50_seconds"], r["p99_seconds"])
        slack = _seconds(r.get("slack_p50_seconds"), r.get("slack_p99_seconds"))
        print(
            f"| {level} | {r['achieved_rate']:,.0f} | {r['spikes']} | {r['notified']} | {sent} "
            f"| {slack} | {r['false_alarms']} | {r.get('mention_notices', '-')} "
            f"| {r['late']:.0f} |"
        )


def _seconds(p50: float | None, p99: float | None) -> str:
    if p50 is None or p99 is None:
        return "-"
    return f"{p50:.3f} / {p99:.3f}"


if __name__ == "__main__":
    main()
