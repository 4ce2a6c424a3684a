"""Both stores: claim-then-mark-done, a crash mid-handler re-runs, done is skipped (across reopen for SQLite)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from consumers import IdempotencyStore, InMemoryStore, SQLiteStore


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], IdempotencyStore]:
    if request.param == "memory":
        store = InMemoryStore()
        return lambda: store
    return lambda: SQLiteStore(tmp_path / "idem.sqlite3")


def test_done_keys_are_skipped(make_store: Callable[[], IdempotencyStore]) -> None:
    store = make_store()
    assert store.claim("fire:a@1")
    store.mark_done("fire:a@1")
    assert not store.claim("fire:a@1")
    assert store.is_done("fire:a@1")


def test_a_claim_left_by_a_crash_does_not_block_a_rerun(make_store: Callable[[], IdempotencyStore]) -> None:
    store = make_store()
    assert store.claim("k")
    assert make_store().claim("k"), "a stale claim must be taken over so the handler runs again"
    assert not store.is_done("k")


def test_release_after_failure_lets_the_retry_claim(make_store: Callable[[], IdempotencyStore]) -> None:
    store = make_store()
    assert store.claim("k")
    store.release("k")
    assert store.claim("k")


def test_sqlite_remembers_done_keys_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "idem.sqlite3"
    first = SQLiteStore(path)
    first.claim("k")
    first.mark_done("k")
    first.close()
    assert not SQLiteStore(path).claim("k")


def test_sqlite_purge_removes_only_old_done_keys(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "idem.sqlite3")
    store.mark_done("old")
    store.claim("running")
    assert store.purge(older_than_s=-1) == 1
    assert store.claim("old")


def test_sqlite_group_commit_keeps_every_done_key_written_by_many_threads(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "idem.sqlite3"
    store = SQLiteStore(path)

    def worker(t: int) -> None:
        for i in range(200):
            key = f"{t}-{i}"
            assert store.claim(key)
            store.mark_done(key)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    reopened = SQLiteStore(path)  # mark_done returned, so every key is on disk without close()
    assert all(reopened.is_done(f"{t}-{i}") for t in range(16) for i in range(200))
