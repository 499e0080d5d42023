"""The metrics: what /metrics serves agrees with the README's table, follows Prometheus'
naming conventions, starts every known series at zero, and measures what it says."""

from __future__ import annotations

import asyncio
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import GatedSource, RecordingReport, mention
from tests.fake_x import TOKEN, FakeX, Send, Status
from xwatch.alerting.console import ConsoleNotifier
from xwatch.config import Brand, XStreamSourceConfig
from xwatch.daemon import Daemon
from xwatch.metrics import STAGES, Metrics
from xwatch.pipeline import Pipeline
from xwatch.sentiment.router import default_router
from xwatch.settings import load_settings
from xwatch.sources import MetricsReport
from xwatch.sources.x_stream import XStreamSource

ROOT = Path(__file__).resolve().parent.parent
UNIT_SUFFIXES = ("_seconds", "_bytes", "_ratio")
NOT_BASE_UNITS = re.compile(
    r"_(milli|micro|nano)?(ms|us|ns|millis|milliseconds|microseconds|minutes|hours|days"
    r"|percent|percentage|kb|mb|gb|kilobytes|megabytes)(_|$)"
)


# --- the README's table -------------------------------------------------------------


def documented_metrics() -> dict[str, set[str]]:
    """Each metric the README's Metrics table names, with its labels.

    A row may name several: "`xwatch_brand_expected_mentions`, `_high`" is that metric
    and ``xwatch_brand_expected_mentions_high``.
    """
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    table: dict[str, set[str]] = {}
    for row in section.splitlines():
        if not row.startswith("| `"):
            continue
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        names = re.findall(r"`([^`]+)`", cells[0])
        labels = {label.strip() for label in cells[1].split(",") if label.strip()}
        first = names[0]
        for name in names:
            full = first + name if name.startswith("_") else name
            assert full not in table, f"{full} is in the README's table twice"
            table[full] = labels
    assert len(table) > 20, "the README's Metrics table was not found"
    return table


# --- what /metrics serves -------------------------------------------------------------


def served_families(text: str) -> dict[str, str]:
    """``# TYPE`` lines: family name (as exposed, ``_total`` included) -> type; without
    the ``_created`` gauges prometheus-client adds to counters and histograms."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    return {
        name: kind
        for name, kind in types.items()
        if not (
            name.endswith("_created")
            and (
                types.get(name.removesuffix("_created") + "_total") == "counter"
                or types.get(name.removesuffix("_created")) in ("histogram", "summary")
            )
        )
    }


def served_labels(text: str) -> dict[str, set[str]]:
    """Label names seen on each family's samples (``le`` of histogram buckets aside)."""
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        if family.type == "info":
            name += "_info"
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            labels.setdefault(name, set()).update(k for k in sample.labels if k != "le")
    return labels


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None


@pytest.fixture(scope="module")
def scrapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """/metrics of a running daemon: at start, after a batch, after the buckets closed."""
    import shutil

    project = tmp_path_factory.mktemp("project")
    shutil.copytree(ROOT / "rules", project / "rules")
    shutil.copytree(ROOT / "playbooks", project / "playbooks")
    config = (ROOT / "xwatch" / "defaults" / "config.yaml").read_text("utf-8")
    (project / "config.yaml").write_text(config.replace("port: 9464", "port: 0"), "utf-8")
    return asyncio.run(_scrape_a_running_daemon(project / "config.yaml"))


async def _scrape_a_running_daemon(config: Path) -> dict[str, str]:
    posts = [mention(f"kettlebird post {i}", at=i * 7) for i in range(300)]
    posts += [mention("ケトルバードのケトルが壊れた", at=5, lang="ja"), mention("nothing", at=6)]
    source = GatedSource(posts, "held", held=True)
    daemon = Daemon(
        load_settings(config),
        sources=[source],
        notifiers={"console": ConsoleNotifier("console", io.StringIO())},
    )
    task = asyncio.create_task(daemon.run())
    scrapes: dict[str, str] = {}
    try:
        await asyncio.wait_for(daemon.serving.wait(), 10)
        async with aiohttp.ClientSession() as http:

            async def scrape() -> str:
                async with http.get(f"{daemon.web_url}/metrics") as response:
                    assert response.status == 200
                    return await response.text()

            scrapes["start"] = await scrape()
            source.go.set()
            await asyncio.wait_for(source.sent.wait(), 10)
            await asyncio.wait_for(daemon.queue.join(), 10)
            scrapes["batch"] = await scrape()
            source.finish.set()
            await asyncio.wait_for(daemon.sources_done.wait(), 10)
            scrapes["closed"] = await scrape()
    finally:
        daemon.stop.set()
        await asyncio.wait_for(task, 10)
    return scrapes


# --- the README and /metrics agree -----------------------------------------------------


def test_every_served_metric_is_documented_and_every_documented_one_is_served(
    scrapes: dict[str, str],
) -> None:
    served = set(served_families(scrapes["closed"]))
    documented = set(documented_metrics())
    assert sorted(served - documented) == [], "served but not in the README's Metrics table"
    assert sorted(documented - served) == [], "in the README's Metrics table but not served"


def test_the_documented_labels_are_the_served_ones(scrapes: dict[str, str]) -> None:
    documented = documented_metrics()
    for name, labels in served_labels(scrapes["closed"]).items():
        assert labels == documented.get(name), f"{name}: served with {sorted(labels)}"


def test_names_follow_prometheus_conventions(scrapes: dict[str, str]) -> None:
    for name, kind in served_families(scrapes["closed"]).items():
        assert re.fullmatch(r"xwatch_[a-z][a-z0-9_]*[a-z0-9]", name), name
        assert "__" not in name, name
        assert (kind == "counter") == name.endswith("_total"), f"{name} is a {kind}"
        assert not NOT_BASE_UNITS.search(name), f"{name}: use base units (seconds, bytes)"
        if kind == "histogram":
            assert name.endswith(("_seconds", "_bytes")), f"{name}: a histogram needs its unit"
        if kind == "counter":
            assert not name.removesuffix("_total").endswith(UNIT_SUFFIXES[2:]), name
        if "timestamp" in name:
            assert name.endswith("_timestamp_seconds"), name
        if "share" in name or "ratio" in name:
            assert name.endswith("_ratio"), name
        if "size" in name or "lag" in name or "latency" in name:
            assert name.endswith(UNIT_SUFFIXES[:2]), f"{name}: which unit?"


# --- series that exist from the start -----------------------------------------------------


def test_known_label_values_start_at_zero(scrapes: dict[str, str]) -> None:
    start = scrapes["start"]
    zero = {
        "xwatch_mentions_received_total": {"source": "held"},
        "xwatch_mentions_rejected_total": {"source": "held", "reason": "not_json"},
        "xwatch_mentions_duplicate_total": {"source": "held"},
        "xwatch_mentions_processed_total": {"brand": "kettlebird"},
        "xwatch_alerts_fired_total": {"rule": "product-defect-surge", "severity": "critical"},
        "xwatch_alerts_resolved_total": {"rule": "negative-share-spike", "severity": "warning"},
        "xwatch_brand_active_alerts": {"brand": "kettlebird"},
        "xwatch_notifications_total": {"channel": "console", "outcome": "failed"},
        "xwatch_outbox_depth": {"channel": "console"},
        "xwatch_detector_evaluations_total": {"measure": "negative_share"},
        "xwatch_stage_seconds_count": {"stage": "detect"},
    }
    for name, labels in zero.items():
        assert sample(start, name, **labels) == 0, f"{name}{labels}"
    for lang in ("en", "ja", "other"):
        assert sample(start, "xwatch_sentiment_texts_total", lang=lang) == 0
    # a replay has no connection: no up/down series for it
    assert sample(start, "xwatch_source_up", source="held") is None


def test_stage_latency_sentiment_and_detector_counts_move(scrapes: dict[str, str]) -> None:
    batch, closed = scrapes["batch"], scrapes["closed"]
    for stage in ("enrich", "aggregate"):
        assert (sample(batch, "xwatch_stage_seconds_count", stage=stage) or 0) >= 1
    assert sample(batch, "xwatch_sentiment_texts_total", lang="en") == 300  # not "nothing"
    assert sample(batch, "xwatch_sentiment_texts_total", lang="ja") == 1
    for stage in ("detect", "rules"):
        assert (sample(closed, "xwatch_stage_seconds_count", stage=stage) or 0) >= 1
    volume = sample(closed, "xwatch_detector_evaluations_total", measure="volume")
    buckets = sum(
        sample(closed, "xwatch_buckets_closed_total", scale=scale) or 0
        for scale in ("1m", "5m", "15m")
    )
    # every closed bucket is scored but the empty ones of a topic that no rule can fire
    # on (they are only learned): the topics here are mostly empty
    assert volume is not None and 0 < volume < buckets


# --- the pieces, on their own ------------------------------------------------------------


def test_each_stage_is_timed_with_the_injected_timer(project: Path) -> None:
    settings = load_settings(project / "config.yaml")
    registry = CollectorRegistry()
    ticks = iter(range(1_000_000))
    pipeline = Pipeline(
        settings.config,
        settings.rules,
        settings.playbooks,
        default_router("en"),
        Metrics(registry),
        timer=lambda: float(next(ticks)),
    )
    pipeline.ingest([mention("kettlebird one", at=1), mention("kettlebird two", at=2)])
    pipeline.ingest([])  # no work: nothing observed
    for stage in ("enrich", "aggregate"):
        assert registry.get_sample_value("xwatch_stage_seconds_count", {"stage": stage}) == 1
        assert registry.get_sample_value("xwatch_stage_seconds_sum", {"stage": stage}) == 1.0
    steps = sum(1 for _ in pipeline.flush_rounds())
    buckets = sum(
        registry.get_sample_value("xwatch_buckets_closed_total", {"scale": scale}) or 0
        for scale in ("1m", "5m", "15m")
    )
    for stage in ("detect", "rules"):
        # a flush closes a minute at a time (the finest scale), each a round judged
        rounds = registry.get_sample_value("xwatch_stage_seconds_count", {"stage": stage})
        assert rounds == steps - 1  # (the first step is before any bucket ends)
        # one tick per bucket for each (the fake clock moves one per call)
        assert registry.get_sample_value("xwatch_stage_seconds_sum", {"stage": stage}) == buckets
    assert set(STAGES) == {"enrich", "aggregate", "detect", "rules"}


def test_sentiment_languages_are_the_scorers_and_other(project: Path) -> None:
    settings = load_settings(project / "config.yaml")
    registry = CollectorRegistry()
    pipeline = Pipeline(
        settings.config, settings.rules, settings.playbooks, default_router("en"), Metrics(registry)
    )
    pipeline.enrich(
        [
            mention("kettlebird", lang="en-US"),
            mention("ケトルバード最高", lang="ja"),
            mention("ケトルバード最高", lang=None),  # guessed from the script
            mention("Kettlebird ist kaputt", lang="de"),  # no German scorer: the fallback's
            mention("켜틀버드", lang=None),  # Korean, guessed: no scorer
            mention("🔥🔥", lang="und"),  # no language at all
        ]
    )

    def texts(lang: str) -> float | None:
        return registry.get_sample_value("xwatch_sentiment_texts_total", {"lang": lang})

    assert (texts("en"), texts("ja"), texts("other")) == (1, 2, 3)


@pytest.mark.asyncio
async def test_x_rate_limit_headers_become_gauges_per_endpoint() -> None:
    reset = int(datetime(2026, 11, 16, 9, 15, tzinfo=UTC).timestamp())
    async with FakeX() as fake:
        post = fake.publish("kettlebird", datetime.now(UTC))
        headers = {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)}
        registry = CollectorRegistry()
        recording = RecordingReport()
        for report in (MetricsReport(Metrics(registry)), recording):
            fake.script(Status(429, headers))  # X's answer to too many connections
            fake.script(Send(post))
            config = XStreamSourceConfig(
                type="x_stream", base_url=fake.url, sync_rules=False, backfill=False
            )

            async def no_wait(seconds: float) -> None:
                await asyncio.sleep(0)

            source = XStreamSource(
                config,
                [Brand(id="kettlebird", name="Kettlebird", terms=("kettlebird",))],
                report,
                environ={"XWATCH_X_BEARER_TOKEN": TOKEN},
                sleep=no_wait,
            )
            async with source:
                async for _ in source:
                    break

    labels = {"source": "x", "endpoint": "stream"}
    assert registry.get_sample_value("xwatch_x_rate_limit_remaining", labels) == 0
    assert registry.get_sample_value("xwatch_x_rate_limit_reset_timestamp_seconds", labels) == reset
    assert recording.rate_limits == [("stream", 0, float(reset))]
