"""The durable outbox: every notification is stored before it is sent, retried until it
goes through, and sent after a restart if it was still pending.

The daemon runs in-process with notifiers that fail on cue; alerts are handed to it
as the pipeline would (``Daemon._dispatch``), so each test controls exactly what fires.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.factories import T0, GatedSource, alert, mention
from tests.fake_slack import TOKEN as SLACK_TOKEN
from tests.fake_slack import FakeSlack
from tests.waiting import eventually
from xwatch.alerting import Notifier, PermanentFailure, TemporaryFailure
from xwatch.alerting.console import ConsoleNotifier
from xwatch.alerting.incidents import IncidentBook, Notice, NoticeKind, Policy, State
from xwatch.daemon import Daemon
from xwatch.model import AlertEvent, EventKind
from xwatch.settings import load_settings
from xwatch.store import Store

AT = T0 + timedelta(hours=13)


class ScriptedNotifier:
    """Fails the first ``failures`` sends with ``error``, then records what it is sent."""

    def __init__(self, name: str, failures: int = 0, error: Exception | None = None) -> None:
        self.name = name
        self.failures = failures
        self.error = error or TemporaryFailure("503 from the far end", retry_after=0)
        self.attempts = 0
        self.sent: list[Notice] = []
        self.delivered = asyncio.Event()
        self.attempted = asyncio.Event()  # set before a failure is raised

    async def send(self, notice: Notice) -> None:
        self.attempts += 1
        self.attempted.set()
        if self.attempts <= self.failures:
            raise self.error
        self.sent.append(notice)
        self.delivered.set()


class StuckNotifier:
    """Never answers: a notifier whose far end hangs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.called = asyncio.Event()

    async def send(self, notice: Notice) -> None:
        self.called.set()
        await asyncio.Event().wait()


def write_config(project: Path, *, store: bool = True, drain: float = 5.0) -> Path:
    config = project / "outbox.yaml"
    config.write_text(
        "brands:\n"
        "  - id: kettlebird\n"
        "    name: Kettlebird\n"
        '    terms: ["kettlebird"]\n'
        "sources:\n"
        "  - type: demo\n"
        "server:\n"
        "  enabled: false\n"
        + ("store:\n  path: state.sqlite3\n" if store else "store:\n  enabled: false\n")
        + "notifiers:\n"
        "  slack: {type: console}\n"
        "  email: {type: console}\n"
        "  console: {type: console}\n"
        "alerting:\n"
        "  retry_initial_seconds: 0.01\n"
        "  retry_max_seconds: 0.05\n"
        "  repeat_after_seconds: 0\n"
        f"drain_timeout_seconds: {drain}\n",
        "utf-8",
    )
    return config


@asynccontextmanager
async def running(
    config: Path, notifiers: dict[str, Notifier] | None = None
) -> AsyncIterator[Daemon]:
    """The daemon on ``config`` (``notifiers``: in place of the configured ones), one
    post at 13:00 on T0 for its data's time, until the block ends."""
    source = GatedSource([mention("kettlebird is fine", at=13 * 3600)])
    daemon = Daemon(load_settings(config), sources=[source], notifiers=notifiers)
    task = asyncio.create_task(daemon.run())
    try:
        # store open, incidents restored; a start that fails raises its error here at once
        started = asyncio.create_task(daemon.started.wait())
        await asyncio.wait({task, started}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if task.done():
            task.result()
        assert daemon.started.is_set(), "the daemon did not start in 10 s"
        yield daemon
    finally:
        daemon.stop.set()
        source.finish.set()
        await asyncio.wait_for(task, 10)


def fire(daemon: Daemon, channels: tuple[str, ...]) -> None:
    a = alert(at=AT, channels=channels)
    daemon._dispatch([AlertEvent(EventKind.FIRING, a, a.signal.end)])


def sample(daemon: Daemon, name: str, labels: dict[str, str]) -> float:
    value = daemon.registry.get_sample_value(name, labels)
    return value if value is not None else 0.0


@pytest.mark.asyncio
async def test_a_temporary_failure_is_retried_until_delivered_and_audited(
    project: Path,
) -> None:
    slack = ScriptedNotifier("slack", failures=2)
    config = write_config(project)
    async with running(config, {"slack": slack}) as daemon:
        fire(daemon, ("slack",))
        await asyncio.wait_for(slack.delivered.wait(), 10)
        assert slack.attempts == 3 and len(slack.sent) == 1
        assert (
            sample(daemon, "xwatch_notifications_total", {"channel": "slack", "outcome": "retried"})
            == 2
        )
        assert (
            sample(daemon, "xwatch_notifications_total", {"channel": "slack", "outcome": "sent"})
            == 1
        )
        assert sample(daemon, "xwatch_notifier_failing", {"channel": "slack"}) == 0
        record = await daemon.incident(slack.sent[0].incident.id)
    assert record is not None
    (delivery,) = record.deliveries
    assert (delivery.state, delivery.attempts, delivery.channel) == ("delivered", 3, "slack")
    assert [e.kind for e in record.timeline] == ["opened", "notified"]


@pytest.mark.asyncio
async def test_a_permanent_failure_is_not_retried_and_is_counted(project: Path) -> None:
    slack = ScriptedNotifier("slack", failures=99, error=PermanentFailure("channel_not_found"))
    email = ScriptedNotifier("email")
    async with running(write_config(project), {"slack": slack, "email": email}) as daemon:
        fire(daemon, ("slack", "email"))
        await asyncio.wait_for(email.delivered.wait(), 10)
        # the daemon handles a failure before anything else runs: counted once attempted
        await asyncio.wait_for(slack.attempted.wait(), 10)
        assert (
            sample(daemon, "xwatch_notifications_total", {"channel": "slack", "outcome": "failed"})
            == 1
        )
        assert slack.attempts == 1
        record = await daemon.incident(email.sent[0].incident.id)
    assert record is not None
    states = {d.channel: (d.state, d.last_error) for d in record.deliveries}
    assert states == {"slack": ("failed", "channel_not_found"), "email": ("delivered", "")}
    assert "notification_failed" in [e.kind for e in record.timeline]


@pytest.mark.asyncio
async def test_a_notifier_that_hangs_does_not_hold_up_the_others(project: Path) -> None:
    slack = StuckNotifier("slack")
    email = ScriptedNotifier("email")
    async with running(write_config(project, drain=0.2), {"slack": slack, "email": email}) as d:
        fire(d, ("slack", "email"))
        await asyncio.wait_for(email.delivered.wait(), 10)
        await asyncio.wait_for(slack.called.wait(), 10)
        assert sample(d, "xwatch_outbox_depth", {"channel": "slack"}) == 1


@pytest.mark.asyncio
async def test_a_store_busy_with_a_checkpoint_holds_up_the_notice_but_never_the_loop(
    project: Path,
) -> None:
    """The store's lock is held, as a checkpoint of many series holds it while it writes
    (2 s at 10,000 series). The incident's write waited for it on the event loop, and
    everything (the webhook, /healthz, the pipeline) stood still until the checkpoint
    was written. Now the write waits on the store's worker thread; the notice waits for
    it (it is sent only once stored), the loop does not."""
    slack = ScriptedNotifier("slack")
    async with running(write_config(project), {"slack": slack}) as daemon:
        store = daemon.store
        assert store is not None
        taken, release = threading.Event(), threading.Event()
        still_held = True

        def checkpoint_writing() -> None:  # another thread holds the lock until told
            nonlocal still_held
            with store._lock:
                taken.set()
                release.wait(timeout=5)
                still_held = False

        holder = threading.Thread(target=checkpoint_writing)
        holder.start()
        try:
            assert await asyncio.to_thread(taken.wait, 5)
            fire(daemon, ("slack",))
            await asyncio.sleep(0)  # the loop turns
            assert still_held  # fire() returned while the store was busy
            assert daemon.outboxes["slack"].qsize() == 0 and slack.attempts == 0
        finally:
            release.set()
            await asyncio.to_thread(holder.join)
        await daemon.settled()
        await asyncio.wait_for(slack.delivered.wait(), 10)
        assert len(slack.sent) == 1
        record = await daemon.incident(slack.sent[0].incident.id)
    assert record is not None and record.incident.id == slack.sent[0].incident.id


class GatedNotifier(ScriptedNotifier):
    """Sends nothing until ``gate`` is set (its notices wait in the outbox meanwhile)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.gate = asyncio.Event()

    async def send(self, notice: Notice) -> None:
        await self.gate.wait()
        await super().send(notice)


def fire_brand(daemon: Daemon, brand: str) -> None:
    """An incident of its own for ``brand``, told to Slack."""
    a = alert(at=AT, brand=brand, channels=("slack",))
    daemon._dispatch([AlertEvent(EventKind.FIRING, a, a.signal.end)])


@contextmanager
def store_held(store: Store) -> Iterator[threading.Event]:
    """Another thread holds the store's lock (as a checkpoint of many series does) until
    the event given is set or the block ends."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store._lock:
            taken.set()
            release.wait(timeout=10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(5)
        yield release
    finally:
        release.set()
        holder.join()


@pytest.mark.asyncio
async def test_a_request_cancelled_while_the_store_is_busy_loses_no_notice(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An API action waits for its write (``settled``), and a request past its deadline
    is cancelled there. Its cancellation cancelled every write waiting behind the busy
    store: none of those incidents' notices was ever queued (until a restart), and the
    log had a traceback for each."""
    slack = ScriptedNotifier("slack")
    async with running(write_config(project), {"slack": slack}) as daemon:
        assert daemon.store is not None
        with store_held(daemon.store):
            fire_brand(daemon, "kettlebird")
            fire_brand(daemon, "otterpot")
            request = asyncio.create_task(daemon.settled())
            await asyncio.sleep(0)  # it waits for the writes
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request
        await daemon.settled()
        await asyncio.wait_for(daemon.outboxes["slack"].join(), 10)
        assert sorted(n.incident.brand for n in slack.sent) == ["kettlebird", "otterpot"]
        assert len(daemon._unsaved) == 0
    assert "Exception in callback" not in caplog.text


@pytest.mark.asyncio
async def test_a_delivery_is_recorded_before_the_next_notice_is_sent(project: Path) -> None:
    """A SIGKILL sends again only the notice in flight: the others sent are marked
    delivered. While a checkpoint held the store, a notifier sent notice after notice,
    their records queued behind it: a kill then would have sent them all again."""
    slack = GatedNotifier("slack")
    async with running(write_config(project), {"slack": slack}) as daemon:
        store = daemon.store
        assert store is not None
        for brand in ("kettlebird", "otterpot", "wrenfield"):
            fire_brand(daemon, brand)
        await daemon.settled()  # the three written and queued; the notifier waits
        recording = threading.Event()
        record_attempt = store.record_attempt

        def noted(*args: Any, **kwargs: Any) -> None:
            recording.set()  # the first delivery's record waits for the lock
            record_attempt(*args, **kwargs)

        store.record_attempt = noted  # type: ignore[method-assign]
        with store_held(store):
            slack.gate.set()
            assert await asyncio.to_thread(recording.wait, 5)
            assert len(slack.sent) == 1  # the next waits until this one is recorded
        await asyncio.wait_for(daemon.outboxes["slack"].join(), 10)
        assert len(slack.sent) == 3
        assert store.pending_notices() == []  # each recorded before the notifier moved on


@pytest.mark.asyncio
async def test_pending_notifications_are_sent_after_a_restart_and_the_incident_goes_on(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(project, drain=0.2)
    stuck = StuckNotifier("slack")
    async with running(config, {"slack": stuck}) as first:
        fire(first, ("slack",))
        await asyncio.wait_for(stuck.called.wait(), 10)  # in flight when the daemon stops
        (incident_id,) = first.book.incidents
    # the one in flight counts as not processed (the log said 0)
    assert "drain timed out: 0 mentions and 1 notifications were not processed" in caplog.text
    with Store.open(project / "state.sqlite3") as store:
        assert [n.id for n, _ in store.pending_notices()] == [f"{incident_id}/1/slack"]

    slack = ScriptedNotifier("slack")
    async with running(config, {"slack": slack}) as second:
        await asyncio.wait_for(slack.delivered.wait(), 10)
        assert [n.kind for n in slack.sent] == [NoticeKind.OPENED]  # the pending one, once
        assert list(second.book.incidents) == [incident_id]  # the incident is still open
        slack.delivered.clear()
        fire(second, ("slack",))  # the same alert fires again after the restart...
        await asyncio.wait_for(slack.delivered.wait(), 10)
        # ...and updates the incident instead of opening a second one
        assert [n.kind for n in slack.sent] == [NoticeKind.OPENED, NoticeKind.UPDATED]
        assert {n.incident.id for n in slack.sent} == {incident_id}
        await second.act(incident_id, "acknowledge", "@maria", via="api")
        assert second.book.incidents[incident_id].state is State.ACKNOWLEDGED
    with Store.open(project / "state.sqlite3") as store:
        assert store.pending_notices() == []
        record = store.incident_record(incident_id)
    assert record is not None and record.incident.acknowledged_by == "@maria"


class LogEvent(logging.Handler):
    """Sets ``seen`` when a record of ``event`` is logged (on the event loop's thread)."""

    def __init__(self, event: str) -> None:
        super().__init__()
        self.event = event
        self.seen = asyncio.Event()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == self.event:
            self.records.append(record)
            self.seen.set()


@pytest.mark.asyncio
async def test_a_drain_that_times_out_counts_the_notices_still_waiting_for_their_write(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A notice is queued to its notifier once its change is written: the count of what
    a stop left behind missed those whose change still waited for the store (here held,
    as a checkpoint of many series holds it). It said 0; the notice is pending in the
    store once the change is written, for the next start."""
    slack = ScriptedNotifier("slack")
    timed_out = LogEvent("drain_timeout")
    logging.getLogger("xwatch.daemon").addHandler(timed_out)
    try:
        async with running(write_config(project, drain=0.2), {"slack": slack}) as daemon:
            assert daemon.store is not None
            with store_held(daemon.store):
                fire(daemon, ("slack",))
                daemon.stop.set()
                await asyncio.wait_for(timed_out.seen.wait(), 10)
    finally:
        logging.getLogger("xwatch.daemon").removeHandler(timed_out)
    (line,) = timed_out.records
    assert line.getMessage().startswith(
        "drain timed out: 0 mentions and 1 notifications were not processed "
        "(1 of them waiting for their incident's change to be written"
    )
    assert getattr(line, "notices", None) == 1 and getattr(line, "unwritten", None) == 1
    assert slack.sent == []
    with Store.open(project / "state.sqlite3") as store:
        assert len(store.pending_notices()) == 1  # written after the drain, sent at the next start


@pytest.mark.asyncio
async def test_without_a_store_incidents_live_in_memory(project: Path) -> None:
    console = ConsoleNotifier("console", io.StringIO())
    async with running(write_config(project, store=False), {"console": console}) as daemon:
        fire(daemon, ("console",))
        (incident,) = await daemon.incidents(state="open")
        assert incident.brand == "kettlebird"
    assert not (project / "state.sqlite3").exists()


@pytest.mark.asyncio
async def test_slack_rate_limits_and_errors_are_ridden_out_while_the_others_deliver(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real Slack notifier, built from the config, against a Slack that answers 429
    twice and then 500 three times: the console gets its notice at once, Slack gets
    exactly one message once it recovers, and every attempt is counted."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "signing-secret")
    async with FakeSlack() as slack:
        slack.fail(
            method="chat.postMessage", status=429, error="ratelimited", retry_after=0, times=2
        )
        slack.fail(method="chat.postMessage", status=500, error="internal_error", times=3)
        config = write_config(project)
        text = config.read_text("utf-8").replace(
            "  slack: {type: console}\n",
            "  slack:\n"
            "    type: slack\n"
            "    channel: C0ALERTS\n"
            f"    api_url: {slack.api_url}\n"
            "    chart: false\n",
        )
        config.write_text(text, "utf-8")
        source = GatedSource([mention("kettlebird is fine", at=13 * 3600)])
        console = ScriptedNotifier("console")
        settings = load_settings(config)
        daemon = Daemon(settings, sources=[source])
        daemon.notifiers["console"] = console  # the real Slack notifier stays
        task = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(daemon.started.wait(), 10)
            fire(daemon, ("slack", "console"))
            await asyncio.wait_for(console.delivered.wait(), 10)
            await asyncio.wait_for(daemon.outboxes["slack"].join(), 20)
            counts = {
                outcome: sample(
                    daemon, "xwatch_notifications_total", {"channel": "slack", "outcome": outcome}
                )
                for outcome in ("sent", "retried", "failed")
            }
            assert counts == {"sent": 1, "retried": 5, "failed": 0}
            assert len(slack.top_level()) == 1  # one message, not one per attempt
            assert daemon._ready() == (True, "ok")  # recovered: nothing retrying any more
        finally:
            daemon.stop.set()
            source.finish.set()
            await asyncio.wait_for(task, 10)


@pytest.mark.asyncio
async def test_history_past_the_retention_is_deleted_from_the_start_and_counted(
    project: Path,
) -> None:
    """An incident resolved long ago is deleted at start (and every 10 minutes after),
    with ``store.retention_days``; one resolved since stays. A replay's days are the
    data's: by the wall clock, the one resolved 20 days before these posts would go too."""
    config = write_config(project)
    text = config.read_text("utf-8").replace(
        "  path: state.sqlite3\n", "  path: state.sqlite3\n  retention_days: 30\n"
    )
    config.write_text(text, "utf-8")
    book = IncidentBook(Policy())
    ids = []
    for brand, days in (("otterpot", 40), ("kettlebird", 20)):
        resolved = T0 - timedelta(days=days)
        fired = alert(brand=brand, at=resolved - timedelta(hours=1))
        opened = book.observe([AlertEvent(EventKind.FIRING, fired, fired.signal.end)], resolved)
        ids.append(opened[0].incident.id)
        with Store.open(project / "state.sqlite3") as store:
            store.record_changes([*opened, *book.resolve(ids[-1], "@maria", resolved)])
            for notice in (n for change in opened for n in change.notices):
                store.record_attempt(notice, "delivered")
    async with running(config) as daemon:  # its post gives the data's time
        pruned = {"what": "incidents"}
        await eventually(lambda: sample(daemon, "xwatch_store_pruned_total", pruned) == 1, "pruned")
        assert await daemon.incident(ids[0]) is None
        assert await daemon.incident(ids[1]) is not None


@pytest.mark.asyncio
async def test_a_bug_in_the_retention_neither_stops_the_daemon_nor_its_notices(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a ``StoreError`` was caught: any other error from the prune ended its task,
    and the task group stopped the whole daemon with it, at start."""
    pruning = threading.Event()

    def broken(store: Store, before: object, limit: int = 200) -> None:
        pruning.set()
        raise KeyError("a bug")

    monkeypatch.setattr(Store, "prune", broken)
    slack = ScriptedNotifier("slack")
    async with running(write_config(project), {"slack": slack}) as daemon:
        assert await asyncio.to_thread(pruning.wait, 5)
        errors = {"operation": "retention"}
        await eventually(
            lambda: sample(daemon, "xwatch_store_write_errors_total", errors) == 1, "counted"
        )
        fire(daemon, ("slack",))
        await asyncio.wait_for(slack.delivered.wait(), 10)
        assert daemon._ready()[0] is True  # the incident's write since cleared the problem
