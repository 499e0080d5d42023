"""The embedded store: the daemon's state in one SQLite file, so a restart forgets nothing.

Today it holds the detector checkpoints (a month of learned rhythm per series).
It is also the home of the state still to come: the alert history and the
durable notification outbox each get their own tables here, added by a new
migration, with methods next to the checkpoint ones.

* One file, WAL mode (readers never block the writer), ``synchronous=NORMAL``:
  a crash or power loss can lose the last transactions, never corrupt the file.
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
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from xwatch.detect.state import Checkpoint
from xwatch.errors import XwatchError
from xwatch.model import SeriesKey

MEMORY = ":memory:"

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
}
SCHEMA_VERSION = max(MIGRATIONS)


class StoreError(XwatchError, OSError):
    """The store cannot be opened, read or written.

    Also an ``OSError``: like a port already in use, it is a problem with the
    machine's files that ``xwatch run`` reports in one line before exiting 1.
    """


class Store:
    """An open store. Make one with ``Store.open(path)``; ``close()`` it when done."""

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self._db = connection
        self.path = path
        self._lock = threading.Lock()

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
                name, isolation_level=None, check_same_thread=False, timeout=5.0
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
        """One write transaction: committed whole, or rolled back whole."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
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
        at = (saved_at or datetime.now(UTC)).astimezone(UTC).isoformat()
        rows = [
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
        try:
            with self._write() as db:
                db.execute("DELETE FROM detector_checkpoints")
                db.executemany(
                    "INSERT INTO detector_checkpoints (brand, topic, scale_seconds, measure, "
                    "detector, state_version, state, saved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot save the checkpoint to {self.path}: {exc}") from exc

    def load_checkpoints(self) -> list[Checkpoint]:
        """The stored checkpoint, in series order (empty on a new store)."""
        try:
            with self._lock:
                rows = self._db.execute(
                    "SELECT brand, topic, scale_seconds, measure, detector, state_version, "
                    "state, saved_at FROM detector_checkpoints "
                    "ORDER BY brand, topic, scale_seconds, measure"
                ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the checkpoint from {self.path}: {exc}") from exc
        items = []
        for brand, topic, scale, measure, detector, version, state, saved_at in rows:
            series = SeriesKey(brand, topic, scale)
            try:
                data = json.loads(state)
            except ValueError as exc:
                raise StoreError(
                    f"{self.path}: the checkpoint of {series} ({measure}) is not JSON: {exc}"
                ) from exc
            items.append(
                Checkpoint(
                    series, measure, detector, version, data, datetime.fromisoformat(saved_at)
                )
            )
        return items

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


def _now() -> str:
    return datetime.now(UTC).isoformat()
