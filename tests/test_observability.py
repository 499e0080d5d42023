"""What SREs watch: the Prometheus rules and the Grafana dashboard, against a real Prometheus.

* ``promtool`` checks ``deploy/prometheus/prometheus.yml`` and the alert rules, and runs
  the rules' unit tests (``xwatch-alerts.test.yml``);
* every alert links a runbook that exists, every query names only metrics xwatch
  exports, the dashboard uses the provisioned datasource;
* a real Prometheus scrapes two running daemons (``python -m xwatch run``): one replays
  two days of the demo stream, crisis included, with its store on; the other
  reads the X filtered stream from ``tests.fake_x`` (rate-limit headers, posts, a bad
  line, an in-stream error, dropped connections and reconnects). Every query of the
  dashboard must then return data, and every alert rule must evaluate cleanly.

Without ``prometheus``/``promtool`` (Debian package ``prometheus``) these tests fail and
say so: CI never passes by doing nothing.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import pytest
import yaml
from prometheus_client import CollectorRegistry

from tests.conftest import ROOT
from tests.fake_x import TOKEN, Drop, FakeX, Pause, Raw, Send, Status, StreamError
from tests.prometheus import Json, Prometheus, poll, require
from xwatch.demo.generate import bundled_demo_path
from xwatch.metrics import Metrics

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
SCRAPE_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "xwatch-alerts.yml"
ALERT_TESTS = PROMETHEUS_DIR / "xwatch-alerts.test.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "xwatch.json"
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "xwatch.yml"
DASHBOARD_PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "xwatch.yml"
RUNBOOKS = ROOT / "docs" / "runbooks"
RUNBOOK_URL = re.compile(
    r"^https://github\.com/OWNER/xwatch/blob/main/docs/runbooks/(?P<name>[a-z0-9-]+)\.md$"
)
RUNBOOK_SECTIONS = ("## Meaning", "## Impact", "## Check", "## Fix", "## Escalate")

# The alerts, as the on-call rota knows them: name -> (for, severity, runbook).
EXPECTED_ALERTS = {
    "XwatchDown": ("2m", "page", "xwatch-down"),
    "XwatchTargetMissing": ("10m", "page", "xwatch-down"),
    "XwatchFeedStalled": ("5m", "page", "feed-stalled"),
    "XwatchEventTimeLagHigh": ("5m", "page", "event-time-lag"),
    "XwatchSourceDown": ("5m", "page", "source-down"),
    "XwatchDeliveriesFailing": ("1m", "page", "deliveries-failing"),
    "XwatchOutboxGrowing": ("5m", "page", "outbox-growing"),
    "XwatchNotificationsDropped": ("1m", "page", "notifications-dropped"),
    "XwatchReconnectStorm": ("5m", "ticket", "reconnect-storm"),
    "XwatchBacklogGrowing": ("5m", "ticket", "backlog-growing"),
    "XwatchXApiRateLimited": ("5m", "ticket", "x-api-rate-limited"),
    "XwatchXApiCapBurning": ("1h", "ticket", "x-api-cap"),
    "XwatchCheckpointsFailing": ("5m", "ticket", "checkpoints-failing"),
    "XwatchStoreNotWritable": ("5m", "ticket", "store-not-writable"),
    "XwatchIncidentChangesDropped": ("1m", "ticket", "incident-changes-dropped"),
}

# Grafana's variables, as the integration test substitutes them (longest names first).
VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$brand": "kettlebird",
    "$scale": "5m",
}

# Queries (by their ``Query.where``) that may rightly return nothing from the test's
# scrape, with the reason; they must still be valid PromQL. None today: between them,
# the two daemons give every panel data.
POSSIBLY_EMPTY: dict[str, str] = {}

SERVING = re.compile(r"serving (http://[\w.\-]+:\d+)")
T = TypeVar("T")


# --- promtool ------------------------------------------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require("promtool"), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_accepts_the_scrape_config_and_its_rule_files() -> None:
    result = promtool("check", "config", str(SCRAPE_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


def test_promtool_accepts_the_alert_rules() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(EXPECTED_ALERTS)} rules found" in result.stdout + result.stderr


def test_the_alert_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", ALERT_TESTS.read_text("utf-8")))
    assert tested == set(EXPECTED_ALERTS), "every alert has a unit test"


# --- static checks: names, runbooks, provisioning ---------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text("utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def exported_metric_names() -> set[str]:
    """Every sample name xwatch/metrics.py can export, from a fresh registry."""
    registry = CollectorRegistry()
    Metrics(registry)
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count"),
        "info": ("_info",),
    }
    return {
        family.name + suffix
        for family in registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\bxwatch_[a-z0-9_]+\b", expr))


def test_every_alert_has_its_severity_delay_summary_and_an_existing_runbook() -> None:
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} == set(EXPECTED_ALERTS)
    index = (RUNBOOKS / "README.md").read_text("utf-8")
    for rule in rules:
        name = rule["alert"]
        delay, severity, runbook = EXPECTED_ALERTS[name]
        assert (rule["for"], rule["labels"]["severity"]) == (delay, severity), name
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        match = RUNBOOK_URL.match(annotations["runbook_url"])
        assert match is not None, f"{name}: {annotations['runbook_url']}"
        assert match["name"] == runbook, name
        page = (RUNBOOKS / f"{runbook}.md").read_text("utf-8")
        missing = [section for section in RUNBOOK_SECTIONS if section not in page]
        assert not missing, f"{runbook}.md lacks {missing}"
        assert f"({runbook}.md)" in index, f"docs/runbooks/README.md does not list {runbook}"
        assert name in index, f"docs/runbooks/README.md does not list {name}"


@dataclass(frozen=True)
class Query:
    where: str  # "panel 'title' A", "annotation 'name'"
    expr: str
    annotation: bool = False


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text("utf-8"))
    return loaded


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))  # a collapsed row holds its panels


def dashboard_queries() -> list[Query]:
    board = dashboard()
    queries = [
        Query(f"panel {panel['title']!r} {target['refId']}", target["expr"])
        for panel in all_panels(board["panels"])
        for target in panel.get("targets", [])
    ]
    for annotation in board["annotations"]["list"]:
        if annotation.get("datasource", {}).get("type") == "prometheus":
            queries.append(Query(f"annotation {annotation['name']!r}", annotation["expr"], True))
    return queries


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a Grafana variable the test does not know: {expr}"
    return expr


def test_queries_name_only_metrics_that_xwatch_exports() -> None:
    exported = exported_metric_names()
    for query in dashboard_queries():
        unknown = metric_names_in(query.expr) - exported
        assert not unknown, f"{query.where}: {sorted(unknown)} not in xwatch/metrics.py"
    for rule in alert_rules():
        unknown = metric_names_in(rule["expr"]) - exported
        assert not unknown, f"{rule['alert']}: {sorted(unknown)} not in xwatch/metrics.py"


def test_the_dashboard_is_provisioned_with_its_fixed_datasource() -> None:
    datasources = yaml.safe_load(DATASOURCES.read_text("utf-8"))["datasources"]
    assert len(datasources) == 1 and datasources[0]["type"] == "prometheus"
    uid = datasources[0]["uid"]
    providers = yaml.safe_load(DASHBOARD_PROVIDERS.read_text("utf-8"))["providers"]
    assert [p["options"]["path"] for p in providers] == ["/var/lib/grafana/dashboards"]
    for provisioning in (DATASOURCES, DASHBOARD_PROVIDERS):
        header = provisioning.read_text("utf-8").split("\n\n")[0]
        assert "/etc/grafana/provisioning" in header and "/var/lib/grafana/dashboards" in header

    board = dashboard()
    assert board["uid"] == "xwatch" and 36 <= board["schemaVersion"] <= 41
    brand = next(v for v in board["templating"]["list"] if v["name"] == "brand")
    assert brand["query"]["query"] == "label_values(xwatch_brand_mentions, brand)"
    panels = list(all_panels(board["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    rows = [panel["title"] for panel in panels if panel["type"] == "row"]
    assert rows == ["Brand: $brand", "Daemon"]
    brand_row = next(panel for panel in panels if panel["type"] == "row")
    assert brand_row["repeat"] == "brand"  # a row per brand (README)
    brand_variable = next(v for v in board["templating"]["list"] if v["name"] == "brand")
    assert brand_variable["multi"] and brand_variable["includeAll"]  # what a repeat needs
    version = next(panel for panel in panels if panel["title"] == "Version")
    assert version["options"]["textMode"] == "name"  # the version, not the count of 1
    datasources_used = [
        thing["datasource"]
        for thing in [
            *panels,
            *(t for p in panels for t in p.get("targets", [])),
            *board["templating"]["list"],
            *board["annotations"]["list"],
        ]
        if "datasource" in thing and thing["datasource"].get("type") != "grafana"
    ]
    assert datasources_used
    assert all(ds == {"type": "prometheus", "uid": uid} for ds in datasources_used)
    for panel in panels:
        if panel["type"] != "row":
            assert panel.get("targets") and panel.get("description"), panel["title"]
    annotation = next(a for a in board["annotations"]["list"] if a["name"] == "Alerts fired")
    assert annotation["target"]["expr"] == annotation["expr"]
    assert "xwatch_alerts_fired_total" in annotation["expr"]


# --- the real thing: two daemons, one Prometheus ---------------------------------------


class FakeXThread:
    """``tests.fake_x.FakeX`` on its own event loop in a thread, for a daemon elsewhere."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fake-x", daemon=True)
        self._x: FakeX | None = None

    @property
    def x(self) -> FakeX:
        assert self._x is not None
        return self._x

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(15)

    def __enter__(self) -> Self:
        self.thread.start()
        self._x = self.run(self._open())
        return self

    @staticmethod
    async def _open() -> FakeX:
        x = FakeX(keepalive_seconds=2.0)  # under the daemon's 20 s stall limit
        return await x.__aenter__()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._x is not None:
                self.run(self._x.__aexit__(None, None, None))
                self.run(self.loop.shutdown_asyncgens())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


async def script_the_stream(x: FakeX) -> None:
    """What the live daemon gets: the first connection says how many connections are
    left in X's rate-limit window and ends at once; the second brings 200 posts of the
    last ten minutes, a line that is no post, an in-stream error, then drops; the third
    brings a post every half second for a minute, then keep-alives."""
    now = datetime.now(UTC)
    window = {"x-rate-limit-remaining": "48", "x-rate-limit-reset": str(int(now.timestamp()) + 900)}
    x.script(Status(200, window, {"title": "the stream ends at once"}))
    earlier = [
        Send(
            x.publish(
                f"Kettlebird kettle {i} boiled in no time", now - timedelta(seconds=600 - 2 * i)
            )
        )
        for i in range(200)
    ]
    x.script(
        *earlier,
        Raw(b'{"data": "not a post"}\r\n'),
        StreamError([{"title": "operational-disconnect", "detail": "test"}]),
        Drop(),
    )
    steady: list[Send | Pause] = []
    for i in range(120):
        post = x.publish(f"kettlebird live post {i}", now + timedelta(seconds=0.5 * i))
        steady += [Send(post), Pause(0.5)]
    x.script(*steady)


class Daemon:
    """``python -m xwatch run -c CONFIG``, its output in a file (a pipe nobody reads
    would fill and block it)."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.config = config
        self.log = config.with_suffix(".log")
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "xwatch", "run", "-c", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )

    def wait_serving(self, timeout: float = 30.0) -> str:
        self.url = poll(f"xwatch ({self.config.name}) to serve", self._served, timeout)
        return self.url

    def _served(self) -> str | None:
        assert self.process is not None
        found = SERVING.search(self.log.read_text("utf-8", errors="replace"))
        if found is None and self.process.poll() is not None:
            raise AssertionError(f"xwatch exited ({self.process.returncode}):\n{self.tail()}")
        return found.group(1) if found else None

    @property
    def target(self) -> str:
        return self.url.removeprefix("http://")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text("utf-8", errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def daemon_config(project: Path, name: str, **changes: Any) -> Path:
    config = yaml.safe_load((project / "config.yaml").read_text("utf-8"))
    config["server"] = {"host": "127.0.0.1", "port": 0}
    config.update(changes)
    path = project / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")
    return path


def replay_file(path: Path) -> Path:
    """The demo from Thursday noon to Saturday noon: the crisis is on Friday at 13:00.
    Plus a line that is no JSON and five posts sent twice."""
    start, end = "2026-11-19T12:00:00Z", "2026-11-21T12:00:00Z"
    with gzip.open(bundled_demo_path(), "rt", encoding="utf-8") as demo:
        lines = [line for line in demo if start <= json.loads(line)["created_at"] < end]
    with path.open("w", encoding="utf-8") as out:
        out.write("{not json\n")
        out.writelines(lines[:5] + lines[:5] + lines[5:])
    return path


@pytest.fixture
def fake_x() -> Iterator[FakeXThread]:
    with FakeXThread() as fake:
        fake.run(script_the_stream(fake.x))
        yield fake


@pytest.fixture
def daemons(project: Path, fake_x: FakeXThread) -> Iterator[tuple[Daemon, Daemon]]:
    """(replay, live): the demo's crisis with the store on; the fake X stream."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "XWATCH_X_BEARER_TOKEN": TOKEN}
    replay = Daemon(
        daemon_config(
            project,
            "replay",
            sources=[
                {
                    "type": "replay",
                    "path": str(replay_file(project / "mentions.jsonl")),
                    "speed": 10000,
                }
            ],
            store={
                "enabled": True,
                "path": str(project / "xwatch.sqlite3"),
                "checkpoint_interval_seconds": 1,
            },
        ),
        env,
    )
    live = Daemon(
        daemon_config(
            project,
            "live",
            sources=[{"type": "x_stream", "base_url": fake_x.x.url, "backfill": False}],
        ),
        env,
    )
    try:
        replay.start()
        live.start()
        replay.wait_serving()
        live.wait_serving()
        yield replay, live
    finally:
        live.stop()
        replay.stop()


@pytest.fixture
def prometheus_binary() -> str:
    return require("prometheus")


@pytest.fixture
def prometheus(
    prometheus_binary: str, tmp_path: Path, daemons: tuple[Daemon, Daemon]
) -> Iterator[Prometheus]:
    """A real Prometheus scraping both daemons every second, with the alert rules
    (the binary is looked up first: without it, no daemon is started for nothing)."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    targets = ", ".join(f'"{daemon.target}"' for daemon in daemons)
    config = (
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {ALERTS}\n"
        "scrape_configs:\n  - job_name: xwatch\n    static_configs:\n"
        f"      - targets: [{targets}]\n"
    )
    server = Prometheus(prometheus_binary, folder, config)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def has_data(answer: Json) -> bool:
    """A successful query with at least one finite value (NaN: a quantile of nothing)."""
    if answer.get("status") != "success":
        return False
    result = answer["data"]["result"]
    values = [
        value
        for series in result
        for _, value in ([series["value"]] if "value" in series else series["values"])
    ]
    return any(math.isfinite(float(value)) for value in values)


def results(answers: dict[Query, Json]) -> str:
    return "\n".join(
        f"  {query.where}: {json.dumps(answer)[:300]}\n    {query.expr}"
        for query, answer in answers.items()
    )


@pytest.mark.timeout(120)
def test_every_dashboard_query_returns_data_from_a_real_scrape(
    prometheus: Prometheus, daemons: tuple[Daemon, Daemon]
) -> None:
    replay, live = daemons
    started = time.time()

    def targets_up() -> bool | None:
        targets = prometheus.targets()
        return (len(targets) == 2 and all(t["health"] == "up" for t in targets)) or None

    poll("Prometheus to scrape both daemons", targets_up, 20)

    def seen(expr: str) -> bool | None:
        return has_data(prometheus.query(expr)) or None

    # the replay reaches Friday's crisis; the live daemon went through its scripted trouble
    try:
        poll("the replay's crisis alerts", lambda: seen("xwatch_alerts_fired_total > 0"), 45)
        poll("the stream's reconnect", lambda: seen("xwatch_source_reconnects_total > 0"), 20)
        poll("the stream to be up again", lambda: seen("xwatch_source_up == 1"), 20)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nreplay:\n{replay.tail()}\nlive:\n{live.tail()}") from None

    queries = [q for q in dashboard_queries() if not q.annotation]
    waiting: dict[Query, Json] = {query: {} for query in queries}

    def all_have_data() -> bool | None:
        for query in list(waiting):
            answer = prometheus.query(substitute(query.expr))
            waiting[query] = answer
            if has_data(answer) or (
                query.where in POSSIBLY_EMPTY and answer.get("status") == "success"
            ):
                del waiting[query]
        return not waiting or None

    try:
        poll("every dashboard query to return data", all_have_data, 20, every=0.5)
    except AssertionError:
        raise AssertionError(f"queries without data:\n{results(waiting)}") from None

    # Grafana evaluates annotations over the time range: range queries over the run (the
    # newest scrape may lie between the range's last two steps: poll)
    marks: dict[Query, Json] = {}

    def marked(query: Query) -> bool | None:
        marks[query] = prometheus.query_range(substitute(query.expr), started, time.time())
        return has_data(marks[query]) or None

    for query in (q for q in dashboard_queries() if q.annotation):
        try:
            poll(f"{query.where} to mark the alerts", functools.partial(marked, query), 10)
        except AssertionError:
            raise AssertionError(f"no annotation:\n{results(marks)}") from None

    # every alert rule is valid PromQL on real series, and Prometheus evaluates it cleanly
    for rule in alert_rules():
        answer = prometheus.query(rule["expr"])
        assert answer["status"] == "success", f"{rule['alert']}: {answer}"

    def rules_evaluated() -> list[Json] | None:
        rules = prometheus.rules()
        done = len(rules) == len(EXPECTED_ALERTS) and all(
            not r["lastEvaluation"].startswith("0001-") for r in rules
        )
        return rules if done else None

    rules = poll("Prometheus to evaluate every alert rule", rules_evaluated, 10)
    unhealthy = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not unhealthy, unhealthy
