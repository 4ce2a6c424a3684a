"""Done reports: a record carrying scheduler-await-done tells the scheduler when its processing reached a final
outcome (handled, dead-lettered, or skipped as a duplicate), never when a retry is scheduled, and before its
offset may be committed."""

from __future__ import annotations

import dataclasses

import pytest

from consumers import Message, NonRetryable, RetryPolicy
from consumers.headers import RawHeaders, done_report
from consumers.processor import Work
from tests.unit.consumer_fakes import Harness

FIRE = "nightly-invoices@42/1700000000000"
AWAIT: RawHeaders = (
    ("scheduler-schedule-id", b"nightly-invoices"),
    ("scheduler-fire-id", FIRE.encode()),
    ("scheduler-await-done", FIRE.encode()),
)
DONE = (b"nightly-invoices", (("scheduler-control", b"done"), ("scheduler-fire-id", FIRE.encode())))


def reports(h: Harness, outcome: str) -> float:
    labels = {"group": "g", "topic": "orders", "outcome": outcome}
    return h.registry.get_sample_value("kafka_scheduler_consumer_done_reports_total", labels) or 0.0


def test_a_handled_record_reports_done_before_its_offset_is_finished() -> None:
    h = Harness()
    seen_at_finish: list[int] = []
    finish = h.processor.sinks.finish

    def finish_after_report(work: Work) -> None:
        seen_at_finish.append(len(h.done))
        finish(work)

    h.processor.sinks = dataclasses.replace(h.processor.sinks, finish=finish_after_report)
    h.run("orders", 7, b"k", b"v", AWAIT)
    assert h.handled == [b"v"]
    assert h.done == [DONE]
    assert seen_at_finish == [1], "the report must be durable before the offset can move past the record"
    assert reports(h, "success") == 1


def test_a_retry_keeps_the_header_and_only_the_final_attempt_reports() -> None:
    h = Harness(fail={b"v"})
    h.run("orders", 0, b"k", b"v", AWAIT)
    assert h.done == [], "a scheduled retry is not a final outcome"
    assert h.finished == [0]
    retry = h.scheduler.fire(0, offset=0)
    seen: list[Message] = []
    h.processor.handlers["orders"] = dataclasses.replace(h.processor.handlers["orders"], fn=seen.append)
    h.run_raw(retry)
    assert seen[0].attempt == 2 and seen[0].header("scheduler-await-done") == FIRE
    assert h.done == [DONE], "the retried copy reports with the original's fire id"


def test_a_record_dead_lettered_after_its_retries_reports_once() -> None:
    def always_fail(h: Harness):  # type: ignore[no-untyped-def]
        def handle(message: Message) -> None:
            raise RuntimeError(f"attempt {message.attempt} fails")

        return handle

    h = Harness(handler=always_fail, policy=RetryPolicy(max_attempts=3))
    h.run("orders", 0, b"k", b"v", AWAIT)
    h.run_raw(h.scheduler.fire(0, offset=0))
    assert h.done == [] and len(h.scheduler.scheduled) == 2
    h.run_raw(h.scheduler.fire(1, offset=1))
    assert len(h.dead) == 1
    assert h.done == [DONE]
    assert reports(h, "dead_lettered") == 1


def test_a_non_retryable_failure_reports_after_the_dead_letter() -> None:
    order: list[str] = []

    def poison(h: Harness):  # type: ignore[no-untyped-def]
        def handle(message: Message) -> None:
            raise NonRetryable("bad invoice")

        return handle

    h = Harness(handler=poison)
    dead_letter, done = h.processor.sinks.dead_letter, h.processor.sinks.done
    h.processor.sinks = dataclasses.replace(
        h.processor.sinks,
        dead_letter=lambda *a: (order.append("dlt"), dead_letter(*a))[-1],
        done=lambda *a: (order.append("done"), done(*a))[-1],
    )
    h.run("orders", 3, b"k", b"v", AWAIT)
    assert order == ["dlt", "done"]
    assert h.done == [DONE] and h.finished == [3]


def test_a_duplicate_skipped_by_the_idempotency_store_reports_again() -> None:
    """The first run may have marked the record done and died before its report landed."""
    h = Harness()
    h.run("orders", 0, b"k", b"v", AWAIT)
    h.run("orders", 0, b"k", b"v", AWAIT)
    assert h.handled == [b"v"], "the handler ran once"
    assert h.done == [DONE, DONE]
    assert h.count("duplicate_skipped") == 1 and reports(h, "duplicate_skipped") == 1


def test_a_report_that_cannot_be_written_leaves_the_offset_unfinished_and_the_rerun_reports() -> None:
    h = Harness()
    h.done_fails = 1
    h.processor.stopping.set()  # the durable-write loop gives up after one try, as on shutdown
    h.run("orders", 5, b"k", b"v", AWAIT)
    assert h.handled == [b"v"] and h.done == []
    assert h.finished == [], "an unreported record must be redelivered, not committed past"
    h.processor.stopping.clear()
    h.run("orders", 5, b"k", b"v", AWAIT)  # the redelivery after a restart: skipped, but reported
    assert h.done == [DONE] and h.finished == [5]


def test_records_without_a_usable_await_done_header_report_nothing() -> None:
    h = Harness()
    h.run("orders", 0, b"k", b"plain", (("scheduler-fire-id", b"one-time@3"),))
    h.run("orders", 1, b"k", b"junk", (("scheduler-await-done", b"no-at-sign"),))
    h.run("orders", 2, b"k", b"junk2", (("scheduler-await-done", b"@3/100"),))
    assert h.done == []
    assert h.finished == [0, 1, 2] and h.handled == [b"plain", b"junk", b"junk2"]


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("a@b@7/1000", b"a@b"),  # the id may contain '@': the version follows the last one
        ("x@1/5", b"x"),
        ("", None),
        ("x/5", None),
    ],
)
def test_the_schedule_id_is_the_fire_id_up_to_its_last_at_sign(value: str, key: bytes | None) -> None:
    report = done_report((("scheduler-await-done", value.encode()),))
    assert (report[0] if report else None) == key
    if report:
        assert report[1] == (("scheduler-control", b"done"), ("scheduler-fire-id", value.encode()))
