"""The daemon's lifecycle: serving while it runs, finite sources, graceful stop."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import aiohttp
import pytest

from tests.factories import T0, FixedClock, GatedSource, alert, mention
from tests.waiting import eventually
from xwatch import daemon as daemon_module
from xwatch.alerting.console import ConsoleNotifier
from xwatch.alerting.incidents import Change, IncidentBook, Policy, Silence
from xwatch.daemon import CHANGE_ATTEMPTS, Daemon, UnsavedChanges
from xwatch.model import AlertEvent, EventKind, Mention
from xwatch.settings import Settings, load_settings
from xwatch.store import MEMORY, Store, StoreError


def console_daemon(settings: Settings, source: GatedSource) -> tuple[Daemon, io.StringIO]:
    """A daemon of one source that exits when it is done, its alerts on a console."""
    out = io.StringIO()
    daemon = Daemon(
        settings,
        sources=[source],
        exit_when_done=True,
        notifiers={"console": ConsoleNotifier("console", out)},
    )
    return daemon, out


def config_on_free_port(project: Path) -> Path:
    config = project / "config.yaml"
    config.write_text(config.read_text("utf-8").replace("port: 9464", "port: 0"), "utf-8")
    return config


@pytest.mark.asyncio
async def test_serves_metrics_and_health_while_running_and_exits_when_done(
    project: Path,
) -> None:
    settings = load_settings(config_on_free_port(project))
    source = GatedSource(
        [mention(f"kettlebird post {i}", at=i) for i in range(50)]
        + [mention("nothing to see", at=60)]
    )
    daemon, _ = console_daemon(settings, source)
    task = asyncio.create_task(daemon.run())
    await asyncio.wait_for(source.sent.wait(), 10)
    await asyncio.wait_for(daemon.queue.join(), 10)  # everything sent has been processed
    assert daemon.web_url is not None
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{daemon.web_url}/metrics") as response:
            text = await response.text()
            assert response.status == 200
        async with http.get(f"{daemon.web_url}/healthz") as health:
            assert health.status == 200
        async with http.get(f"{daemon.web_url}/readyz") as ready:
            assert (await ready.json())["ready"] is True
        async with http.get(f"{daemon.web_url}/playbooks/product-defect") as playbook:
            assert playbook.status == 200
            assert "Product defect" in await playbook.text()
        async with http.get(f"{daemon.web_url}/playbooks/nope") as missing:
            assert missing.status == 404
        async with http.get(f"{daemon.web_url}/playbooks") as folder:  # redirected
            assert folder.status == 200 and str(folder.url).endswith("/playbooks/")
    assert 'xwatch_mentions_processed_total{brand="kettlebird"} 50.0' in text
    assert "xwatch_mentions_unmatched_total 1.0" in text
    source.finish.set()
    await asyncio.wait_for(task, 10)
    assert daemon.sources_done.is_set()


def test_sigterm_drains_and_exits_cleanly(project: Path, tmp_path: Path) -> None:
    replay = tmp_path / "slow.jsonl"
    replay.write_text(
        "\n".join(
            json.dumps(
                {
                    "id": str(i),
                    "text": "kettlebird",
                    "created_at": f"2026-11-16T09:{i // 60:02d}:{i % 60:02d}Z",
                }
            )
            for i in range(600)
        )
        + "\n",
        "utf-8",
    )
    config = config_on_free_port(project)
    text = config.read_text("utf-8").replace(
        "  - type: demo\n    speed: 30000        # a week in about 20 seconds",
        f"  - type: replay\n    path: {replay}\n    speed: 1",
    )
    config.write_text(text, "utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "xwatch", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    for line in process.stderr:  # wait until it serves
        if "serving http://" in line:
            break
    url = re.search(r"serving (http://\S+/metrics)", line)
    assert url is not None, line
    with urllib.request.urlopen(url.group(1), timeout=10) as response:
        exposition = response.read().decode()
    assert "xwatch_mentions_received_total" in exposition
    assert "_created" not in exposition  # run exports no creation-time series (README)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "stopping: draining" in err
    assert "stopped:" in err


class FailingOnceSource:
    """A live source that fails (as a bug would) after its first post, and delivers
    its second and third posts once it is started again."""

    live = True
    name = "flaky"

    def __init__(self) -> None:
        self.entered = 0

    async def __aenter__(self) -> FailingOnceSource:
        self.entered += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __aiter__(self) -> AsyncIterator[Mention]:
        return self._run()

    async def _run(self) -> AsyncIterator[Mention]:
        now = datetime.now(UTC)
        if self.entered == 1:
            yield mention("kettlebird one", at=now, id="1")
            raise IndexError("a case the source did not foresee")
        for i in (2, 3):
            yield mention(f"kettlebird {i}", at=now, id=str(i))
        await asyncio.Event().wait()  # live: it never ends


@pytest.mark.asyncio
async def test_a_live_source_that_fails_is_started_again(
    project: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(daemon_module, "RESTART_SECONDS", (0.01, 0.02))
    source = FailingOnceSource()
    daemon = Daemon(load_settings(config_on_free_port(project)), sources=[source])

    def sample(name: str, **labels: str) -> float:
        return daemon.registry.get_sample_value(name, labels) or 0.0

    task = asyncio.create_task(daemon.run())
    try:
        await eventually(
            lambda: sample("xwatch_mentions_processed_total", brand="kettlebird") == 3,
            "the posts from before and after the failure",
        )
        assert source.entered == 2
        assert sample("xwatch_source_problems_total", source="flaky", kind="crashed") == 1
        assert "source flaky failed; the other sources go on" in caplog.text
        assert "IndexError" in caplog.text
    finally:
        daemon.stop.set()
        await asyncio.wait_for(task, 10)


@pytest.mark.asyncio
async def test_a_fast_replay_escalates_and_reminds_on_time_not_at_its_batches_ends(
    project: Path,
) -> None:
    """Three hours of posts replayed at once used to be one batch: the incident book heard
    of the time at its end, and escalated 3 hours after the opening instead of 30 minutes.
    A batch now ends at the post that reaches the book's next timer."""
    settings = load_settings(config_on_free_port(project))
    opened_at = T0 + timedelta(hours=13)
    posts = [
        mention(f"kettlebird post {i}", at=opened_at + timedelta(minutes=i)) for i in range(180)
    ]
    source = GatedSource(posts)
    source.finish.set()
    daemon, out = console_daemon(settings, source)
    daemon.book.policy = dataclasses.replace(daemon.book.policy, repeat_after=timedelta(hours=1))
    [change] = daemon.book.observe(  # a critical incident, its playbook's first response: 30 min
        [AlertEvent(EventKind.FIRING, alert(at=opened_at), opened_at)], opened_at
    )
    await asyncio.wait_for(daemon.run(), 20)
    incident = daemon.book.incidents[change.incident.id]
    lateness = timedelta(seconds=settings.config.detect.allowed_lateness_seconds)
    assert incident.escalated_at is not None
    assert incident.escalated_at - opened_at <= timedelta(minutes=30) + lateness
    reminders = re.findall(r"REMINDER: still firing after (\d+) min", out.getvalue())
    assert [int(minutes) for minutes in reminders[:2]] == [60, 120]  # (then one at the end)


@pytest.mark.asyncio
async def test_a_webhook_only_daemon_keeps_the_incident_books_time_by_the_wall_clock(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The webhook is a live source though not one of the daemon's ``sources``: without
    ticks, an escalation waited for the next post, however late, and people's actions
    were dated by the last post's time (before the incident had opened)."""
    monkeypatch.setenv("XWATCH_WEBHOOK_SECRET", "s3cret")
    config = config_on_free_port(project)
    text = config.read_text("utf-8").replace(
        "  - type: demo\n    speed: 30000        # a week in about 20 seconds", "  - type: webhook"
    )
    config.write_text(text, "utf-8")
    opened_at = datetime(2026, 11, 27, 17, 0, tzinfo=UTC)
    clock = FixedClock(opened_at)
    daemon = Daemon(
        load_settings(config),
        clock=clock,
        notifiers={"console": ConsoleNotifier("console", io.StringIO())},
    )
    [change] = daemon.book.observe(  # critical: its playbook's first response is 30 minutes
        [AlertEvent(EventKind.FIRING, alert(at=opened_at), opened_at)], opened_at
    )
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.serving.wait(), 10)
        clock.at = opened_at + timedelta(minutes=31)  # no post comes
        await eventually(
            lambda: daemon.book.incidents[change.incident.id].escalated_at is not None,
            "the escalation, on a tick",
        )
        assert daemon._action_time() == clock.at  # an acknowledgement now is dated now
    finally:
        daemon.stop.set()
        await asyncio.wait_for(task, 20)


def test_silence_ids_differ_across_restarts(project: Path) -> None:
    """They were numbered from 1 at each start: a silence made after a restart, in the
    same second of data time as one before it, took its id, and the store replaced it."""
    settings = load_settings(config_on_free_port(project))
    at = datetime(2026, 11, 26, 10, 20, tzinfo=UTC)
    before, after = Daemon(settings), Daemon(settings)
    ids = {before._silence_id(at), after._silence_id(at), after._silence_id(at)}
    assert len(ids) == 3
    assert all(i.startswith("silence-20261126-102000-") for i in ids)


@pytest.mark.asyncio
async def test_a_restart_keeps_each_alert_s_peak_for_what_stronger_means(project: Path) -> None:
    """Restored with no peak, an alert's next firing was compared with its first one: a
    weaker firing after a restart was announced as "stronger", and shown as the peak."""
    first = alert(at=T0 + timedelta(hours=13))
    peak = dataclasses.replace(
        first, signal=dataclasses.replace(first.signal, surprise=first.signal.surprise + 5)
    )
    book = IncidentBook(Policy())
    changes = book.observe(
        [AlertEvent(EventKind.FIRING, first, first.signal.end)], first.signal.end
    )
    changes += book.observe([AlertEvent(EventKind.UPDATED, peak, peak.signal.end)], peak.signal.end)
    with Store.open(MEMORY) as store:
        store.record_changes(changes)
        daemon = Daemon(load_settings(config_on_free_port(project)))
        await daemon._restore_incidents(store)
    restored = daemon.pipeline.book.active[first.identity]
    assert restored.strongest.signal.surprise == peak.signal.surprise


def test_an_expired_silence_is_marked_in_the_store(project: Path) -> None:
    """Expiry was never written: after each restart the silence was listed again until
    the first round expired it once more."""
    daemon = Daemon(load_settings(config_on_free_port(project)))
    at = T0 + timedelta(hours=13)
    silence = Silence("s1", at + timedelta(hours=1), at, "@maria", brand="kettlebird")
    with Store.open(MEMORY) as store:
        daemon.records = store
        store.save_silence(silence)
        daemon.book.silence(silence, at)
        lateness = timedelta(seconds=daemon.settings.config.detect.allowed_lateness_seconds)
        daemon.pipeline.clock.observe(silence.ends_at + lateness)
        daemon._dispatch([])
        assert daemon.book.silences == {}
        assert store.silences() == []


def stand_in(incident_id: str) -> Change:
    """A change of ``incident_id``, as far as ``UnsavedChanges`` looks at one."""
    incident = SimpleNamespace(id=incident_id)
    return cast(Change, SimpleNamespace(incident=incident, entries=(), notices=()))


class PickyStore:
    """Takes every change but those in ``refused`` (a constraint fails on them); takes
    nothing while ``locked``."""

    def __init__(self, *refused: Change) -> None:
        self.refused = refused
        self.locked = False
        self.written: list[Change] = []

    def record_changes(self, changes: Sequence[Change]) -> None:
        cause: sqlite3.Error | None = None
        if self.locked:
            cause = sqlite3.OperationalError("database is locked")
        elif any(change is bad for change in changes for bad in self.refused):
            cause = sqlite3.IntegrityError("CHECK constraint failed")
        if cause is not None:
            raise StoreError(f"cannot save incidents: {cause}") from cause
        self.written.extend(changes)


def test_changes_that_raised_a_bug_are_kept_no_more_than_the_limit() -> None:
    """A write that raised something else than a ``StoreError`` (a bug) kept every change
    for good: each later write failed on them again, and the list grew without end. The
    oldest beyond the limit go, and are counted."""

    class Broken:
        def record_changes(self, changes: object) -> None:
            raise TypeError("a bug")

    dropped: list[str] = []
    unsaved = UnsavedChanges(limit=2, dropped=dropped.append)
    unsaved.add([stand_in(f"i{n}") for n in range(5)])
    with pytest.raises(TypeError):
        unsaved.write(cast(Store, Broken()))
    assert len(unsaved) == 2
    assert dropped == ["overflow"] * 3


def test_a_change_the_store_refuses_is_set_aside_after_its_attempts_behind_nothing_else(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The store refuses ``a1`` for what it is: it held up every change after it, for
    good. The other incidents' changes are written; the later changes of its incident
    wait behind it (one written first, then ``a1``, would put the incident back in an
    older state) until it is set aside, logged and counted."""
    a1, b1, a2 = stand_in("a"), stand_in("b"), stand_in("a")
    store = PickyStore(a1)
    dropped: list[str] = []
    unsaved = UnsavedChanges(limit=10, dropped=dropped.append)
    unsaved.add([a1, b1, a2])
    for _ in range(CHANGE_ATTEMPTS - 1):
        with pytest.raises(StoreError, match="CHECK constraint failed"):
            unsaved.write(cast(Store, store))
        assert store.written == [b1] and len(unsaved) == 2 and dropped == []
    unsaved.write(cast(Store, store))  # the last attempt: set aside, ``a2`` goes on
    assert store.written == [b1, a2] and len(unsaved) == 0
    assert dropped == ["refused"]
    assert "incident a" in caplog.text and "CHECK constraint failed" in caplog.text


def test_a_store_that_takes_no_writes_sets_no_change_aside() -> None:
    """A locked (busy, read-only, full) store is not the changes' fault: however many
    writes fail, none counts against a change, and all are written once it takes them."""
    a1, b1 = stand_in("a"), stand_in("b")
    store = PickyStore(a1)
    store.locked = True
    dropped: list[str] = []
    unsaved = UnsavedChanges(limit=10, dropped=dropped.append)
    unsaved.add([a1, b1])
    for _ in range(CHANGE_ATTEMPTS * 2):
        with pytest.raises(StoreError, match="database is locked"):
            unsaved.write(cast(Store, store))
    assert len(unsaved) == 2 and dropped == []
    store.locked = False
    with pytest.raises(StoreError, match="CHECK constraint failed"):  # its first refusal
        unsaved.write(cast(Store, store))
    assert store.written == [b1] and len(unsaved) == 1 and dropped == []
