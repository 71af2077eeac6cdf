"""The embedded store: one revisioned SQLite table, modelled on k3s's kine.

Every change appends a row to `kine`, and the row id is the change's revision, so revisions
are global and increasing (AUTOINCREMENT never reuses an id, even after compaction). A row
names the row it supersedes in `prev_revision`; the UNIQUE index on (name, prev_revision) lets
exactly one change follow any row, which is the compare-and-swap. A deletion is a tombstone row
(deleted=1) that keeps the last value, so a watch can report it. Compaction deletes the rows
no reader at or after the watermark can need, and records the watermark in `compaction`.

One process owns a database file (the API server): the connection holds SQLite's exclusive
lock, so watches can be fed from the rows this process commits instead of by polling the
table, and a second server on the same file is refused instead of silently missing events.
SQLite calls run on the event loop, cheaper than a hop to a thread: with WAL and
synchronous=NORMAL, bench/store.py measured a write at 20 µs (p99 0.15 ms), a get at 3 µs, a
100-key list at 0.13 ms and a 2000-key list at 2.5 ms (p99 5 ms) on this machine.
"""

from __future__ import annotations  # a method named `list` shadows the builtin in the class body

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator

from cluster.store.base import (Compacted, Conflict, Event, FutureRevision, KeyExists,
                                KeyNotFound, Store, StoreError, prefix_end)

SCHEMA = """
CREATE TABLE IF NOT EXISTS kine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- the revision of this change
    name TEXT NOT NULL,                    -- the key
    created INTEGER NOT NULL,              -- 1: this row creates the key
    deleted INTEGER NOT NULL,              -- 1: this row is a tombstone
    create_revision INTEGER NOT NULL,      -- the id of the creating row (0 on that row)
    prev_revision INTEGER NOT NULL,        -- the id of the row this one supersedes, 0: none
    lease INTEGER NOT NULL DEFAULT 0,      -- kept for kine's layout; leases are not used
    value BLOB,                            -- the new value (the last value on a tombstone)
    old_value BLOB                         -- the superseded row's value
);
CREATE UNIQUE INDEX IF NOT EXISTS kine_name_prev_revision_uindex ON kine (name, prev_revision);
CREATE INDEX IF NOT EXISTS kine_name_id_index ON kine (name, id);
CREATE TABLE IF NOT EXISTS compaction (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL              -- history before this revision is gone
);
"""

# A watcher whose consumer falls this many events behind stops being fed live and re-reads
# the table from where it is, so a stuck client costs rows on disk, not memory.
MAX_BACKLOG = 1000
# Rows per read when a watch catches up from the table, and revisions per compaction
# transaction: both bound how long one call holds the event loop.
CATCH_UP_ROWS = 500
COMPACT_STEP = 2000

_OVERFLOW = object()
_CLOSED = object()


class _Row:
    __slots__ = ("id", "name", "created", "deleted", "create_revision", "value", "old_value")

    def __init__(self, id, name, created, deleted, create_revision, value, old_value):
        self.id, self.name, self.created, self.deleted = id, name, created, deleted
        self.create_revision, self.value, self.old_value = create_revision, value, old_value

    def event(self) -> Event:
        if self.deleted:
            return Event("DELETED", self.name, self.value, self.id, self.value)
        if self.created:
            return Event("ADDED", self.name, self.value, self.id, None)
        return Event("MODIFIED", self.name, self.value, self.id, self.old_value)


_ROW_COLUMNS = "id, name, created, deleted, create_revision, value, old_value"


class SQLiteStore(Store):
    def __init__(self, db: sqlite3.Connection, location: str):
        self._db = db
        self.location = location
        self._watchers: dict[object, tuple[str, asyncio.Queue]] = {}
        self._closed = False

    @classmethod
    def open(cls, path: str, url: str) -> "SQLiteStore":
        """Open (creating if needed) the database at `path`; `url` is for error messages."""
        if path != ":memory:" and not os.path.isdir(os.path.dirname(path)):
            raise StoreError(f"store {url}: directory {os.path.dirname(path)} does not exist")
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                 timeout=0.2)
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
        except sqlite3.OperationalError as err:
            if "locked" in str(err):
                raise StoreError(f"store {url}: the database is in use by another process "
                                 f"(one API server owns a SQLite store)") from None
            raise StoreError(f"store {url}: {err}") from None
        return cls(db, url)

    # -- reads -------------------------------------------------------------------------------

    def _revision(self) -> int:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'kine'").fetchone()
        return row[0] if row else 0

    def _compact_revision(self) -> int:
        row = self._db.execute("SELECT revision FROM compaction WHERE id = 1").fetchone()
        return row[0] if row else 0

    def _latest(self, key: str) -> _Row | None:
        row = self._db.execute(
            f"SELECT {_ROW_COLUMNS} FROM kine WHERE name = ? ORDER BY id DESC LIMIT 1",
            (key,)).fetchone()
        return _Row(*row) if row else None

    async def get(self, key: str) -> tuple[bytes, int] | None:
        self._check_open()
        row = self._latest(key)
        if row is None or row.deleted:
            return None
        return row.value, row.id

    async def list(self, prefix: str, limit: int = 0, start_after: str = "",
                   revision: int = 0) -> tuple[list[tuple[str, bytes, int]], int]:
        self._check_open()
        current = self._revision()
        if revision > current:
            raise FutureRevision(revision, current)
        if revision and revision < (compacted := self._compact_revision()):
            raise Compacted(revision, compacted)
        at = revision or current
        where, args = _key_range(prefix)
        if start_after:
            where += " AND name > ?"
            args.append(start_after)
        # The newest row of each key as of `at`; keys whose newest row is a tombstone are gone.
        query = (f"SELECT name, value, id FROM kine WHERE id IN "
                 f"(SELECT MAX(id) FROM kine WHERE {where} AND id <= ? GROUP BY name) "
                 f"AND deleted = 0 ORDER BY name")
        args.append(at)
        if limit > 0:
            query += " LIMIT ?"
            args.append(limit)
        return self._db.execute(query, args).fetchall(), at

    async def current_revision(self) -> int:
        self._check_open()
        return self._revision()

    # -- writes ------------------------------------------------------------------------------

    def _append(self, key: str, created: int, deleted: int, create_revision: int,
                prev_revision: int, value: bytes, old_value: bytes | None) -> _Row:
        try:
            cursor = self._db.execute(
                "INSERT INTO kine (name, created, deleted, create_revision, prev_revision, "
                "value, old_value) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, created, deleted, create_revision, prev_revision, value, old_value))
        except sqlite3.IntegrityError:
            # Another writer appended a successor to the same row first: the CAS lost.
            latest = self._latest(key)
            if created and latest is not None and not latest.deleted:
                raise KeyExists(key) from None
            raise Conflict(key, prev_revision, latest.id if latest else 0) from None
        row = _Row(cursor.lastrowid, key, created, deleted, create_revision, value, old_value)
        self._publish(row.event())
        return row

    async def create(self, key: str, value: bytes) -> int:
        self._check_open()
        latest = self._latest(key)
        if latest is not None and not latest.deleted:
            raise KeyExists(key)
        # A re-created key supersedes its tombstone, so the CAS index covers re-creation too.
        return self._append(key, 1, 0, 0, latest.id if latest else 0, value, None).id

    def _current(self, key: str, expected_revision: int) -> _Row:
        latest = self._latest(key)
        if latest is None or latest.deleted:
            raise KeyNotFound(key)
        if expected_revision and latest.id != expected_revision:
            raise Conflict(key, expected_revision, latest.id)
        return latest

    async def update(self, key: str, value: bytes, expected_revision: int) -> int:
        self._check_open()
        _require_revision("update", key, expected_revision)
        latest = self._current(key, expected_revision)
        create_revision = latest.create_revision or latest.id
        return self._append(key, 0, 0, create_revision, latest.id, value, latest.value).id

    async def delete(self, key: str, expected_revision: int = 0) -> tuple[bytes, int]:
        self._check_open()
        latest = self._current(key, expected_revision)
        create_revision = latest.create_revision or latest.id
        row = self._append(key, 0, 1, create_revision, latest.id, latest.value, latest.value)
        return latest.value, row.id

    async def compact(self, revision: int) -> None:
        self._check_open()
        current = self._revision()
        if revision > current:
            raise FutureRevision(revision, current)
        start = self._compact_revision()
        # Step by step, each step one transaction that also moves the watermark, so readers
        # never see rows missing below a watermark that says they are there.
        while start < revision and not self._closed:
            end = min(start + COMPACT_STEP, revision)
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                # Rows superseded at or before `end` cannot be read at `end` or later, nor
                # tombstones: at `end` their keys simply do not exist.
                self._db.execute(
                    "DELETE FROM kine WHERE id IN (SELECT prev_revision FROM kine "
                    "WHERE id > ? AND id <= ? AND prev_revision != 0)", (start, end))
                self._db.execute("DELETE FROM kine WHERE deleted = 1 AND id <= ?", (end,))
                self._db.execute(
                    "INSERT INTO compaction (id, revision) VALUES (1, ?) "
                    "ON CONFLICT (id) DO UPDATE SET revision = excluded.revision", (end,))
            start = end
            await asyncio.sleep(0)

    # -- watch -------------------------------------------------------------------------------

    def _publish(self, event: Event) -> None:
        for token, (prefix, queue) in list(self._watchers.items()):
            if event.key.startswith(prefix):
                if queue.qsize() >= MAX_BACKLOG:
                    del self._watchers[token]
                    queue.put_nowait(_OVERFLOW)
                else:
                    queue.put_nowait(event)

    async def watch(self, prefix: str, after_revision: int) -> AsyncIterator[Event]:
        self._check_open()
        position = after_revision
        while not self._closed:
            # Subscribe and read the high-water mark in one step of the event loop, with no
            # await between: live events are then exactly those above `high`.
            token, queue = object(), asyncio.Queue()
            self._watchers[token] = (prefix, queue)
            try:
                high = self._revision()
                while position < high:
                    rows = self._history(prefix, position, high)
                    for row in rows:
                        position = row.id
                        yield row.event()
                    if len(rows) < CATCH_UP_ROWS:
                        position = high
                while True:
                    event = await queue.get()
                    if event is _CLOSED:
                        return
                    if event is _OVERFLOW:
                        break
                    position = event.revision
                    yield event
            finally:
                self._watchers.pop(token, None)

    def _history(self, prefix: str, after: int, high: int) -> list[_Row]:
        if self._closed:
            return []
        if after < (compacted := self._compact_revision()):
            raise Compacted(after, compacted)
        where, args = _key_range(prefix)
        rows = self._db.execute(
            f"SELECT {_ROW_COLUMNS} FROM kine WHERE id > ? AND id <= ? AND {where} "
            f"ORDER BY id LIMIT {CATCH_UP_ROWS}", [after, high, *args]).fetchall()
        return [_Row(*row) for row in rows]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for _, queue in self._watchers.values():
            queue.put_nowait(_CLOSED)
        self._watchers.clear()
        self._db.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"store {self.location} is closed")


def _key_range(prefix: str) -> tuple[str, list]:
    """A WHERE clause (and its arguments) matching the keys under `prefix`, index-friendly."""
    end = prefix_end(prefix)
    if end:
        return "name >= ? AND name < ?", [prefix, end]
    return "name >= ?", [prefix]


def _require_revision(operation: str, key: str, expected_revision: int) -> None:
    if expected_revision <= 0:
        raise ValueError(f"{operation} of {key!r}: expected_revision must be the key's mod "
                         f"revision (> 0), got {expected_revision}")
