"""Key-ordered executor: per-key order holds under concurrency for any keys and handler delays."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.executor import KeyOrderedExecutor
from tests.conftest import wait_until


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 7), st.floats(0, 0.002)), min_size=1, max_size=120),
    st.integers(1, 8),
)
def test_items_of_a_key_run_in_submission_order_and_never_overlap(
    items: list[tuple[int, float]], concurrency: int
) -> None:
    seen: dict[int, list[int]] = defaultdict(list)
    active: set[int] = set()
    overlap: list[int] = []
    lock = threading.Lock()

    def run(item: tuple[int, int, float]) -> None:
        key, seq, delay = item
        with lock:
            if key in active:
                overlap.append(key)
            active.add(key)
        time.sleep(delay)
        with lock:
            active.discard(key)
            seen[key].append(seq)

    executor: KeyOrderedExecutor[tuple[int, int, float]] = KeyOrderedExecutor(run, concurrency)
    try:
        for seq, (key, delay) in enumerate(items):
            executor.submit(key, (key, seq, delay))
        wait_until(lambda: sum(len(v) for v in seen.values()) == len(items), 20, "all items ran")
    finally:
        executor.stop()
    assert not overlap, f"two items of one key ran at once: {overlap}"
    for key, seqs in seen.items():
        assert seqs == sorted(seqs), f"key {key} ran out of order: {seqs}"


def test_different_keys_run_in_parallel_up_to_the_limit() -> None:
    gate = threading.Event()
    started: list[int] = []
    lock = threading.Lock()

    def run(item: int) -> None:
        with lock:
            started.append(item)
        gate.wait(5)

    executor: KeyOrderedExecutor[int] = KeyOrderedExecutor(run, 4)
    try:
        for key in range(10):
            executor.submit(key, key)
        wait_until(lambda: len(started) == 4, 5, "four keys running")
        assert len(executor.running()) == 4, "the concurrency limit was exceeded"
        gate.set()
        wait_until(lambda: len(started) == 10, 5, "all keys ran")
    finally:
        gate.set()
        executor.stop()


def test_drop_removes_queued_items_and_wait_idle_sees_running_ones() -> None:
    gate = threading.Event()
    ran: list[int] = []

    def run(item: int) -> None:
        gate.wait(5)
        ran.append(item)

    executor: KeyOrderedExecutor[int] = KeyOrderedExecutor(run, 1)
    try:
        for item in (1, 2, 3):
            executor.submit("k", item)
        wait_until(lambda: executor.running() == [1], 5, "first item running")
        assert executor.drop(lambda i: i >= 2) == [2, 3]
        assert not executor.wait_idle(lambda i: i == 1, 0.05)
        gate.set()
        assert executor.wait_idle(lambda i: True, 5)
        assert ran == [1]
    finally:
        gate.set()
        executor.stop()


def test_push_front_puts_parked_items_ahead_of_the_queue() -> None:
    ran: list[str] = []
    gate = threading.Event()

    def run(item: str) -> None:
        if item == "retry":
            gate.wait(5)
            executor2.push_front("k", ["parked-1", "parked-2"])
        ran.append(item)

    executor2: KeyOrderedExecutor[str] = KeyOrderedExecutor(run, 2)
    try:
        executor2.submit("k", "retry")
        executor2.submit("k", "later")
        gate.set()
        wait_until(lambda: len(ran) == 4, 5, "all ran")
        assert ran == ["retry", "parked-1", "parked-2", "later"]
    finally:
        executor2.stop()
