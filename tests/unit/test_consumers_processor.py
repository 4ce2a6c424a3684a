"""The per-record pipeline with fakes: retry + block-key parking, dead-letter failure keeps the offset unfinished."""

from __future__ import annotations

import logging
import threading

import pytest

from consumers import Message
from consumers.handlers import Handler
from consumers.headers import RawHeaders
from tests.unit.consumer_fakes import Harness


def test_retry_blocks_the_key_parks_later_records_and_releases_them_in_order() -> None:
    h = Harness(fail={b"a0"})
    h.run("orders", 0, b"A", b"a0")
    [(schedule_id, kwargs)] = h.scheduler.scheduled
    assert schedule_id == "consumer-retry:g:orders:0:0:2"
    assert kwargs["topic"] == "orders.g.retry" and kwargs["partition"] == 0
    assert h.markers == [(b"A", b'{"offset": 0}')]
    h.run("orders", 1, b"A", b"a1")
    h.run("orders", 2, b"B", b"b0")
    assert h.handled == [b"b0"], "a1 must wait behind A's retry; B is not blocked"
    assert h.finished == [0, 2], "the parked record's offset stays unfinished"
    h.run("orders.g.retry", 0, b"A", b"a0", tuple((k, v) for k, v in kwargs["headers"]))
    assert h.handled == [b"b0", b"a0"]
    assert h.markers[-1] == (b"A", None), "the marker is tombstoned"
    assert [w.raw.offset for w in h.requeued] == [1]


def test_relaxed_ordering_does_not_park() -> None:
    h = Harness(fail={b"a0"}, ordering="relaxed")
    h.run("orders", 0, b"A", b"a0")
    h.run("orders", 1, b"A", b"a1")
    assert h.handled == [b"a1"] and h.markers == []


def test_non_retryable_goes_to_the_dlt_at_once() -> None:
    h = Harness(fail={b"poison"})
    h.run("orders", 5, b"A", b"poison")
    [(topic, partition, value, headers)] = h.dead
    assert (topic, partition, value) == ("orders.g.dlt", 0, b"poison")
    assert dict(headers)["consumer-dlt-reason"] == b"non_retryable_error"
    assert h.scheduler.scheduled == [] and h.finished == [5]


def test_an_unwritable_dead_letter_leaves_the_offset_unfinished() -> None:
    h = Harness(fail={b"poison"}, dlt_fails=True)
    h.run("orders", 7, b"A", b"poison")
    assert h.finished == [], "the offset must not be committed when the dead letter was not written"
    assert h.count("failed") == 1


def test_a_duplicate_fire_id_is_skipped() -> None:
    h = Harness(fail=set())
    headers: RawHeaders = (("scheduler-fire-id", b"s@1"),)
    h.run("orders", 0, b"A", b"x", headers)
    h.run("orders", 1, b"A", b"x", headers)
    assert h.handled == [b"x"] and h.finished == [0, 1]


def test_async_handlers_run_on_the_shared_loop() -> None:
    h = Harness(fail=set())
    threads: list[str] = []

    async def handle(message: Message) -> None:
        threads.append(threading.current_thread().name)

    h.processor.handlers = {"orders": Handler("orders", handle)}
    h.run("orders", 0, b"A", b"x")
    h.processor.runner.stop()
    assert threads == ["consumer-asyncio"] and h.finished == [0]


def test_a_stale_retry_of_another_record_does_not_release_a_blocked_key() -> None:
    h = Harness(fail={b"a5"})
    h.run("orders", 5, b"A", b"a5")
    h.run("orders", 6, b"A", b"a6")
    stale = (
        ("consumer-attempt", b"2"),
        ("consumer-original-offset", b"1"),
        ("consumer-original-partition", b"0"),
    )
    h.run("orders.g.retry", 9, b"A", b"a1", stale)
    assert h.requeued == [] and h.markers[-1] == (b"A", b'{"offset": 5}'), "K must stay blocked by offset 5"


def test_a_failure_is_one_line_with_where_which_attempt_what_follows_and_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness(fail={b"a0", b"poison"})
    with caplog.at_level(logging.INFO, logger="consumers"):
        h.run("orders", 4, b"A", b"a0")
        h.run("orders", 5, b"B", b"poison")
    retry, dead = [r for r in caplog.records if r.name == "consumers.processor"]
    assert retry.levelno == logging.WARNING and retry.exc_info is not None
    assert "handler failed (attempt 1 of 3), retry in" in retry.getMessage()
    assert (retry.topic, retry.partition, retry.offset, retry.key, retry.attempt) == ("orders", 0, 4, "A", 1)  # type: ignore[attr-defined]
    assert dead.levelno == logging.ERROR
    assert "dead-lettered to orders.g.dlt (non_retryable_error): NonRetryable: poison" in dead.getMessage()
