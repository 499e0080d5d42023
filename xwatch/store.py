"""The embedded store: the daemon's state in one SQLite file, so a restart forgets nothing.

It holds the detector checkpoints (a month of learned rhythm per series), the team's
sentiment labels, and (since schema version 3) the incidents with their audit trail, the
silences and the durable notification outbox (``record_changes`` writes an incident's
change and its notices in one transaction, before anything is sent).

* One file, WAL mode (readers never block the writer), ``synchronous=NORMAL``:
  a power loss can lose the last transactions, never corrupt the file; a killed process
  (SIGKILL) loses nothing committed.
  ``:memory:`` gives a private in-memory store (tests).
* Migrations by version: ``MIGRATIONS[n]`` takes the schema from version ``n-1``
  to ``n``; the ``schema_version`` table records each one applied and when.
  Opening a file applies what is missing, in one transaction; a file written by
  a newer xwatch (a schema version this one does not know) is refused.
* Every write is one transaction: a checkpoint is saved whole or not at all.
* One connection, guarded by a lock, so the daemon can write from a worker
  thread (``asyncio.to_thread``) without blocking its event loop.

Inspect a store with the ``sqlite3`` shell: ``SELECT brand, topic, scale_seconds,
measure, detector, saved_at FROM detector_checkpoints``.

Since schema version 2 it also keeps the team's sentiment labels (``sentiment_labels``):
every "negative" / "not negative" a person gave one of an alert's sample posts, from the
JSON API or Slack (``xwatch.feedback``). Labels are only ever added, never rewritten, so
the table is the history; ``export_labels`` writes the training set ``xwatch train
--input`` reads, one line per post with its latest label.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from xwatch.alerting.codec import CodecError, from_json, to_json
from xwatch.alerting.incidents import Change, Entry, Incident, Notice, Silence
from xwatch.alerting.service import Delivery, IncidentRecord
from xwatch.detect.state import Checkpoint
from xwatch.errors import XwatchError
from xwatch.model import SeriesKey, SourcePosition

log = logging.getLogger("xwatch.store")

MEMORY = ":memory:"
T = TypeVar("T")

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """
        CREATE TABLE IF NOT EXISTS detector_checkpoints (
            brand         TEXT    NOT NULL,
            topic         TEXT    NOT NULL,  -- '' for the whole brand, else a rule id
            scale_seconds INTEGER NOT NULL,
            measure       TEXT    NOT NULL,  -- volume, negative_share, negative_volume
            detector      TEXT    NOT NULL,  -- the detector's class name
            state_version INTEGER NOT NULL,  -- xwatch.detect.state.STATE_VERSION
            state         TEXT    NOT NULL,  -- JSON: xwatch.detect.state.to_state
            saved_at      TEXT    NOT NULL,  -- ISO 8601, UTC
            PRIMARY KEY (brand, topic, scale_seconds, measure)
        )
        """,
    ),
    2: (
        """
        CREATE TABLE IF NOT EXISTS sentiment_labels (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            post_id    TEXT    NOT NULL,  -- the post's id at its source (X post id)
            text       TEXT    NOT NULL,  -- the post's text, as it was labelled
            lang       TEXT    NOT NULL,  -- 'en', 'ja', ... ('' when unknown)
            label      TEXT    NOT NULL
                CHECK (label IN ('negative', 'not_negative', 'neutral', 'positive')),
            source     TEXT    NOT NULL,  -- where the label came from: api, slack
            who        TEXT    NOT NULL,  -- the person (or their Slack user id)
            alert      TEXT    NOT NULL,  -- the alert's identity ('' when unknown)
            created_at TEXT    NOT NULL   -- ISO 8601, UTC
        )
        """,
        "CREATE INDEX IF NOT EXISTS sentiment_labels_post ON sentiment_labels (post_id, id)",
    ),
    3: (
        # Incidents as the incident book leaves them after each change: the record is
        # the whole Incident as JSON (xwatch.alerting.codec); the columns are for queries.
        """
        CREATE TABLE IF NOT EXISTS incidents (
            id          TEXT PRIMARY KEY,
            brand       TEXT NOT NULL,
            state       TEXT NOT NULL,  -- firing, acknowledged, silenced, resolved
            severity    TEXT NOT NULL,
            title       TEXT NOT NULL,
            opened_at   TEXT NOT NULL,  -- ISO 8601, UTC
            updated_at  TEXT NOT NULL,
            resolved_at TEXT,
            record      TEXT NOT NULL   -- JSON: xwatch.alerting.incidents.Incident
        )
        """,
        "CREATE INDEX IF NOT EXISTS incidents_by_state ON incidents (state, opened_at)",
        # The audit trail: every state change of every incident, never rewritten.
        """
        CREATE TABLE IF NOT EXISTS incident_events (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            incident_id TEXT NOT NULL,
            at          TEXT NOT NULL,
            kind        TEXT NOT NULL,  -- opened, part_added, acknowledged, notified, ...
            text        TEXT NOT NULL,
            who         TEXT NOT NULL   -- the person for an action, '' for the data
        )
        """,
        "CREATE INDEX IF NOT EXISTS incident_events_by_incident ON incident_events "
        "(incident_id, id)",
        """
        CREATE TABLE IF NOT EXISTS silences (
            id         TEXT PRIMARY KEY,
            ends_at    TEXT NOT NULL,
            removed_at TEXT,            -- set when a person removed it early
            removed_by TEXT,
            record     TEXT NOT NULL    -- JSON: xwatch.alerting.incidents.Silence
        )
        """,
        # The durable outbox: a notice is written here before it is sent, and marked
        # when delivered (or failed for good); pending ones are sent again at start.
        """
        CREATE TABLE IF NOT EXISTS outbox (
            seq          INTEGER PRIMARY KEY AUTOINCREMENT,  -- the order to send in
            notice_id    TEXT NOT NULL UNIQUE,
            channel      TEXT NOT NULL,
            incident_id  TEXT NOT NULL,
            kind         TEXT NOT NULL,
            state        TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
            attempts     INTEGER NOT NULL DEFAULT 0,
            last_error   TEXT NOT NULL DEFAULT '',
            created_at   TEXT NOT NULL,
            delivered_at TEXT,
            notice       TEXT NOT NULL   -- JSON: xwatch.alerting.incidents.Notice
        )
        """,
        "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state, seq)",
        "CREATE INDEX IF NOT EXISTS outbox_by_incident ON outbox (incident_id, seq)",
        """
        CREATE TABLE IF NOT EXISTS delivery_attempts (
            id        INTEGER PRIMARY KEY AUTOINCREMENT,
            notice_id TEXT NOT NULL,
            channel   TEXT NOT NULL,
            at        TEXT NOT NULL,
            outcome   TEXT NOT NULL,  -- delivered, retry, failed
            error     TEXT NOT NULL
        )
        """,
        # What a notifier remembers of an incident (Slack: the message's channel and ts).
        """
        CREATE TABLE IF NOT EXISTS message_refs (
            channel     TEXT NOT NULL,
            incident_id TEXT NOT NULL,
            ref         TEXT NOT NULL,  -- JSON object of strings
            PRIMARY KEY (channel, incident_id)
        )
        """,
    ),
    4: (
        # Where each live source that can fetch the past takes up after a restart (the
        # newest post of it the checkpoint's detectors have seen), saved with the checkpoint.
        """
        CREATE TABLE IF NOT EXISTS source_positions (
            source     TEXT PRIMARY KEY,
            post_id    TEXT NOT NULL,
            created_at TEXT NOT NULL  -- ISO 8601, UTC
        )
        """,
    ),
    5: (
        # For each time scale, the start of the first bucket the checkpoint's detectors
        # have not learned: the posts of the ingest journal (``xwatch.journal``) from there
        # on are counted again at start. Saved with the checkpoint.
        """
        CREATE TABLE IF NOT EXISTS journal_marks (
            scale_seconds  INTEGER PRIMARY KEY,
            closed_through REAL    NOT NULL  -- epoch seconds
        )
        """,
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)

INDEXES = (
    "CREATE INDEX IF NOT EXISTS incidents_by_resolved ON incidents (resolved_at)",
    "CREATE INDEX IF NOT EXISTS delivery_attempts_by_notice ON delivery_attempts (notice_id)",
)
"""Indexes that change no meaning (``prune`` uses them), made at every open rather than
by a migration: a store they were added to still opens in an older xwatch (a rollback)."""

PRUNE_BATCH = 200
"""The most incidents ``prune`` deletes in one transaction: the store's lock is held a
short while each time (the rest go at the next call)."""

LABELS = ("negative", "not_negative", "neutral", "positive")
"""What a person can say about a post's sentiment."""

TRAIN_LABEL = {
    "negative": "negative",
    "not_negative": "neutral",  # "not negative" says no more: the trainer's neutral class
    "neutral": "neutral",
    "positive": "positive",
}
"""A stored label → the label ``xwatch train`` learns (negative, neutral, positive)."""


@dataclass(frozen=True, slots=True)
class LabelDraft:
    """A sentiment label to store: what ``Store.add_labels`` takes."""

    post_id: str
    text: str
    label: str  # one of LABELS
    source: str  # api, slack
    who: str
    lang: str = ""
    alert: str = ""  # the identity of the alert whose sample the post was


@dataclass(frozen=True, slots=True)
class StoredLabel:
    """A sentiment label as stored, with its row id and when it was stored."""

    id: int
    post_id: str
    text: str
    lang: str
    label: str
    source: str
    who: str
    alert: str
    created_at: datetime

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "post_id": self.post_id,
            "text": self.text,
            "lang": self.lang,
            "label": self.label,
            "source": self.source,
            "who": self.who,
            "alert": self.alert,
            "created_at": self.created_at.isoformat(),
        }

    def training_record(self) -> dict[str, str | None]:
        """The line ``xwatch train --input`` reads: text, label (negative, neutral,
        positive) and lang (None when unknown)."""
        return {"text": self.text, "label": TRAIN_LABEL[self.label], "lang": self.lang or None}


BUSY_SECONDS = 1.0
"""How long a write waits for another process's lock on the file (an operator's sqlite3
shell in a transaction) before it fails with a ``StoreError``. The daemon writes
incidents and deliveries on its event loop: 5 s stalled everything, at each write, and
a stop with notices waiting ran past the service manager's grace period. What fails is
kept and written later (``Daemon._save_changes``)."""
CHECKPOINT_PAGE = 500  # checkpoint rows read at a time on a restore (``iter_checkpoints``)


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one ``Store.prune`` deleted; ``more``: it stopped at its limit."""

    incidents: int
    silences: int
    more: bool


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A pending notice whose stored record cannot be decoded: damaged, edited by hand,
    or written in a format this code cannot read. The reads give it in the notice's
    place rather than raise: one such row failed every start, or stayed pending for
    good, read again at each start. ``error`` says why without quoting the record (it
    holds its incident's sample posts, which never go to the logs)."""

    id: str
    channel: str
    error: str


def _identity(path: str) -> tuple[int, int] | None:
    """The file at ``path`` (device and inode); None for the in-memory store, and (0, 0)
    when nothing is there."""
    if path == MEMORY:
        return None
    try:
        found = os.stat(path)
    except OSError:
        return (0, 0)
    return (found.st_dev, found.st_ino)


class StoreError(XwatchError, OSError):
    """The store cannot be opened, read or written.

    Also an ``OSError``: like a port already in use, it is a problem with the
    machine's files that ``xwatch run`` reports in one line before exiting 1.
    """


def refused(exc: BaseException) -> bool:
    """Whether a write failed for what it wrote (a constraint, a value SQLite cannot bind
    or encode, a damaged row, a bug in encoding it): written again, it fails again, while
    other writes may work. Not when the store takes no writes now (locked or busy by
    another process, read-only, full, an I/O error: ``sqlite3.OperationalError``; or its
    file deleted or replaced, a ``StoreError`` of no cause): the same write may work
    later, and no other would work meanwhile."""
    cause = exc.__cause__ if isinstance(exc, StoreError) else exc
    if cause is None or isinstance(cause, sqlite3.OperationalError | MemoryError):
        return False
    return isinstance(cause, Exception)


class Store:
    """An open store. Make one with ``Store.open(path)``; ``close()`` it when done."""

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self._db = connection
        self.path = path
        self._lock = threading.Lock()
        self._file = _identity(path)  # the file opened (None: in memory)

    @classmethod
    def open(cls, path: Path | str) -> Store:
        """Open (or create) the store at ``path`` and bring its schema up to date."""
        name = str(path)
        if name != MEMORY:
            file = Path(path)
            if file.is_dir():
                raise StoreError(f"cannot open the store {file}: it is a folder, not a file")
            if not file.parent.is_dir():
                raise StoreError(
                    f"cannot open the store {file}: the folder {file.parent} does not exist"
                )
        try:
            connection = sqlite3.connect(
                name, isolation_level=None, check_same_thread=False, timeout=BUSY_SECONDS
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store {name}: {exc}") from exc
        store = cls(connection, name)
        try:
            store._setup()
        except (sqlite3.Error, StoreError) as exc:
            connection.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(
                f"cannot open the store {name}: {exc} (xwatch must be able to write the file "
                "and its folder, where SQLite keeps its -wal and -shm files)"
            ) from exc
        return store

    def _setup(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._write() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            # A write that changes nothing: a read-only file fails here, at start,
            # not at the first checkpoint minutes later.
            db.execute("DELETE FROM schema_version WHERE version < 0")
            current = self._version(db)
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"cannot open the store {self.path}: it has schema version {current}, "
                    f"written by a newer xwatch (this one knows up to {SCHEMA_VERSION})"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version]:
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, _now()),
                )
            for statement in INDEXES:
                db.execute(statement)

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._version(self._db)

    @staticmethod
    def _version(db: sqlite3.Connection) -> int:
        row = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        return int(row[0])

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed whole, or rolled back whole. Text that
        SQLite cannot take (a lone surrogate: UTF-8 has no encoding for it) is a
        ``StoreError`` too, as every failed write is."""
        with self._lock:
            if self._file is not None and _identity(self.path) != self._file:
                # writes would go on to a file no one will open again: the next start
                # would find none of them
                raise StoreError(
                    f"the store file {self.path} was deleted or replaced while xwatch ran; "
                    "restart xwatch to open the one there now"
                )
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except UnicodeEncodeError as exc:
                self._db.execute("ROLLBACK")
                raise StoreError(f"cannot write text to {self.path}: {exc.reason}") from exc
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- detector checkpoints -----------------------------------------------------------

    def save_checkpoints(
        self, items: Iterable[Checkpoint], saved_at: datetime | None = None
    ) -> None:
        """Replace the stored checkpoint with ``items``, in one transaction.

        The checkpoint is a snapshot of every detector: a series that is not in
        ``items`` any more (a brand or rule removed) is dropped from the store.
        """
        self.save_checkpoint_rows(checkpoint_rows(items, saved_at or datetime.now(UTC)))

    def save_checkpoint_rows(
        self,
        rows: Iterable[CheckpointRow],
        positions: Mapping[str, SourcePosition] | None = None,
        marks: Mapping[int, float] | None = None,
    ) -> None:
        """``save_checkpoints`` of rows already encoded (``checkpoint_rows``): a caller
        with many series encodes them a chunk at a time and drops each chunk's states.

        ``positions``: where each resumable source takes up after a restart, as of these
        states, replacing those saved (in the same transaction: a crash never leaves the
        states of one checkpoint with the positions of another); None leaves them.
        ``marks``: each scale's first bucket these states have not learned
        (``Pipeline.closed_through``), the same way."""
        try:
            with self._write() as db:
                db.execute("DELETE FROM detector_checkpoints")
                db.executemany(
                    "INSERT INTO detector_checkpoints (brand, topic, scale_seconds, measure, "
                    "detector, state_version, state, saved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                if positions is not None:
                    db.execute("DELETE FROM source_positions")
                    db.executemany(
                        "INSERT INTO source_positions (source, post_id, created_at) "
                        "VALUES (?, ?, ?)",
                        [
                            (source, position.post_id, position.created_at.isoformat())
                            for source, position in sorted(positions.items())
                        ],
                    )
                if marks is not None:
                    db.execute("DELETE FROM journal_marks")
                    db.executemany(
                        "INSERT INTO journal_marks (scale_seconds, closed_through) VALUES (?, ?)",
                        sorted(marks.items()),
                    )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot save the checkpoint to {self.path}: {exc}") from exc

    def journal_marks(self) -> dict[int, float] | None:
        """Each scale's first bucket the saved checkpoint has not learned (epoch seconds),
        as saved with it; empty when none was saved (nothing learned: read it all). None
        when a row is not a mark (a store edited by hand), with a warning: the journal is
        then not read (read whole, what the checkpoint learned would count twice)."""
        try:
            with self._lock:
                rows = self._db.execute(
                    "SELECT scale_seconds, closed_through FROM journal_marks"
                ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the journal marks from {self.path}: {exc}") from exc
        marks: dict[int, float] = {}
        for scale, closed in rows:
            if type(scale) is not int or not isinstance(closed, float) or closed != closed:
                log.warning(
                    "store %s: a journal mark is damaged (scale %r, %r): the journal is not read",
                    self.path,
                    scale,
                    closed,
                    extra={"event": "journal_marks_damaged"},
                )
                return None
            marks[scale] = closed
        return marks

    def source_positions(self) -> dict[str, SourcePosition]:
        """Where each resumable source takes up, as saved with the last checkpoint. A row
        that is not a position (a store edited by hand) is left out, with a warning: the
        source then starts from now, as a fresh daemon's does."""
        try:
            with self._lock:
                rows = self._db.execute(
                    "SELECT source, post_id, created_at FROM source_positions ORDER BY source"
                ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the source positions from {self.path}: {exc}") from exc
        positions = {}
        for source, post_id, created_at in rows:
            try:
                if not isinstance(source, str) or not isinstance(post_id, str):
                    raise ValueError("not text")
                at = datetime.fromisoformat(created_at)
                if at.tzinfo is None:
                    raise ValueError("no time zone")
            except (TypeError, ValueError) as exc:
                log.warning(
                    "store %s: the position of source %r is damaged (%s); it starts from now",
                    self.path,
                    source,
                    exc,
                    extra={"event": "source_position_damaged"},
                )
                continue
            positions[source] = SourcePosition(post_id, at.astimezone(UTC))
        return positions

    def load_checkpoints(self) -> list[Checkpoint]:
        """The stored checkpoint, in series order (empty on a new store)."""
        return list(self.iter_checkpoints())

    def iter_checkpoints(self, page: int = CHECKPOINT_PAGE) -> Iterator[Checkpoint]:
        """The stored checkpoint, in series order, read ``page`` rows at a time: a restore
        holds one page of states, not all of them (55,000 rows of JSON parsed at once took
        1.3 GB, and the process kept most of it after the restore)."""
        select = (
            "SELECT brand, topic, scale_seconds, measure, detector, state_version, state, "
            "saved_at FROM detector_checkpoints "
        )
        order = "ORDER BY brand, topic, scale_seconds, measure LIMIT ?"
        after: tuple[Any, ...] | None = None
        while True:
            try:
                with self._lock:
                    if after is None:
                        rows = self._db.execute(select + order, (page,)).fetchall()
                    else:  # after the last row read, by the table's key
                        where = "WHERE (brand, topic, scale_seconds, measure) > (?, ?, ?, ?) "
                        rows = self._db.execute(select + where + order, (*after, page)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the checkpoint from {self.path}: {exc}") from exc
            for row in rows:
                yield self._checkpoint_of(row)
            if len(rows) < page:
                return
            after = tuple(rows[-1][:4])

    def newest_state_version(self) -> int:
        """The newest detector state version in the checkpoint (0 on a new store)."""
        try:
            with self._lock:
                (newest,) = self._db.execute(
                    "SELECT MAX(state_version) FROM detector_checkpoints"
                ).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the checkpoint from {self.path}: {exc}") from exc
        return int(newest) if isinstance(newest, int) else 0

    def _checkpoint_of(self, row: tuple[Any, ...]) -> Checkpoint:
        """One checkpoint row, or a ``StoreError`` saying what is wrong with it (a store
        edited by hand, or damaged: the daemon stops saying so, rather than later)."""
        brand, topic, scale, measure, detector, version, state, saved_at = row
        where = f"{self.path}: the checkpoint of {brand!r}/{topic!r}@{scale!r} ({measure!r})"
        types = (str, str, int, str, str, int, str, str)
        if any(type(value) is not kind for value, kind in zip(row, types, strict=True)):
            found = ", ".join(type(value).__name__ for value in row)
            raise StoreError(f"{where}: a row of the wrong types ({found})")
        try:
            data = json.loads(state)
            when = datetime.fromisoformat(saved_at)
        except (ValueError, RecursionError) as exc:
            raise StoreError(f"{where} is damaged: {exc}") from exc
        return Checkpoint(SeriesKey(brand, topic, scale), measure, detector, version, data, when)

    # -- sentiment labels -----------------------------------------------------------------

    def add_label(
        self,
        post_id: str,
        text: str,
        label: str,
        *,
        source: str,
        who: str,
        lang: str = "",
        alert: str = "",
        created_at: datetime | None = None,
    ) -> StoredLabel:
        """Store one label (see ``add_labels``)."""
        draft = LabelDraft(post_id, text, label, source, who, lang, alert)
        return self.add_labels([draft], created_at)[0]

    def add_labels(
        self, drafts: Iterable[LabelDraft], created_at: datetime | None = None
    ) -> list[StoredLabel]:
        """Store these labels in one transaction: all of them or, on an error, none."""
        at = (created_at or datetime.now(UTC)).astimezone(UTC)
        items = list(drafts)
        for draft in items:
            if draft.label not in LABELS:
                raise ValueError(f"label must be one of {', '.join(LABELS)}, not {draft.label!r}")
        stored = []
        try:
            with self._write() as db:
                for d in items:
                    cursor = db.execute(
                        "INSERT INTO sentiment_labels (post_id, text, lang, label, source, who, "
                        "alert, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            d.post_id,
                            d.text,
                            d.lang,
                            d.label,
                            d.source,
                            d.who,
                            d.alert,
                            at.isoformat(),
                        ),
                    )
                    row_id = cursor.lastrowid
                    assert row_id is not None
                    stored.append(
                        StoredLabel(
                            row_id,
                            d.post_id,
                            d.text,
                            d.lang,
                            d.label,
                            d.source,
                            d.who,
                            d.alert,
                            at,
                        )
                    )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot save the labels to {self.path}: {exc}") from exc
        return stored

    def labels(self, *, after: int = 0, limit: int | None = None) -> list[StoredLabel]:
        """The stored labels in the order they were given, those with an id above ``after``,
        at most ``limit`` of them (page on with ``after`` = the last id seen)."""
        sql = f"SELECT {_LABEL_COLUMNS} FROM sentiment_labels WHERE id > ? ORDER BY id"
        params: tuple[int, ...] = (after,)
        if limit is not None:
            sql += " LIMIT ?"
            params = (after, limit)
        return self._read_labels(sql, params)

    def label_count(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM sentiment_labels").fetchone()
        return int(row[0])

    def training_set(self) -> list[StoredLabel]:
        """One label per post, its latest (a post labelled again takes the newer label)."""
        return self._read_labels(
            f"SELECT {_LABEL_COLUMNS} FROM sentiment_labels WHERE id IN "
            "(SELECT MAX(id) FROM sentiment_labels GROUP BY post_id) ORDER BY id",
            (),
        )

    def export_labels(self, path: Path | str) -> int:
        """Write the training set as JSON lines ``{"text", "label", "lang"}`` (the input of
        ``xwatch train``; "not_negative" becomes "neutral"), replacing ``path`` whole.

        Returns the number of lines written.
        """
        items = self.training_set()
        target = Path(path)
        partial = target.with_name(f".{target.name}.partial")
        try:
            with partial.open("w", encoding="utf-8", newline="\n") as out:
                for item in items:
                    out.write(training_line(item))
            os.replace(partial, target)
        except (OSError, ValueError) as exc:  # ValueError: text no encoder writes
            partial.unlink(missing_ok=True)
            raise StoreError(f"cannot write the labels to {target}: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)
        return len(items)

    def _read_labels(self, sql: str, params: tuple[int, ...]) -> list[StoredLabel]:
        try:
            with self._lock:
                rows = self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the labels from {self.path}: {exc}") from exc
        return [self._label_of(row) for row in rows]

    def _label_of(self, row: tuple[Any, ...]) -> StoredLabel:
        """One label row, or a ``StoreError`` naming it (a store edited by hand)."""
        row_id, post_id, text, lang, label, source, who, alert, created_at = row
        if type(row_id) is not int or any(type(value) is not str for value in row[1:]):
            found = ", ".join(type(value).__name__ for value in row)
            raise StoreError(f"{self.path}: label {row_id!r} is a row of the wrong types ({found})")
        try:
            at = datetime.fromisoformat(created_at)
        except ValueError as exc:
            raise StoreError(f"{self.path}: label {row_id} is damaged: {exc}") from exc
        return StoredLabel(row_id, post_id, text, lang, label, source, who, alert, at)

    # -- incidents, silences, the outbox -------------------------------------------------

    def record_changes(self, changes: Sequence[Change]) -> None:
        """Store what the incident book did, in one transaction: each incident as it is
        now, its new timeline entries, and its notices as pending in the outbox."""
        try:
            with self._write() as db:
                for change in changes:
                    incident = change.incident
                    db.execute(
                        "INSERT OR REPLACE INTO incidents (id, brand, state, severity, title, "
                        "opened_at, updated_at, resolved_at, record) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            incident.id,
                            incident.brand,
                            incident.state.value,
                            incident.severity.value,
                            incident.title,
                            incident.opened_at.isoformat(),
                            incident.updated_at.isoformat(),
                            incident.resolved_at.isoformat() if incident.resolved_at else None,
                            _dumps(incident),
                        ),
                    )
                    db.executemany(
                        "INSERT INTO incident_events (incident_id, at, kind, text, who) "
                        "VALUES (?, ?, ?, ?, ?)",
                        [
                            (incident.id, e.at.isoformat(), e.kind, e.text, e.who)
                            for e in change.entries
                        ],
                    )
                    db.executemany(
                        "INSERT OR IGNORE INTO outbox (notice_id, channel, incident_id, kind, "
                        "state, created_at, notice) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                        [
                            (n.id, n.channel, incident.id, n.kind.value, _now(), _dumps(n))
                            for n in change.notices
                        ],
                    )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot save incidents to {self.path}: {exc}") from exc

    def open_incidents(self) -> list[Incident]:
        rows = self._read(
            "SELECT record FROM incidents WHERE state != 'resolved' ORDER BY opened_at"
        )
        return [_loads(Incident, row[0]) for row in rows]

    def incidents(
        self,
        *,
        state: str | None = None,
        brand: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[Incident]:
        """Newest first. ``state``: a state, or "open" for any but resolved; ``before``:
        only those listed after the incident with this id (the next page; an unknown id
        lists none)."""
        where: list[str] = []
        params: list[Any] = []
        if before is not None:
            where.append("(opened_at, id) < (SELECT opened_at, id FROM incidents WHERE id = ?)")
            params.append(before)
        if state == "open":
            where.append("state != 'resolved'")
        elif state:
            where.append("state = ?")
            params.append(state)
        if brand:
            where.append("brand = ?")
            params.append(brand)
        sql = "SELECT record FROM incidents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY opened_at DESC, id DESC LIMIT ?"
        rows = self._read(sql, (*params, limit))
        return [_loads(Incident, row[0]) for row in rows]

    def incident_record(self, incident_id: str) -> IncidentRecord | None:
        rows = self._read("SELECT record FROM incidents WHERE id = ?", (incident_id,))
        if not rows:
            return None
        timeline = self._read(
            "SELECT at, kind, text, who FROM incident_events WHERE incident_id = ? ORDER BY id",
            (incident_id,),
        )
        deliveries = self._read(
            "SELECT notice_id, channel, kind, state, attempts, last_error, created_at, "
            "delivered_at FROM outbox WHERE incident_id = ? ORDER BY seq",
            (incident_id,),
        )
        return IncidentRecord(
            incident=_loads(Incident, rows[0][0]),
            timeline=tuple(
                Entry(datetime.fromisoformat(at), kind, text, who)
                for at, kind, text, who in timeline
            ),
            deliveries=tuple(
                Delivery(
                    notice_id=notice_id,
                    channel=channel,
                    kind=kind,
                    state=state,
                    attempts=int(attempts),
                    last_error=error,
                    created_at=datetime.fromisoformat(created),
                    delivered_at=datetime.fromisoformat(delivered) if delivered else None,
                )
                for (
                    notice_id,
                    channel,
                    kind,
                    state,
                    attempts,
                    error,
                    created,
                    delivered,
                ) in deliveries
            ),
        )

    def save_silence(self, silence: Silence) -> None:
        try:
            with self._write() as db:
                db.execute(
                    "INSERT OR REPLACE INTO silences (id, ends_at, record) VALUES (?, ?, ?)",
                    (silence.id, silence.ends_at.isoformat(), _dumps(silence)),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot save the silence to {self.path}: {exc}") from exc

    def remove_silence(self, silence_id: str, who: str, at: datetime) -> None:
        try:
            with self._write() as db:
                db.execute(
                    "UPDATE silences SET removed_at = ?, removed_by = ? WHERE id = ?",
                    (at.isoformat(), who, silence_id),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot remove the silence in {self.path}: {exc}") from exc

    def silences(self, *, active_at: datetime | None = None) -> list[Silence]:
        """The silences not removed (and, with ``active_at``, not yet expired then)."""
        sql = "SELECT record FROM silences WHERE removed_at IS NULL"
        params: tuple[str, ...] = ()
        if active_at is not None:
            sql += " AND ends_at > ?"
            params = (active_at.isoformat(),)
        rows = self._read(sql + " ORDER BY ends_at", params)
        return [_loads(Silence, row[0]) for row in rows]

    def pending_notices(
        self, channel: str | None = None, limit: int | None = None
    ) -> list[tuple[Notice | Unreadable, int]]:
        """The outbox's pending notices with their attempts so far, in the order made
        (``channel``: only that notifier's; ``limit``: only the first so many), each one
        that cannot be decoded as an ``Unreadable`` in its place. Each one decoded holds
        the whole incident as it was: a start reads only the first of each notifier's
        whole, and the ids of the rest (``pending_notice_ids``)."""
        sql = "SELECT notice_id, channel, notice, attempts FROM outbox WHERE state = 'pending'"
        params: list[object] = []
        if channel is not None:
            sql += " AND channel = ?"
            params.append(channel)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self._read(sql, params)
        return [(_notice(*row[:3]), int(row[3])) for row in rows]

    def pending_notice_ids(self) -> dict[str, list[str]]:
        """The ids of the outbox's pending notices by channel, each channel's in the order
        made: what a start queues, without decoding thousands of incidents at once."""
        rows = self._read(
            "SELECT channel, notice_id FROM outbox WHERE state = 'pending' ORDER BY seq"
        )
        ids: dict[str, list[str]] = {}
        for channel, notice_id in rows:
            ids.setdefault(channel, []).append(notice_id)
        return ids

    def pending_notice(self, notice_id: str) -> Notice | Unreadable | None:
        """The notice of this id, if it is still pending (``None``: delivered, failed for
        good, or deleted by ``prune``; ``Unreadable``: its record cannot be decoded): a
        notifier reads a notice that waited by its id (``xwatch.outbox``) when its turn
        comes."""
        rows = self._read(
            "SELECT notice_id, channel, notice FROM outbox "
            "WHERE notice_id = ? AND state = 'pending'",
            (notice_id,),
        )
        return _notice(*rows[0]) if rows else None

    def fail_pending(self, notice_id: str, error: str, at: datetime | None = None) -> None:
        """Record the pending notice ``notice_id`` failed for good, as ``record_attempt``
        does, from its row's columns: without decoding it, since it cannot be decoded
        (``Unreadable``), or its notifier is not configured any more (nothing to decode
        it for). Its record is kept as it was: the only copy of what it said, to mend by
        hand and set pending again. A notice no longer pending is left as it is."""
        when = (at or datetime.now(UTC)).isoformat()
        try:
            with self._write() as db:
                failed = db.execute(
                    "UPDATE outbox SET state = 'failed', attempts = attempts + 1, "
                    "last_error = ? WHERE notice_id = ? AND state = 'pending'",
                    (error, notice_id),
                ).rowcount
                if not failed:
                    return
                db.execute(
                    "INSERT INTO delivery_attempts (notice_id, channel, at, outcome, error) "
                    "SELECT notice_id, channel, ?, 'failed', ? FROM outbox WHERE notice_id = ?",
                    (when, error, notice_id),
                )
                db.execute(
                    "INSERT INTO incident_events (incident_id, at, kind, text, who) "
                    "SELECT incident_id, ?, 'notification_failed', "
                    "kind || ' to ' || channel || ': ' || ?, '' FROM outbox WHERE notice_id = ?",
                    (when, error, notice_id),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record a delivery in {self.path}: {exc}") from exc

    def record_attempt(
        self, notice: Notice, outcome: str, error: str = "", at: datetime | None = None
    ) -> None:
        """One delivery attempt: ``delivered``, ``retry`` (still pending) or ``failed`` (for
        good). The outbox row is updated and the attempt kept in the audit trail.

        Once delivered or failed for good, the row keeps what the incident page shows of
        it (channel, kind, state, attempts, error, times), not the notice itself: only a
        pending notice is read again (``pending_notices``), and each one holds the whole
        incident as it was (its parts' alerts, their charts' points and sample posts),
        tens of kilobytes that the store kept for every notice ever sent, in memory too
        for a daemon without a store file."""
        when = (at or datetime.now(UTC)).isoformat()
        state = {"delivered": "delivered", "retry": "pending", "failed": "failed"}[outcome]
        try:
            with self._write() as db:
                # the notice's row, if its change was never written (the store refused it,
                # and the notice went out all the same): else the change, written later,
                # made it pending, and a restart sent it again
                db.execute(
                    "INSERT OR IGNORE INTO outbox (notice_id, channel, incident_id, kind, "
                    "state, created_at, notice) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                    (
                        notice.id,
                        notice.channel,
                        notice.incident.id,
                        notice.kind.value,
                        when,
                        _dumps(notice),
                    ),
                )
                db.execute(
                    "UPDATE outbox SET state = ?, attempts = attempts + 1, last_error = ?, "
                    "delivered_at = ?, notice = CASE ? WHEN 'pending' THEN notice ELSE '' END "
                    "WHERE notice_id = ?",
                    (state, error, when if outcome == "delivered" else None, state, notice.id),
                )
                db.execute(
                    "INSERT INTO delivery_attempts (notice_id, channel, at, outcome, error) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (notice.id, notice.channel, when, outcome, error),
                )
                if outcome != "retry":
                    db.execute(
                        "INSERT INTO incident_events (incident_id, at, kind, text, who) "
                        "VALUES (?, ?, ?, ?, '')",
                        (
                            notice.incident.id,
                            when,
                            "notified" if outcome == "delivered" else "notification_failed",
                            f"{notice.kind.value} to {notice.channel}"
                            + (f": {error}" if error else ""),
                        ),
                    )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record a delivery in {self.path}: {exc}") from exc

    def message_ref(self, channel: str, incident_id: str) -> dict[str, str] | None:
        rows = self._read(
            "SELECT ref FROM message_refs WHERE channel = ? AND incident_id = ?",
            (channel, incident_id),
        )
        if not rows:
            return None
        ref = json.loads(rows[0][0])
        return {str(k): str(v) for k, v in ref.items()}

    def save_message_ref(self, channel: str, incident_id: str, ref: dict[str, str]) -> None:
        try:
            with self._write() as db:
                db.execute(
                    "INSERT OR REPLACE INTO message_refs (channel, incident_id, ref) "
                    "VALUES (?, ?, ?)",
                    (channel, incident_id, json.dumps(ref)),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot save a message reference to {self.path}: {exc}") from exc

    # -- retention ----------------------------------------------------------------------

    def prune(self, before: datetime, limit: int = PRUNE_BATCH) -> Pruned:
        """Delete the history older than ``before``: incidents resolved before it, with
        their timeline, outbox rows, delivery attempts and message references (never one
        with a notice still pending: it must be sent first), at most ``limit`` of them,
        the oldest first; and the silences that ended or were removed before it. The
        checkpoint and the sentiment labels are never pruned (the labels are the team's
        training set)."""
        cutoff = before.astimezone(UTC).isoformat()
        try:
            with self._write() as db:
                ids = [
                    row[0]
                    for row in db.execute(
                        "SELECT id FROM incidents WHERE resolved_at < ? AND state = 'resolved' "
                        "AND id NOT IN (SELECT incident_id FROM outbox WHERE state = 'pending') "
                        "ORDER BY resolved_at LIMIT ?",
                        (cutoff, limit),
                    )
                ]
                if ids:
                    marks = ", ".join("?" * len(ids))
                    db.execute(
                        "DELETE FROM delivery_attempts WHERE notice_id IN "
                        f"(SELECT notice_id FROM outbox WHERE incident_id IN ({marks}))",
                        ids,
                    )
                    for table, column in (
                        ("outbox", "incident_id"),
                        ("incident_events", "incident_id"),
                        ("message_refs", "incident_id"),
                        ("incidents", "id"),
                    ):
                        db.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", ids)
                silences = db.execute(
                    "DELETE FROM silences WHERE COALESCE(removed_at, ends_at) < ?", (cutoff,)
                ).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"cannot prune {self.path}: {exc}") from exc
        return Pruned(incidents=len(ids), silences=silences, more=len(ids) == limit)

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return list(self._db.execute(sql, tuple(params)).fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from exc

    # -- the file ------------------------------------------------------------------------

    def size_bytes(self) -> int:
        """The database's size (its pages, those still in the WAL included)."""
        with self._lock:
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return int(pages) * int(size)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_LABEL_COLUMNS = "id, post_id, text, lang, label, source, who, alert, created_at"


CheckpointRow = tuple[str, str, int, str, str, int, str, str]  # a detector_checkpoints row


def checkpoint_rows(items: Iterable[Checkpoint], saved_at: datetime) -> list[CheckpointRow]:
    """Checkpoints as the rows ``save_checkpoint_rows`` writes (their states as JSON)."""
    at = saved_at.astimezone(UTC).isoformat()
    return [
        (
            item.series.brand,
            item.series.topic,
            item.series.scale_seconds,
            item.measure,
            item.detector,
            item.version,
            json.dumps(item.state, separators=(",", ":")),
            at,
        )
        for item in items
    ]


def training_line(item: StoredLabel) -> str:
    """One JSON line of the training set (UTF-8 text kept as is, newline-terminated)."""
    line = json.dumps(item.training_record(), ensure_ascii=False)
    # JSON leaves these unescaped, but str.splitlines() breaks lines on them.
    return line.translate(_LINE_BREAKS) + "\n"


_LINE_BREAKS = {ord(c): f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"}


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _dumps(record: object) -> str:
    return json.dumps(to_json(record), ensure_ascii=False, separators=(",", ":"))


def _notice(notice_id: str, channel: str, text: object) -> Notice | Unreadable:
    """A pending outbox row's notice, or why it cannot be read, quoting none of it."""
    if not isinstance(text, str):
        return Unreadable(notice_id, channel, f"not text but {type(text).__name__}")
    try:
        return from_json(Notice, json.loads(text))
    except json.JSONDecodeError as exc:
        why = f"not JSON: {exc}"  # what was expected, and where: no text of it
    except CodecError as exc:
        why = exc.summary  # the field, what was expected, and the type found
    except RecursionError:
        why = "nested too deeply to decode"
    except ValueError as exc:
        why = f"{type(exc).__name__} while decoding"  # a message could quote a value
    return Unreadable(notice_id, channel, why)


def _loads(kind: type[T], text: str) -> T:
    try:
        return from_json(kind, json.loads(text))
    except (ValueError, CodecError) as exc:
        raise StoreError(f"a stored {kind.__name__} cannot be read: {exc}") from exc
