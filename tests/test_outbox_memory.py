"""A notifier's outbox holds a bounded number of notices whole (``xwatch.outbox``).

Each notice holds its whole incident as it was: while Slack was down for hours and
incidents kept coming, the notices piled up in memory, and a start decoded every
pending one at once (167 kB each: about 6,000 filled the pod's 1 GiB, at every start).
Here the bound is 3: beyond it, a notice pending in the store waits by its id and is
read when its turn comes, in its place, once; one the store never took waits whole.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.factories import T0, alert
from tests.test_faults_store import read_only
from tests.test_outbox import AT, fire_brand, running, sample, write_config
from tests.test_store import SECRET, damage, edited
from xwatch.alerting import TemporaryFailure
from xwatch.alerting.incidents import IncidentBook, Notice, Policy
from xwatch.model import AlertEvent, EventKind
from xwatch.outbox import NoticeStub, Outbox
from xwatch.store import Store

BOUND = 3
BRANDS = [f"brand{n:02d}" for n in range(10)]


class DownNotifier:
    """Its far end is down (a temporary failure at each send) until ``up`` is set; then
    it records what it sends."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.up = asyncio.Event()
        self.tried = asyncio.Event()  # a send was attempted
        self.sent: list[Notice] = []

    async def send(self, notice: Notice) -> None:
        self.tried.set()
        if not self.up.is_set():
            raise TemporaryFailure("503 from the far end")
        self.sent.append(notice)


@pytest.fixture
def bound(monkeypatch: pytest.MonkeyPatch) -> int:
    """Outboxes hold at most ``BOUND`` notices whole."""
    monkeypatch.setattr("xwatch.daemon.NOTICES_IN_MEMORY", BOUND)
    return BOUND


def notices_in_memory() -> int:
    """The ``Notice`` objects alive in the process (each holds its incident whole)."""
    gc.collect()
    return sum(isinstance(item, Notice) for item in gc.get_objects())


def pending_in_store(path: Path, brands: list[str]) -> list[str]:
    """A store where each brand has an incident whose "opened" notice to Slack is still
    pending (the daemon stopped before sending them); their ids, in order."""
    book = IncidentBook(Policy())
    ids = []
    with Store.open(path) as store:
        for brand in brands:
            fired = alert(at=AT, brand=brand, channels=("slack",))
            changes = book.observe([AlertEvent(EventKind.FIRING, fired, fired.signal.end)], AT)
            store.record_changes(changes)
            ids += [n.id for change in changes for n in change.notices]
    return ids


@pytest.mark.asyncio
async def test_a_notifier_down_keeps_only_the_bound_in_memory_then_sends_all_in_order(
    project: Path, bound: int
) -> None:
    slack = DownNotifier("slack")
    async with running(write_config(project), {"slack": slack}) as daemon:
        before = notices_in_memory()
        for brand in BRANDS:
            fire_brand(daemon, brand)
        await daemon.settled()  # every change written, its notice queued
        await asyncio.wait_for(slack.tried.wait(), 10)  # the first is being retried
        assert notices_in_memory() - before <= bound
        assert sample(daemon, "xwatch_outbox_depth", {"channel": "slack"}) == len(BRANDS)
        assert sample(daemon, "xwatch_outbox_oldest_timestamp_seconds", {"channel": "slack"}) > 0

        slack.up.set()
        await asyncio.wait_for(daemon.outboxes["slack"].join(), 10)
        assert [n.incident.brand for n in slack.sent] == BRANDS  # in order, once each
        assert sample(daemon, "xwatch_outbox_depth", {"channel": "slack"}) == 0
        assert sample(daemon, "xwatch_outbox_oldest_timestamp_seconds", {"channel": "slack"}) == 0
        store = daemon.store
        assert store is not None
        await daemon.settled()
        assert store.pending_notices() == []


@pytest.mark.asyncio
async def test_a_start_decodes_only_the_bound_and_sends_every_pending_notice_in_order(
    project: Path, bound: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(project)
    ids = pending_in_store(project / "state.sqlite3", BRANDS)
    decoded: list[str] = []
    loads = Store.pending_notices, Store.pending_notice

    def counted(read: Any) -> Any:
        def reading(*args: Any, **kwargs: Any) -> Any:
            found = read(*args, **kwargs)
            items = found if isinstance(found, list) else [(found, 0)] if found else []
            decoded.extend(notice.id for notice, _attempts in items)
            return found

        return reading

    monkeypatch.setattr(Store, "pending_notices", counted(loads[0]))
    monkeypatch.setattr(Store, "pending_notice", counted(loads[1]))
    slack = DownNotifier("slack")
    async with running(config, {"slack": slack}) as daemon:
        assert decoded == ids[:bound]  # the rest wait by their ids
        assert sample(daemon, "xwatch_outbox_depth", {"channel": "slack"}) == len(ids)
        slack.up.set()
        await asyncio.wait_for(daemon.outboxes["slack"].join(), 10)
        assert [n.id for n in slack.sent] == ids  # in order, once each
        assert decoded == ids  # each read whole once
        await daemon.settled()
    with Store.open(project / "state.sqlite3") as store:
        assert store.pending_notices() == []


@pytest.mark.asyncio
async def test_a_waiting_notice_no_longer_pending_is_skipped_without_error(
    project: Path, bound: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Recorded delivered meanwhile, or its row deleted (as retention deletes those of a
    resolved incident): the notifier finds nothing to send when its turn comes."""
    caplog.set_level(logging.INFO, "xwatch.daemon")
    config = write_config(project)
    ids = pending_in_store(project / "state.sqlite3", BRANDS[:6])
    slack = DownNotifier("slack")
    async with running(config, {"slack": slack}) as daemon:
        store = daemon.store
        assert store is not None
        delivered, deleted = ids[bound], ids[bound + 1]  # both wait by their ids

        def meanwhile() -> None:
            (notice,) = [n for n, _ in store.pending_notices() if n.id == delivered]
            assert isinstance(notice, Notice)
            store.record_attempt(notice, "delivered")
            with sqlite3.connect(project / "state.sqlite3") as db:
                db.execute("DELETE FROM outbox WHERE notice_id = ?", (deleted,))

        await daemon.store_worker.run(meanwhile)
        slack.up.set()
        await asyncio.wait_for(daemon.outboxes["slack"].join(), 10)
        assert [n.id for n in slack.sent] == [i for i in ids if i not in (delivered, deleted)]
    skipped = [r for r in caplog.records if getattr(r, "event", None) == "notification_skipped"]
    assert len(skipped) == 2
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.asyncio
async def test_notices_the_store_did_not_take_wait_whole_and_the_oldest_beyond_go(
    project: Path, bound: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The store fails: a notice exists only in memory, so it cannot wait by its id. It
    waits whole past the bound; past the hard bound (4 here) the oldest go, logged and
    counted."""
    monkeypatch.setattr("xwatch.daemon.MAX_UNSTORED_NOTICES", 4)
    slack = DownNotifier("slack")
    async with running(write_config(project), {"slack": slack}) as daemon:
        store = daemon.store
        assert store is not None
        with read_only(store):
            fire_brand(daemon, BRANDS[0])
            await asyncio.wait_for(slack.tried.wait(), 10)  # in flight: never dropped
            for brand in BRANDS[1:7]:
                fire_brand(daemon, brand)
            await daemon.settled()
            assert daemon.outboxes["slack"].whole == 5  # past the bound of 3: none in the store
            dropped = {"channel": "slack", "reason": "overflow"}
            assert sample(daemon, "xwatch_notifications_dropped_total", dropped) == 2
            slack.up.set()
            await asyncio.wait_for(daemon.outboxes["slack"].join(), 10)
        assert [n.incident.brand for n in slack.sent] == [BRANDS[0], *BRANDS[3:7]]
    gone = [r for r in caplog.records if getattr(r, "event", None) == "notification_dropped"]
    assert len(gone) == 2
    assert all(r.levelno == logging.ERROR and "never to be sent" in r.getMessage() for r in gone)


def notice(brand: str) -> Notice:
    fired = alert(at=T0 + timedelta(hours=13), brand=brand, channels=("slack",))
    changes = IncidentBook(Policy()).observe(
        [AlertEvent(EventKind.FIRING, fired, fired.signal.end)], T0
    )
    return changes[0].notices[0]


@pytest.mark.asyncio
async def test_an_outbox_keeps_its_order_across_whole_notices_and_stubs() -> None:
    """Once stubs wait, a notice pending in the store waits as one too (even if fewer
    than the bound are held whole then), so those read back never exceed the bound; a
    notice not in the store waits whole, in its place."""
    dropped: list[Notice] = []
    outbox = Outbox("slack", dropped.append, limit=2, unstored_limit=10)
    a, b, c, d, e = (notice(brand) for brand in "abcde")
    for item in (a, b, c):
        outbox.put(item, stored=True, at=1.0)
    assert await outbox.get() is a
    outbox.task_done()  # one held whole now, but a stub waits: d waits as one
    outbox.put(d, stored=True, at=2.0)
    outbox.put(e, stored=False, at=3.0)  # only here: whole
    taken: list[Notice | NoticeStub] = []
    while outbox.qsize():
        taken.append(await outbox.get())
        assert outbox.whole <= outbox.limit
        outbox.task_done()
    assert taken == [b, NoticeStub(c.id, "slack"), NoticeStub(d.id, "slack"), e]
    assert (outbox.depth, outbox.oldest, outbox.whole, dropped) == (0, None, 0, [])
    await asyncio.wait_for(outbox.join(), 1)


@pytest.mark.asyncio
async def test_a_start_fails_the_pending_notices_of_a_notifier_no_longer_configured(
    project: Path, bound: int
) -> None:
    """Read one at a time to be recorded failed, not all at once."""
    config = write_config(project)
    book = IncidentBook(Policy())
    with Store.open(project / "state.sqlite3") as store:
        for brand in BRANDS[:5]:
            fired = alert(at=AT, brand=brand, channels=("pager", "slack"))
            store.record_changes(
                book.observe([AlertEvent(EventKind.FIRING, fired, fired.signal.end)], AT)
            )
        ids = store.pending_notice_ids()
    slack = DownNotifier("slack")
    slack.up.set()
    async with running(config, {"slack": slack}) as daemon:
        await asyncio.wait_for(daemon.outboxes["slack"].join(), 10)
        assert [n.id for n in slack.sent] == ids["slack"]
        await daemon.settled()
    with Store.open(project / "state.sqlite3") as store:
        assert store.pending_notice_ids() == {}
        record = store.incident_record(slack.sent[0].incident.id)
    assert record is not None
    states = {d.channel: (d.state, d.last_error) for d in record.deliveries}
    assert states == {
        "pager": ("failed", "notifier not configured any more"),
        "slack": ("delivered", ""),
    }


@pytest.mark.parametrize(
    "damaged",
    [pytest.param((1,), id="read-whole-at-start"), pytest.param((4,), id="read-by-id-in-turn")],
)
@pytest.mark.asyncio
async def test_a_notice_that_cannot_be_read_is_set_aside_and_the_others_go_in_order(
    project: Path, bound: int, caplog: pytest.LogCaptureFixture, damaged: tuple[int, ...]
) -> None:
    """Among a notifier's first ``bound`` it made the start fail, at every start; read by
    its id in its turn it raised in the notifier, stayed pending, and failed a later
    start. Now it is recorded failed (once: not read again), logged without its content,
    and counted; every other notice goes out in its order, once."""
    caplog.set_level(logging.INFO, "xwatch")
    config = write_config(project)
    path = project / "state.sqlite3"
    ids = pending_in_store(path, BRANDS[:6])
    bad = [ids[i] for i in damaged]
    for notice_id in bad:
        damage(path, notice_id, lambda record: edited(record, at=SECRET))
    slack = DownNotifier("slack")
    slack.up.set()
    async with running(config, {"slack": slack}) as daemon:
        await asyncio.wait_for(daemon.outboxes["slack"].join(), 10)
        await daemon.settled()
        assert [n.id for n in slack.sent] == [i for i in ids if i not in bad]
        assert daemon.store is not None
        assert daemon.store.pending_notice_ids() == {}  # not left to the next start
        unreadable = {"channel": "slack", "reason": "unreadable"}
        assert sample(daemon, "xwatch_notifications_dropped_total", unreadable) == len(bad)
    events = [getattr(r, "event", None) for r in caplog.records if r.levelno >= logging.ERROR]
    assert events == ["notification_unreadable"] * len(bad)
    lines = [r for r in caplog.records if getattr(r, "event", None) == "notification_unreadable"]
    assert [(r.channel, r.notice) for r in lines] == [("slack", i) for i in bad]  # type: ignore[attr-defined]
    assert all("at: expected an ISO 8601 time, found str" in r.getMessage() for r in lines)
    assert SECRET not in caplog.text

    with Store.open(path) as store:
        record = store.incident_record(bad[0].split("/")[0])
    assert record is not None
    [delivery] = record.deliveries
    assert delivery.state == "failed"
    assert delivery.last_error.startswith("could not be read: at: expected an ISO 8601 time")

    caplog.clear()
    again = DownNotifier("slack")
    async with running(config, {"slack": again}) as daemon:  # not read again: nothing to send
        await daemon.settled()
        assert daemon.outboxes["slack"].depth == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert again.sent == []


@pytest.mark.asyncio
async def test_a_start_fails_the_notices_of_a_notifier_gone_without_decoding_them(
    project: Path, bound: int
) -> None:
    """One of them that could not be decoded made the start fail, at every start."""
    config = write_config(project)
    path = project / "state.sqlite3"
    book = IncidentBook(Policy())
    with Store.open(path) as store:
        for brand in BRANDS[:3]:
            fired = alert(at=AT, brand=brand, channels=("pager", "slack"))
            store.record_changes(
                book.observe([AlertEvent(EventKind.FIRING, fired, fired.signal.end)], AT)
            )
        ids = store.pending_notice_ids()
    damage(path, ids["pager"][1], lambda record: record[:40])
    slack = DownNotifier("slack")
    slack.up.set()
    async with running(config, {"slack": slack}) as daemon:
        await asyncio.wait_for(daemon.outboxes["slack"].join(), 10)
        assert [n.id for n in slack.sent] == ids["slack"]
        await daemon.settled()
    with Store.open(path) as store:
        assert store.pending_notice_ids() == {}
        failed = store._read(
            "SELECT notice_id, state, last_error FROM outbox WHERE channel = 'pager'"
        )
    assert failed == [(i, "failed", "notifier not configured any more") for i in ids["pager"]]
