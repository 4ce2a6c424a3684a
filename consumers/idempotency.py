"""Idempotency stores: skip a record whose effect is already done; claim-then-mark-done.

The contract (docs/consumers.md): `claim(key)` returns False only when `key` is already done; a claim left by a
process that crashed mid-handler does not block, so the handler runs again. `mark_done` after the handler
returned; `release` after it raised (the retry or dead letter takes over). A shared database implements the same
four methods with one row per key and an atomic upsert (`INSERT … ON CONFLICT DO UPDATE … WHERE state <> 'done'`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol

__all__ = ["IdempotencyStore", "InMemoryStore", "SQLiteStore"]


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


class SQLiteStore:
    """The default: one SQLite file (WAL), one row per key; survives restarts of this process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    @property
    def _db(self) -> sqlite3.Connection:
        """Opened on first use (call with the lock held), so declaring an App creates no file."""
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(SCHEMA)
        return self._conn

    def claim(self, key: str) -> bool:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO consumer_idempotency (key, state, claimed_at) VALUES (?, 'claimed', ?)"
                " ON CONFLICT (key) DO UPDATE SET claimed_at = excluded.claimed_at WHERE state <> 'done'",
                (key, time.time()),
            )
            return cur.rowcount == 1

    def mark_done(self, key: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO consumer_idempotency (key, state, claimed_at, done_at) VALUES (?, 'done', ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET state = 'done', done_at = excluded.done_at",
                (key, time.time(), time.time()),
            )

    def release(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM consumer_idempotency WHERE key = ? AND state = 'claimed'", (key,))

    def is_done(self, key: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT state FROM consumer_idempotency WHERE key = ?", (key,)).fetchone()
            return row is not None and row[0] == "done"

    def purge(self, older_than_s: float) -> int:
        """Delete done keys older than the longest possible redelivery window; returns how many."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM consumer_idempotency WHERE state = 'done' AND done_at < ?",
                (time.time() - older_than_s,),
            )
            return cur.rowcount

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
