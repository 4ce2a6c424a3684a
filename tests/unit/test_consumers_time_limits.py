"""handler_timeout_s is a time limit: a hung handler's record is retried or dead-lettered, its key moves on."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from consumers import ConsumerSettings, InMemoryStore, Message, RetryPolicy
from consumers.executor import KeyOrderedExecutor
from consumers.headers import header
from consumers.message import RawRecord
from consumers.timeouts import TimeLimits
from tests.conftest import wait_until
from tests.unit.consumer_fakes import HandlerFn, Harness

LIMIT = ConsumerSettings(handler_timeout_s=0.3)


def hangs_on(value: bytes, release: threading.Event) -> Callable[[Harness], HandlerFn]:
    def make(h: Harness) -> HandlerFn:
        def handle(message: Message) -> None:
            if message.value == value and message.attempt == 1:
                release.wait(30)
            h.handled.append(message.value or b"")

        return handle

    return make


def record(offset: int, key: bytes, value: bytes) -> RawRecord:
    return RawRecord("orders", 0, offset, key, value, (), 1_000)


def test_a_hung_sync_handler_is_abandoned_and_its_record_retried_after_the_limit() -> None:
    release = threading.Event()
    store = InMemoryStore()
    h = Harness(handler=hangs_on(b"hang", release), settings=LIMIT, store=store, ordering="relaxed")
    h.start_executor()
    try:
        h.submit(record(0, b"A", b"hang"))
        h.submit(record(1, b"A", b"next"))  # same key: must not wait forever behind the hung call
        wait_until(lambda: len(h.scheduler.scheduled) == 1, 5, "the retry of the hung record")
        wait_until(lambda: h.handled == [b"next"], 5, "the key moved on")
        [(_, retry)] = h.scheduler.scheduled
        assert header(tuple(retry["headers"]), "consumer-attempt") == "2"
        assert sorted(h.finished) == [0, 1]
        assert h.processor.limits.abandoned() == 1
        timeouts = {"group": "g", "topic": "orders"}
        assert h.registry.get_sample_value("kafka_scheduler_consumer_handler_timeouts_total", timeouts) == 1
        release.set()
        wait_until(lambda: h.processor.limits.abandoned() == 0, 5, "the abandoned call returned")
        assert h.handled == [b"next", b"hang"] and sorted(h.finished) == [0, 1], "its outcome is ignored"
        assert not store.is_done("g|tpo:orders/0/0"), "a late return must not mark the record done"
    finally:
        release.set()
        h.stop_executor()


def test_a_hung_record_is_dead_lettered_when_the_policy_allows_no_retry() -> None:
    release = threading.Event()
    h = Harness(handler=hangs_on(b"hang", release), settings=LIMIT, policy=RetryPolicy(max_attempts=1))
    h.start_executor()
    try:
        h.submit(record(0, b"A", b"hang"))
        wait_until(lambda: len(h.dead) == 1, 5, "the dead letter")
        [(_, _, _, headers)] = h.dead
        assert header(headers, "consumer-dlt-reason") == "max_attempts_exhausted"
        assert header(headers, "consumer-dlt-exception-type") == "consumers.timeouts.HandlerTimeout"
        assert h.scheduler.scheduled == [] and h.finished == [0]
    finally:
        release.set()
        h.stop_executor()


def test_a_hung_async_handler_is_cancelled_and_no_thread_is_abandoned() -> None:
    cancelled = threading.Event()

    def make(h: Harness) -> HandlerFn:
        async def handle(message: Message) -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        return handle

    h = Harness(handler=make, settings=LIMIT)
    h.start_executor()
    try:
        h.submit(record(0, b"A", b"slow"))
        wait_until(lambda: len(h.scheduler.scheduled) == 1, 5, "the retry of the cancelled record")
        assert cancelled.wait(5) and h.processor.limits.abandoned() == 0 and h.finished == [0]
    finally:
        h.stop_executor()


def test_returning_in_time_and_expiring_are_decided_once() -> None:
    expired: list[str] = []
    limits: TimeLimits[str] = TimeLimits(1.0, lambda item, _s, _n: expired.append(item))
    limits.begin("fast", 0.0)
    limits.begin("slow", 0.0)
    assert limits.end("fast") is True
    assert limits.expire(2.0) == ["slow"] and expired == ["slow"]
    assert limits.overdue(2.0) and limits.abandoned() == 1
    assert limits.end("slow") is False, "the late return loses: the expiry already took the record"
    assert not limits.overdue(2.0) and limits.expire(3.0) == []


def test_an_abandoned_worker_is_replaced_and_its_key_goes_on_with_the_successor() -> None:
    gate = threading.Event()
    ran: list[str] = []

    def run(item: str) -> None:
        if item == "stuck":
            gate.wait(10)
        ran.append(item)

    executor: KeyOrderedExecutor[str] = KeyOrderedExecutor(run, 1)
    try:
        executor.submit("k", "stuck")
        executor.submit("k", "later")
        wait_until(lambda: executor.running() == ["stuck"], 5, "the stuck item running")
        assert executor.abandon("stuck", "successor")
        wait_until(
            lambda: ran == ["successor", "later"], 5, "successor, then the key's next item, on a new worker"
        )
        gate.set()
        wait_until(lambda: ran == ["successor", "later", "stuck"], 5, "the abandoned call returns")
        executor.submit("k", "again")
        wait_until(lambda: ran[-1] == "again", 5, "the key still works after the abandoned worker left")
        assert not executor.abandon("gone", "x")
    finally:
        gate.set()
        executor.stop(1.0)
