"""The embedded store: schema and migrations, checkpoint round trips, clear refusals."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.factories import T0, alert, bucket
from xwatch.alerting.incidents import Change, IncidentBook, Policy, Silence
from xwatch.config import load_config
from xwatch.detect.state import Checkpoint
from xwatch.model import AlertEvent, EventKind, SeriesKey, SourcePosition
from xwatch.pipeline import default_detectors
from xwatch.store import (
    MEMORY,
    SCHEMA_VERSION,
    Pruned,
    Store,
    StoreError,
    Unreadable,
    checkpoint_rows,
    refused,
)

SAVED_AT = datetime(2026, 11, 20, 13, 0, tzinfo=UTC)


def checkpoints(*series: SeriesKey) -> list[Checkpoint]:
    """Real detector checkpoints (each detector has learned one bucket) for these series."""
    items = []
    for key in series:
        for detector in default_detectors(key.scale_seconds):
            detector.learn_one(bucket(T0, 12, 3, scale=key.scale_seconds, brand=key.brand))
            items.append(Checkpoint.of(key, detector))
    return items


def by_key(item: Checkpoint) -> tuple[SeriesKey, str]:
    return item.series, item.measure


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the file with a connection of its own, as an operator's sqlite3 shell would."""
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def test_a_fresh_file_gets_the_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "xwatch.sqlite3"
    with Store.open(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.load_checkpoints() == []
        assert store.size_bytes() > 0
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]
    tables = {name for (name,) in rows(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_version", "detector_checkpoints"} <= tables
    assert [v for (v,) in rows(path, "SELECT version FROM schema_version")] == list(
        range(1, SCHEMA_VERSION + 1)
    )


def test_reopening_applies_no_migration_twice(tmp_path: Path) -> None:
    path = tmp_path / "xwatch.sqlite3"
    Store.open(path).close()
    Store.open(path).close()
    assert len(rows(path, "SELECT version FROM schema_version")) == SCHEMA_VERSION


def test_checkpoints_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "xwatch.sqlite3"
    items = checkpoints(SeriesKey("b", "", 300), SeriesKey("b", "defects", 900))
    with Store.open(path) as store:
        store.save_checkpoints(items, saved_at=SAVED_AT)
    with Store.open(path) as store:
        loaded = store.load_checkpoints()
    expected = [
        Checkpoint(c.series, c.measure, c.detector, c.version, c.state, SAVED_AT) for c in items
    ]
    assert sorted(loaded, key=by_key) == sorted(expected, key=by_key)
    with Store.open(path) as store:  # read a page at a time: the same rows, in series order
        for page in (1, 2, 3, len(items), 500):
            assert list(store.iter_checkpoints(page=page)) == loaded
        assert store.newest_state_version() == max(c.version for c in items)
    with Store.open(tmp_path / "new.sqlite3") as store:
        assert store.newest_state_version() == 0 and list(store.iter_checkpoints()) == []
    # the columns an operator reads say the same as the states
    assert rows(path, "SELECT DISTINCT detector FROM detector_checkpoints ORDER BY 1") == [
        ("CountDetector",),
        ("NegativeShareDetector",),
    ]


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ("state = '{\"level\": 1'", "is damaged: "),
        ("state = '" + "[" * 100_000 + "'", "is damaged: maximum recursion depth"),
        ("saved_at = 'yesterday'", "is damaged: Invalid isoformat string"),
        ("scale_seconds = 'abc'", "a row of the wrong types (str, str, str,"),
        ("topic = x'00ff'", "a row of the wrong types (str, bytes,"),
    ],
)
def test_a_damaged_checkpoint_row_is_refused_naming_it(
    tmp_path: Path, update: str, message: str
) -> None:
    """A store edited by hand, or damaged: one line saying which row and what is wrong,
    not a traceback (a RecursionError, a ValueError, a TypeError)."""
    path = tmp_path / "xwatch.sqlite3"
    with Store.open(path) as store:
        store.save_checkpoints(checkpoints(SeriesKey("b", "", 300)), saved_at=SAVED_AT)
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE detector_checkpoints SET {update} WHERE measure = 'volume'")
    with Store.open(path) as store, pytest.raises(StoreError) as caught:
        store.load_checkpoints()
    assert str(caught.value).startswith(f"{path}: the checkpoint of 'b'/")
    assert message in str(caught.value)


def test_a_save_replaces_the_whole_checkpoint(tmp_path: Path) -> None:
    kept, dropped = SeriesKey("b", "", 300), SeriesKey("gone", "", 300)
    with Store.open(tmp_path / "s.sqlite3") as store:
        store.save_checkpoints(checkpoints(kept, dropped))
        store.save_checkpoints(checkpoints(kept))
        assert {c.series for c in store.load_checkpoints()} == {kept}


def test_a_failed_save_leaves_the_previous_checkpoint_whole(tmp_path: Path) -> None:
    before = checkpoints(SeriesKey("b", "", 300))
    with Store.open(tmp_path / "s.sqlite3") as store:
        store.save_checkpoints(before, saved_at=SAVED_AT)
        clash = checkpoints(SeriesKey("c", "", 300)) * 2  # the same keys twice: fails midway
        with pytest.raises(StoreError, match="cannot save the checkpoint"):
            store.save_checkpoints(clash)
        assert [c.state for c in store.load_checkpoints()] == [
            c.state for c in sorted(before, key=by_key)
        ]


def test_sources_positions_are_saved_with_the_checkpoint_and_replaced_with_it(
    tmp_path: Path,
) -> None:
    """Where each resumable source takes up after a restart is written in the checkpoint's
    transaction: a failed save leaves both as they were, and a save without positions (a
    daemon with no such source) leaves the positions alone."""
    x = SourcePosition("1860000000000000123", datetime(2026, 11, 20, 12, 59, 58, tzinfo=UTC))
    later = SourcePosition("1860000000000000200", datetime(2026, 11, 20, 13, 4, tzinfo=UTC))
    series = checkpoints(SeriesKey("b", "", 300))
    with Store.open(tmp_path / "s.sqlite3") as store:
        assert store.source_positions() == {}
        store.save_checkpoint_rows(checkpoint_rows(series, SAVED_AT), {"x": x, "x2": x})
        assert store.source_positions() == {"x": x, "x2": x}
        store.save_checkpoint_rows(checkpoint_rows(series, SAVED_AT), {"x": later})
        assert store.source_positions() == {"x": later}  # the whole set, replaced
        clash = checkpoint_rows(series * 2, SAVED_AT)  # the same keys twice: fails midway
        with pytest.raises(StoreError, match="cannot save the checkpoint"):
            store.save_checkpoint_rows(clash, {"x": x})
        store.save_checkpoints(series)
        assert store.source_positions() == {"x": later}


def test_a_damaged_source_position_is_left_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.sqlite3"
    good = SourcePosition("7", datetime(2026, 11, 20, 13, 0, tzinfo=UTC))
    with Store.open(path) as store:
        store.save_checkpoint_rows([], {"x": good})
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO source_positions VALUES ('bad', '8', 'yesterday')")
        db.execute("INSERT INTO source_positions VALUES ('naive', '9', '2026-11-20T13:00:00')")
    with Store.open(path) as store:
        assert store.source_positions() == {"x": good}
    assert "the position of source 'bad' is damaged" in caplog.text
    assert "the position of source 'naive' is damaged (no time zone)" in caplog.text


def test_in_memory_store_for_tests() -> None:
    with Store.open(MEMORY) as store:
        store.save_checkpoints(checkpoints(SeriesKey("b")))
        assert len(store.load_checkpoints()) == 3


@pytest.mark.asyncio
async def test_writes_from_a_worker_thread(tmp_path: Path) -> None:
    store = await asyncio.to_thread(Store.open, tmp_path / "s.sqlite3")
    try:
        await asyncio.to_thread(store.save_checkpoints, checkpoints(SeriesKey("b")))
        assert len(await asyncio.to_thread(store.load_checkpoints)) == 3
    finally:
        await asyncio.to_thread(store.close)


def test_a_store_from_a_newer_xwatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    Store.open(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_version VALUES (99, '2030-01-01T00:00:00+00:00')")
    with pytest.raises(StoreError, match=r"schema version 99, written by a newer xwatch"):
        Store.open(path)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing/xwatch.sqlite3", "the folder .*missing does not exist"),
        ("a-folder", "it is a folder, not a file"),
        ("not-sqlite.sqlite3", "file is not a database"),
    ],
)
def test_a_store_that_cannot_be_opened_says_why(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "not-sqlite.sqlite3").write_text("these are not the pages you are looking for\n")
    with pytest.raises(StoreError, match=message) as caught:
        Store.open(tmp_path / name)
    assert str(tmp_path / name) in str(caught.value)
    assert isinstance(caught.value, OSError)  # `xwatch run` reports it in one line, exit 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_a_read_only_store_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    Store.open(path).close()
    path.chmod(0o444)
    with pytest.raises(StoreError, match="attempt to write a readonly database"):
        Store.open(path)


def test_the_store_path_resolves_against_the_config_folder(project: Path) -> None:
    config_file = project / "config.yaml"
    text = config_file.read_text("utf-8").replace(
        "store:\n  enabled: false", "store:\n  path: state/x.sqlite3"
    )
    config_file.write_text(text, "utf-8")
    config, _ = load_config(config_file)
    assert config.store.enabled
    assert config.store.path == project / "state" / "x.sqlite3"
    assert config.store.checkpoint_interval_seconds == 300

    config_file.write_text(text.replace("state/x.sqlite3", '":memory:"'), "utf-8")
    config, _ = load_config(config_file)
    assert str(config.store.path) == MEMORY


def test_the_embedded_demo_config_keeps_no_state(in_repo_root: Path) -> None:
    config, _ = load_config(None)
    assert not config.store.enabled


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ("created_at = 'soon'", "label 1 is damaged: Invalid isoformat string"),
        ("text = x'6869ff'", "label 1 is a row of the wrong types (int, str, bytes,"),
    ],
)
def test_a_damaged_label_row_is_refused_naming_it_and_leaves_no_file(
    tmp_path: Path, update: str, message: str
) -> None:
    path = tmp_path / "xwatch.sqlite3"
    with Store.open(path) as store:
        store.add_label("1", "this is broken", "negative", source="api", who="me", lang="en")
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE sentiment_labels SET {update} WHERE id = 1")
    out = tmp_path / "labels.jsonl"
    with Store.open(path) as store, pytest.raises(StoreError) as caught:
        store.export_labels(out)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir() if "labels" in p.name) == []


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_store_file_deleted_or_replaced_while_open_refuses_writes(
    tmp_path: Path, how: str
) -> None:
    """Writes would go on to a file no one opens again: the next start would find none of
    them. Each write says so instead (the daemon keeps what it could not write, and its
    /readyz names the problem)."""
    path = tmp_path / "xwatch.sqlite3"
    with Store.open(path) as store:
        store.save_checkpoints(checkpoints(SeriesKey("b", "", 300)), saved_at=SAVED_AT)
        path.unlink()
        if how == "replaced":
            Store.open(path).close()
        with pytest.raises(StoreError, match="was deleted or replaced while xwatch ran"):
            store.save_checkpoints(checkpoints(SeriesKey("b", "", 300)), saved_at=SAVED_AT)


def test_incidents_page_on_before_the_last_one_listed() -> None:
    """``before``: the incidents listed after the one with this id, newest first, ties in
    time broken by id; past 500 open incidents the oldest could not be listed."""
    book = IncidentBook(Policy())
    changes = []
    for i, brand in enumerate(["a", "b", "c", "d"]):
        fired = alert(brand=brand, at=T0 + timedelta(hours=13 + i // 2))  # two ties in time
        changes += book.observe(
            [AlertEvent(EventKind.FIRING, fired, fired.signal.end)], fired.signal.end
        )
    with Store.open(MEMORY) as store:
        store.record_changes(changes)
        every = [i.id for i in store.incidents(limit=10)]
        assert len(every) == 4
        pages, before = [], None
        while True:
            page = [i.id for i in store.incidents(limit=1, before=before)]
            if not page:
                break
            pages += page
            before = page[-1]
        assert pages == every
        assert store.incidents(before="no-such-incident") == []
        assert [i.id for i in store.incidents(state="open", limit=10, before=every[1])] == every[2:]


def test_a_notice_sent_or_failed_for_good_is_not_kept_whole() -> None:
    """Each notice holds its whole incident (alerts, chart points, sample posts): the
    outbox kept every one ever sent, tens of kilobytes each, for months (in memory, for
    a daemon without a store file). Once sent or failed for good, its row keeps what the
    incident page shows; a pending one stays whole, to be sent after a restart."""
    book = IncidentBook(Policy())
    fired = alert(at=T0 + timedelta(hours=13), channels=("email", "slack", "webhook"))
    changes = book.observe([AlertEvent(EventKind.FIRING, fired, fired.signal.end)], T0)
    [sent, failed, waiting] = [n for c in changes for n in c.notices]
    with Store.open(MEMORY) as store:
        store.record_changes(changes)
        store.record_attempt(sent, "delivered", at=SAVED_AT)
        store.record_attempt(failed, "retry", "HTTP 503", at=SAVED_AT)
        store.record_attempt(failed, "failed", "gave up", at=SAVED_AT)
        store.record_attempt(waiting, "retry", "HTTP 503", at=SAVED_AT)
        kept = dict(store._read("SELECT notice_id, length(notice) FROM outbox"))
        assert kept[sent.id] == kept[failed.id] == 0
        assert kept[waiting.id] > 10_000  # still whole: the one that will be sent again
        assert store.pending_notices() == [(waiting, 1)]
        record = store.incident_record(sent.incident.id)
        assert record is not None
        assert [(d.notice_id, d.state, d.attempts) for d in record.deliveries] == [
            (sent.id, "delivered", 1),
            (failed.id, "failed", 2),
            (waiting.id, "pending", 1),
        ]


def test_pending_notices_are_read_by_channel_by_id_and_a_few_at_a_time() -> None:
    """A start decodes only the first of each notifier's pending notices (each holds its
    whole incident) and queues the rest by id; a notifier reads one by its id when its
    turn comes, and finds none once it is no longer pending."""
    book = IncidentBook(Policy())
    notices = []
    with Store.open(MEMORY) as store:
        for brand in ("a", "b", "c"):
            fired = alert(brand=brand, at=T0 + timedelta(hours=13), channels=("email", "slack"))
            changes = book.observe([AlertEvent(EventKind.FIRING, fired, fired.signal.end)], T0)
            store.record_changes(changes)
            notices += [n for c in changes for n in c.notices]
        slack = [n for n in notices if n.channel == "slack"]
        email = [n for n in notices if n.channel == "email"]
        assert store.pending_notice_ids() == {
            "slack": [n.id for n in slack],
            "email": [n.id for n in email],
        }
        assert store.pending_notices("slack", limit=2) == [(n, 0) for n in slack[:2]]
        assert store.pending_notices("email") == [(n, 0) for n in email]
        assert store.pending_notice(slack[1].id) == slack[1]

        store.record_attempt(slack[1], "retry", "HTTP 503", at=SAVED_AT)
        assert store.pending_notice(slack[1].id) == slack[1]  # still pending: still whole
        store.record_attempt(slack[1], "delivered", at=SAVED_AT)
        store.record_attempt(email[0], "failed", "gave up", at=SAVED_AT)
        assert store.pending_notice(slack[1].id) is None
        assert store.pending_notice(email[0].id) is None
        assert store.pending_notice("no-such-notice") is None
        assert store.pending_notice_ids() == {
            "slack": [slack[0].id, slack[2].id],
            "email": [n.id for n in email[1:]],
        }
        assert store.pending_notices("slack", limit=5) == [(slack[0], 0), (slack[2], 0)]


SECRET = "the post's own words"
"""In each damaged notice below: a reason given for it must not quote it (a notice holds
its incident's sample posts, which never go to the logs)."""


def edited(record: str, **fields: object) -> str:
    return json.dumps({**json.loads(record), **fields})


DAMAGE: list[tuple[str, Callable[[str], object], str]] = [
    # (what, the stored record made of the good one, the reason given)
    ("cut short", lambda record: record[:40] + SECRET, "not JSON: "),
    ("a field of the wrong type", lambda r: edited(r, at=SECRET), "at: expected an ISO 8601"),
    (
        "a field of the wrong type",
        lambda r: edited(r, text=[SECRET]),
        "text: expected str, found list",
    ),
    ("a newer format", lambda r: edited(r, urgency=SECRET), "unknown field(s) urgency"),
    ("nested too deeply", lambda record: "[" * 100_000, "nested too deeply to decode"),
    ("not text", lambda record: SECRET.encode(), "not text but bytes"),
]


def damage(path: Path, notice_id: str, make: Callable[[str], object]) -> object:
    """Replace the stored record of the outbox's notice ``notice_id`` with ``make`` of it
    (a hand edit, a damaged page, a row a newer xwatch wrote); what was written."""
    with sqlite3.connect(path) as db:
        ((record,),) = db.execute("SELECT notice FROM outbox WHERE notice_id = ?", (notice_id,))
        damaged = make(record)
        db.execute("UPDATE outbox SET notice = ? WHERE notice_id = ?", (damaged, notice_id))
    db.close()
    return damaged


@pytest.mark.parametrize(
    ("make", "reason"), [(m, r) for _, m, r in DAMAGE], ids=[w for w, _, _ in DAMAGE]
)
def test_a_pending_notice_that_cannot_be_decoded_is_given_in_its_place_then_failed(
    tmp_path: Path, make: Callable[[str], object], reason: str
) -> None:
    """One such row made every read of its channel's pending notices raise (a start
    failed on it). It is given as ``Unreadable`` in its place, saying why without
    quoting it; ``fail_pending`` then records it failed for good, its record kept."""
    book = IncidentBook(Policy())
    path = tmp_path / "state.sqlite3"
    notices = []
    with Store.open(path) as store:
        for brand in ("a", "b", "c"):
            fired = alert(brand=brand, at=T0 + timedelta(hours=13), channels=("slack",))
            changes = book.observe([AlertEvent(EventKind.FIRING, fired, fired.signal.end)], T0)
            store.record_changes(changes)
            notices += [n for c in changes for n in c.notices]
    a, b, c = notices
    damaged = damage(path, b.id, make)
    with Store.open(path) as store:
        (unreadable,) = [n for n, _ in store.pending_notices() if isinstance(n, Unreadable)]
        assert (unreadable.id, unreadable.channel) == (b.id, "slack")
        assert reason in unreadable.error
        assert SECRET not in unreadable.error
        assert store.pending_notices("slack", limit=2) == [(a, 0), (unreadable, 0)]
        assert store.pending_notice(b.id) == unreadable

        store.fail_pending(b.id, f"could not be read: {unreadable.error}", at=SAVED_AT)
        store.fail_pending(b.id, "again", at=SAVED_AT)  # no longer pending: left as it is
        assert store.pending_notice(b.id) is None
        assert store.pending_notices() == [(a, 0), (c, 0)]
        record = store.incident_record(b.incident.id)
        assert record is not None
        [delivery] = record.deliveries
        assert (delivery.state, delivery.attempts) == ("failed", 1)
        assert delivery.last_error == f"could not be read: {unreadable.error}"
        assert record.timeline[-1].kind == "notification_failed"
        assert record.timeline[-1].text == f"opened to slack: {delivery.last_error}"
    kept = rows(path, f"SELECT notice FROM outbox WHERE notice_id = '{b.id}'")
    assert kept == [(damaged,)]  # the only copy of what it said, to mend by hand


def test_prune_deletes_the_history_past_its_date_and_keeps_what_is_still_needed() -> None:
    """``store.retention_days``: an incident resolved before the date goes with its
    timeline, outbox rows, delivery attempts and message references; one still open,
    resolved after the date, or with a notice still to send stays. Silences that ended
    or were removed before the date go. The checkpoint and the labels are never pruned."""
    book = IncidentBook(Policy())
    at = T0 + timedelta(hours=13)
    before = at + timedelta(days=1)

    def fire(brand: str, when: datetime) -> str:
        fired = alert(brand=brand, at=when)
        changes = book.observe([AlertEvent(EventKind.FIRING, fired, fired.signal.end)], when)
        store.record_changes(changes)
        deliver(changes)
        return changes[0].incident.id

    def deliver(changes: list[Change]) -> None:
        for notice in (n for change in changes for n in change.notices):
            store.record_attempt(notice, "delivered", at=at)

    def resolve(incident_id: str, when: datetime, *, delivered: bool = True) -> None:
        changes = book.resolve(incident_id, "@maria", when)
        store.record_changes(changes)
        if delivered:
            deliver(changes)

    def silence(name: str, ends_at: datetime) -> Silence:
        kept = Silence(name, ends_at, at, "@maria", brand="a")
        store.save_silence(kept)
        return kept

    with Store.open(MEMORY) as store:
        old, older = fire("a", at), fire("e", at)
        pending, recent, still_open = fire("c", at), fire("d", at), fire("b", at)
        resolve(old, at + timedelta(hours=1))
        resolve(older, at + timedelta(minutes=30))
        resolve(pending, at + timedelta(hours=1), delivered=False)  # its "resolved" waits
        resolve(recent, before + timedelta(hours=1))
        store.save_message_ref("slack", old, {"channel": "C1", "ts": "1.2"})
        silence("ended", at + timedelta(hours=2))
        silence("removed", before + timedelta(days=30))
        store.remove_silence("removed", "@maria", at + timedelta(hours=3))
        silence("active", before + timedelta(days=30))
        store.save_checkpoints(checkpoints(SeriesKey("a", "", 300)), saved_at=SAVED_AT)
        store.add_label("1", "broken lid", "negative", source="api", who="ann")
        attempts_before = store._read("SELECT COUNT(*) FROM delivery_attempts")[0][0]

        assert store.prune(before, limit=1) == Pruned(incidents=1, silences=2, more=True)
        assert store.prune(before, limit=1) == Pruned(incidents=1, silences=0, more=True)
        assert store.prune(before, limit=1) == Pruned(incidents=0, silences=0, more=False)

        left = {i.id for i in store.incidents(limit=10)}
        assert left == {pending, recent, still_open}
        for gone in (old, older):
            assert store.incident_record(gone) is None
            for table in ("incident_events", "outbox", "message_refs"):
                assert store._read(f"SELECT * FROM {table} WHERE incident_id = ?", (gone,)) == []
        attempts = store._read("SELECT COUNT(*) FROM delivery_attempts")[0][0]
        assert 0 < attempts < attempts_before  # the others' attempts are kept
        assert store._read(
            "SELECT COUNT(*) FROM delivery_attempts WHERE notice_id NOT IN "
            "(SELECT notice_id FROM outbox)"
        ) == [(0,)]
        assert [s.id for s in store.silences()] == ["active"]
        assert len(store.load_checkpoints()) == 3 and store.label_count() == 1
        record = store.incident_record(pending)
        assert record is not None and record.timeline[0].kind == "opened"


def test_a_notice_delivered_before_its_change_was_stored_is_not_pending_once_it_is() -> None:
    """The store refused an incident's change; its notice went out all the same, and its
    delivery was recorded once the store took writes again, before the change (kept in
    memory) was written at last. The change then made the notice pending, and the next
    start sent it again."""
    book = IncidentBook(Policy())
    fired = alert(at=T0 + timedelta(hours=13), channels=("slack",))
    changes = book.observe([AlertEvent(EventKind.FIRING, fired, fired.signal.end)], T0)
    [notice] = [n for c in changes for n in c.notices]
    with Store.open(MEMORY) as store:
        store.record_attempt(notice, "delivered", at=SAVED_AT)
        store.record_changes(changes)  # the change, written late
        assert store.pending_notices() == []
        record = store.incident_record(notice.incident.id)
        assert record is not None
        assert [(d.notice_id, d.state, d.attempts) for d in record.deliveries] == [
            (notice.id, "delivered", 1)
        ]


def test_a_write_refused_for_what_it_wrote_is_told_from_a_store_that_takes_none(
    tmp_path: Path,
) -> None:
    """``refused``: what was written is to blame (text SQLite cannot take), or the store
    (read-only, its file replaced), where any other write would fail as well."""
    path = tmp_path / "state.sqlite3"
    with Store.open(path) as store:
        with pytest.raises(StoreError) as bad_text:
            store.add_label("1", "\ud800", "negative", source="api", who="@maria")
        assert refused(bad_text.value)
        store._db.execute("PRAGMA query_only = ON")
        with pytest.raises(StoreError) as read_only:
            store.add_label("1", "fine", "negative", source="api", who="@maria")
        assert not refused(read_only.value)
        store._db.execute("PRAGMA query_only = OFF")
        path.unlink()
        with pytest.raises(StoreError) as replaced:
            store.add_label("1", "fine", "negative", source="api", who="@maria")
        assert not refused(replaced.value)
    assert refused(TypeError("a bug in encoding what is written"))
