"""Faults with real parts: the store's disk stops taking writes while the daemon runs.

As root, a read-only file does not stop SQLite from writing, and a disk cannot be
remounted read-only under an open database (the kernel answers "busy"). So the fault
is made inside SQLite itself: ``PRAGMA query_only`` on the daemon's connection makes
every write fail with ``SQLITE_READONLY`` ("attempt to write a readonly database"),
the very error a read-only file gives, while reads go on. The daemon must survive,
say so (``/readyz``, ``xwatch_store_writable``, ``xwatch_store_write_errors_total``),
keep the pipeline and the notifications going (the real Slack notifier, against the
local Slack, posts each incident once), and recover at the first write that works.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from tests.factories import T0, GatedSource, mention
from tests.fake_slack import TOKEN as SLACK_TOKEN
from tests.fake_slack import FakeSlack
from tests.test_outbox import fire, fire_brand, running, sample, write_config
from xwatch.daemon import Daemon
from xwatch.settings import load_settings
from xwatch.store import Store, StoreError

READ_ONLY = "attempt to write a readonly database"


@contextmanager
def read_only(store: Store) -> Iterator[None]:
    """SQLite refuses every write on the store's connection until the block ends."""
    with store._lock:
        store._db.execute("PRAGMA query_only = ON")
    try:
        yield
    finally:
        with store._lock:
            store._db.execute("PRAGMA query_only = OFF")


def errors(daemon: Daemon, operation: str) -> float:
    return sample(daemon, "xwatch_store_write_errors_total", {"operation": operation})


def slack_config(project: Path, api_url: str) -> Path:
    config = write_config(project)
    text = config.read_text("utf-8").replace(
        "  slack: {type: console}\n",
        f"  slack:\n    type: slack\n    channel: C0ALERTS\n    api_url: {api_url}\n"
        "    chart: false\n",
    )
    config.write_text(text, "utf-8")
    return config


@pytest.mark.asyncio
async def test_a_read_only_store_is_survived_surfaced_and_recovered_from(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "signing-secret")
    async with FakeSlack() as slack:
        source = GatedSource([mention("kettlebird is fine", at=13 * 3600)], held=True)
        daemon = Daemon(load_settings(slack_config(project, slack.api_url)), sources=[source])
        task = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(daemon.started.wait(), 10)
            store = daemon.store
            assert store is not None
            assert sample(daemon, "xwatch_store_writable", {}) == 1
            with read_only(store):
                source.go.set()  # the pipeline goes on
                fire(daemon, ("slack",))
                await daemon.settled()  # written (it failed), the notice queued
                await asyncio.wait_for(daemon.outboxes["slack"].join(), 10)
                await daemon.settled()  # the delivery recorded (it failed too)
                # the incident was not saved, yet Slack got it, once
                assert errors(daemon, "incidents") == 1
                assert len(slack.top_level()) == 1
                assert errors(daemon, "message_refs") == 1  # its ts is kept in memory
                assert errors(daemon, "deliveries") >= 1
                assert sample(daemon, "xwatch_store_writable", {}) == 0
                ready, why = daemon._ready()
                assert not ready and why.startswith("store not writable") and READ_ONLY in why
                # a follow-up edits the same message (found in memory), never a second one
                (incident_id,) = daemon.book.incidents
                await daemon.act(incident_id, "acknowledge", "@maria", via="api")
                await asyncio.wait_for(daemon.outboxes["slack"].join(), 10)
                assert len(slack.top_level()) == 1
                assert len(slack.calls_to("chat.update")) == 1
                await daemon._checkpoint()  # the detectors' checkpoint fails too, counted
                failed = {"outcome": "failed"}
                assert sample(daemon, "xwatch_checkpoints_total", failed) == 1
                await asyncio.wait_for(source.sent.wait(), 10)
                await asyncio.wait_for(daemon.queue.join(), 10)
                assert daemon.ingested == 1  # the mention went through the pipeline
                assert await daemon.incident(incident_id) is None  # never stored
                assert daemon._ready()[0] is False

            # writes work again: the next one clears the problem and stores the incident whole
            await daemon.act(incident_id, "resolve", "@maria", via="api")
            await asyncio.wait_for(daemon.outboxes["slack"].join(), 10)
            assert daemon._ready() == (True, "ok")
            assert sample(daemon, "xwatch_store_writable", {}) == 1
            record = await daemon.incident(incident_id)
            assert record is not None
            assert record.incident.acknowledged_by == "@maria"
            assert not record.incident.is_open
            assert len(slack.top_level()) == 1  # still the one message
            assert store.message_ref("slack", incident_id) is not None  # saved at last
            # what the book did while the store refused was kept, and written in order
            kinds = [entry.kind for entry in record.timeline]
            assert kinds.index("opened") < kinds.index("acknowledged") < kinds.index("resolved")
        finally:
            daemon.stop.set()
            source.finish.set()
            await asyncio.wait_for(task, 10)


@pytest.mark.asyncio
async def test_a_silence_that_cannot_be_saved_still_silences_and_is_counted(
    project: Path,
) -> None:
    source = GatedSource([])
    daemon = Daemon(load_settings(write_config(project)), sources=[source])
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.started.wait(), 10)
        assert daemon.store is not None
        with read_only(daemon.store):
            silence = await daemon.add_silence(
                who="@maria", ends_at=T0 + timedelta(days=400), brand="kettlebird"
            )
            assert silence.id in daemon.book.silences
            assert await daemon.remove_silence(silence.id, "@maria")  # no exception
            assert errors(daemon, "silences") == 2
            assert daemon._ready()[0] is False
    finally:
        daemon.stop.set()
        source.finish.set()
        await asyncio.wait_for(task, 10)


@pytest.mark.asyncio
async def test_readyz_stays_not_ready_while_incident_changes_wait_to_be_written(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store refuses the incidents' changes but takes everything else: a delivery's
    record and the detectors' checkpoint that worked said the store was fine again,
    while the incident was not stored."""
    async with running(write_config(project)) as daemon:
        store = daemon.store
        assert store is not None
        refused = StoreError("cannot save incidents: disk quota exceeded")

        def refuse(changes: object) -> None:
            raise refused

        monkeypatch.setattr(store, "record_changes", refuse)
        fire(daemon, ("console",))
        await daemon.settled()
        await asyncio.wait_for(daemon.outboxes["console"].join(), 10)
        await daemon.settled()  # the delivery recorded: that write worked
        assert daemon._ready() == (False, f"store not writable: {refused}")
        await daemon._checkpoint()  # works too
        assert daemon._ready()[0] is False
        monkeypatch.undo()  # the incidents are taken again, at the next change
        (incident_id,) = daemon.book.incidents
        await daemon.act(incident_id, "acknowledge", "@maria", via="api")
        assert daemon._ready() == (True, "ok")
        assert await daemon.incident(incident_id) is not None


@pytest.mark.asyncio
async def test_a_change_the_store_always_refuses_is_set_aside_and_later_ones_are_written(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The store refuses one change for what it is (a constraint: a trigger refuses the
    timeline entry of an acknowledgement), not because it takes no writes. That change
    was tried first at every write, and forever: no later change of any incident was
    written, and a restart lost every incident since. It is tried ``CHANGE_ATTEMPTS``
    times, then set aside, logged and counted; the other incidents' changes are written
    meanwhile, and the incident's next change stores it as it is then."""
    async with running(write_config(project)) as daemon:
        store = daemon.store
        assert store is not None
        fire_brand(daemon, "kettlebird")
        await daemon.settled()
        (first,) = daemon.book.incidents
        with store._lock:  # on the daemon's connection only, gone when it closes
            store._db.execute(
                "CREATE TEMP TRIGGER refuse_acks BEFORE INSERT ON main.incident_events "
                "WHEN NEW.kind = 'acknowledged' "
                "BEGIN SELECT RAISE(ABORT, 'acknowledgements refused'); END"
            )
        await daemon.act(first, "acknowledge", "@maria", via="api")  # refused (1)
        fire_brand(daemon, "otterpot")  # the acknowledgement refused (2), this one written
        await daemon.settled()
        (second,) = set(daemon.book.incidents) - {first}
        assert await daemon.incident(second) is not None
        assert len(daemon._unsaved) == 1  # the acknowledgement waits
        assert daemon._ready()[0] is False
        await daemon._checkpoint()  # refused (3): set aside
        assert len(daemon._unsaved) == 0
        dropped = {"reason": "refused"}
        assert sample(daemon, "xwatch_incident_changes_dropped_total", dropped) == 1
        assert daemon._ready() == (True, "ok")
        await daemon.act(first, "resolve", "@maria", via="api")
        record = await daemon.incident(first)
    assert record is not None
    assert record.incident.acknowledged_by == "@maria" and not record.incident.is_open
    kinds = [entry.kind for entry in record.timeline]
    assert "acknowledged" not in kinds and "resolved" in kinds
    (line,) = [r for r in caplog.records if getattr(r, "event", "") == "incident_change_dropped"]
    assert getattr(line, "incident", "") == first and getattr(line, "reason", "") == "refused"
    assert "acknowledgements refused" in line.getMessage()


@pytest.mark.asyncio
async def test_a_stop_says_how_many_incident_changes_the_store_never_took(
    project: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The store is locked until the end: the changes that waited for it were lost at
    the exit, and nothing said so."""
    async with running(write_config(project)) as daemon:
        store = daemon.store
        assert store is not None

        def locked(changes: object) -> None:
            cause = sqlite3.OperationalError("database is locked")
            raise StoreError(f"cannot save incidents: {cause}") from cause

        monkeypatch.setattr(store, "record_changes", locked)
        fire(daemon, ("console",))
        await daemon.settled()
    (line,) = [r for r in caplog.records if r.getMessage().startswith("stopping with")]
    assert line.getMessage().startswith("stopping with 1 incident changes the store did not")
    assert getattr(line, "waiting", None) == 1
