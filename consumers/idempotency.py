"""Idempotency stores: skip a record whose effect is already done; claim-then-mark-done.

The contract (docs/consumers.md): `claim(key)` returns False only when `key` is already done; a claim left by a
process that crashed mid-handler does not block, so the handler runs again. `mark_done` after the handler
returned; `release` after it raised (the retry or dead letter takes over). A shared database implements the same
four methods with one row per key and an atomic upsert (`INSERT … ON CONFLICT DO UPDATE … WHERE state <> 'done'`).

`SQLiteStore.transaction(key)` is the inbox pattern: the done mark and the handler's own statements commit in one
SQLite transaction, so effects kept in the store's database are applied exactly once.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from scheduler.errors import ConfigError

__all__ = ["AlreadyDone", "IdempotencyStore", "InMemoryStore", "SQLiteStore", "default_store_path"]

log = logging.getLogger(__name__)


class AlreadyDone(Exception):
    """Raised on entering `SQLiteStore.transaction(key)` when `key` is already done: the body does not run.

    Let it propagate out of the handler: the framework counts the record as `duplicate_skipped`.
    """


class IdempotencyStore(Protocol):
    """Called from many worker threads at once: implementations must be thread-safe."""

    def claim(self, key: str) -> bool:
        """True = run the handler (not done yet; a stale claim is taken over); False = already done, skip."""
        ...

    def mark_done(self, key: str) -> None: ...

    def release(self, key: str) -> None:
        """Forget an unfinished claim (the handler raised)."""
        ...

    def is_done(self, key: str) -> bool: ...


class InMemoryStore:
    """For tests and for handlers whose effects are idempotent anyway; forgets everything on restart."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: set[str] = set()
        self._claimed: set[str] = set()

    def claim(self, key: str) -> bool:
        with self._lock:
            if key in self._done:
                return False
            self._claimed.add(key)
            return True

    def mark_done(self, key: str) -> None:
        with self._lock:
            self._claimed.discard(key)
            self._done.add(key)

    def release(self, key: str) -> None:
        with self._lock:
            self._claimed.discard(key)

    def is_done(self, key: str) -> bool:
        with self._lock:
            return key in self._done


SCHEMA = """
CREATE TABLE IF NOT EXISTS consumer_idempotency (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('claimed', 'done')),
    claimed_at REAL NOT NULL,
    done_at REAL
)
"""
CLAIM_SQL = (
    "INSERT INTO consumer_idempotency (key, state, claimed_at) VALUES (?, 'claimed', ?)"
    " ON CONFLICT (key) DO UPDATE SET claimed_at = excluded.claimed_at WHERE state <> 'done'"
)
DONE_SQL = (
    "INSERT INTO consumer_idempotency (key, state, claimed_at, done_at) VALUES (?, 'done', ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET state = 'done', done_at = excluded.done_at"
)
BUSY_TIMEOUT_S = 30.0  # handler transactions and the group commit take turns on the write lock
RELEASE_SQL = "DELETE FROM consumer_idempotency WHERE key = ? AND state = 'claimed'"


@dataclass(eq=False)
class _Batch:
    items: list[tuple[str, tuple[object, ...]]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class SQLiteStore:
    """The default: one SQLite file (WAL), one row per key; survives restarts of this process.

    Writes are group-committed by one writer thread: `mark_done` returns once the transaction holding it
    committed, and one transaction carries everything queued meanwhile by all workers. Claim and release rows
    ride along without waiting: they only inform (a lost claim changes nothing). Reads use a second connection,
    so WAL lets them run while a commit is in progress.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # the writer connection
        self._read_lock = threading.Lock()  # the reader connection
        self._cv = threading.Condition()  # the open batch
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._open = _Batch()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []  # connections for `transaction`, reused
        self._opened: list[sqlite3.Connection] = []  # all of them, closed by `close`

    def _writer(self) -> sqlite3.Connection:
        """Opened on first use (call with `_lock` held), so declaring an App creates no file."""
        if self._conn is None:
            self._conn = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_S
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(SCHEMA)
        return self._conn

    def claim(self, key: str) -> bool:
        if self.is_done(key):
            return False
        self._write(CLAIM_SQL, (key, time.time()), wait=False)
        return True

    def mark_done(self, key: str) -> None:
        now = time.time()
        self._write(DONE_SQL, (key, now, now), wait=True)

    def release(self, key: str) -> None:
        self._write(RELEASE_SQL, (key,), wait=False)

    def is_done(self, key: str) -> bool:
        with self._read_lock:
            if self._reader is None:
                with self._lock:
                    self._writer()  # creates the file and the table first
                self._reader = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            row = self._reader.execute(
                "SELECT state FROM consumer_idempotency WHERE key = ?", (key,)
            ).fetchone()
            return row is not None and row[0] == "done"

    @contextmanager
    def transaction(self, key: str) -> Iterator[sqlite3.Connection]:
        """One transaction on this store's file holding the done mark of `key` and the body's statements.

        Raises `AlreadyDone` (the body does not run) if `key` is done; commits when the body returns, rolls back
        (mark included) when it raises. Run only statements on the yielded connection: no COMMIT/ROLLBACK, no
        `await` inside (the database's write lock is held until the block ends).
        """
        db = self._checkout()
        try:
            db.execute(
                "BEGIN IMMEDIATE"
            )  # take the write lock first: a concurrent redelivery waits, then skips
            try:
                row = db.execute("SELECT state FROM consumer_idempotency WHERE key = ?", (key,)).fetchone()
                if row is not None and row[0] == "done":
                    raise AlreadyDone(key)
                now = time.time()
                db.execute(DONE_SQL, (key, now, now))
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        finally:
            with self._pool_lock:
                self._idle.append(db)

    def _checkout(self) -> sqlite3.Connection:
        with self._pool_lock:
            if self._idle:
                return self._idle.pop()
        with self._lock:
            self._writer()  # creates the file and the table first
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_S)
        db.execute("PRAGMA synchronous=NORMAL")
        with self._pool_lock:
            self._opened.append(db)
        return db

    def _write(self, sql: str, params: tuple[object, ...], wait: bool) -> None:
        with self._cv:
            if self._thread is None:
                self._closing = False
                self._thread = threading.Thread(
                    target=self._commit_loop, name="idempotency-writer", daemon=True
                )
                self._thread.start()
            batch = self._open
            batch.items.append((sql, params))
            self._cv.notify()
        if wait:
            batch.done.wait()
            if batch.error is not None:
                raise batch.error

    def _commit_loop(self) -> None:
        while True:
            with self._cv:
                while not self._open.items and not self._closing:
                    self._cv.wait()
                if not self._open.items:
                    return
                batch, self._open = self._open, _Batch()
            try:
                with self._lock:
                    self._commit(self._writer(), batch.items)
            except BaseException as exc:  # waiters re-raise it; the loop goes on
                batch.error = exc
            batch.done.set()

    @staticmethod
    def _commit(db: sqlite3.Connection, items: list[tuple[str, tuple[object, ...]]]) -> None:
        db.execute("BEGIN")
        try:
            for sql, params in items:
                db.execute(sql, params)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def purge(self, older_than_s: float) -> int:
        """Delete done keys older than the longest possible redelivery window; returns how many."""
        self._write("SELECT 1", (), wait=True)  # queued claims first, so purge sees them
        with self._lock:
            cur = self._writer().execute(
                "DELETE FROM consumer_idempotency WHERE state = 'done' AND done_at < ?",
                (time.time() - older_than_s,),
            )
            return cur.rowcount

    def close(self) -> None:
        """Commit what is queued, stop the writer thread, close both connections."""
        with self._cv:
            thread, self._thread, self._closing = self._thread, None, True
            self._cv.notify()
        if thread is not None:
            thread.join(30)
        with self._lock, self._read_lock, self._pool_lock:
            for conn in (self._conn, self._reader, *self._opened):
                if conn is not None:
                    conn.close()
            self._conn = self._reader = None
            self._idle, self._opened = [], []


def default_store_path(group: str, state_dir: Path | None) -> Path:
    """`<state_dir>/<group>.idempotency.sqlite3`, never relative to the working directory.

    Without a state dir (KAFKA_SCHEDULER_STATE_DIR): `$XDG_STATE_HOME/kafka-scheduler`, else
    `~/.local/state/kafka-scheduler`. A store that earlier versions left in the working directory is still used,
    with a warning, so upgrading does not forget what was done.
    """
    name = f"{re.sub(r'[^A-Za-z0-9._-]', '_', group)}.idempotency.sqlite3"
    try:
        if state_dir is None:
            legacy = Path.cwd() / f"{group}.idempotency.sqlite3"
            if legacy.is_file():
                log.warning(
                    "using the idempotency store %s found in the working directory; set KAFKA_SCHEDULER_STATE_DIR "
                    "(and move the file there) so it does not depend on where the process starts",
                    legacy,
                )
                return legacy
            xdg = os.environ.get("XDG_STATE_HOME")
            state_dir = (Path(xdg) if xdg else Path.home() / ".local" / "state") / "kafka-scheduler"
        state_dir.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError) as exc:
        raise ConfigError(
            f"no directory for the idempotency store ({exc}): set KAFKA_SCHEDULER_STATE_DIR to a writable "
            "directory (a persistent volume in production) or pass idempotency=SQLiteStore(path)"
        ) from None
    return (state_dir / name).resolve()
