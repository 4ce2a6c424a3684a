"""Retry and dead-letter header building, and message parsing of the scheduler's metadata."""

from __future__ import annotations

from datetime import UTC, datetime

from consumers.headers import Failure, Origin, dlt_headers, header, idempotency_key, retry_headers
from consumers.message import Context, RawRecord, build_message
from consumers.retry import DltReason


class BadThing(Exception):
    pass


ORIGIN = Origin("orders", 3, 42, 1_700_000_000_000)
USER = (("trace", b"t1"), ("scheduler-fire-id", b"s@7"), ("consumer-attempt", b"1"))


def test_retry_headers_carry_attempt_origin_key_and_the_original_scheduler_headers() -> None:
    h = retry_headers(USER, ORIGIN, 2, "fire:s@7")
    assert header(h, "consumer-attempt") == "2"
    assert header(h, "consumer-original-topic") == "orders"
    assert header(h, "consumer-original-partition") == "3"
    assert header(h, "consumer-original-offset") == "42"
    assert header(h, "consumer-idempotency-key") == "fire:s@7"
    assert header(h, "trace") == "t1"
    assert header(h, "scheduler-fire-id") is None, "the scheduler gives the retry its own"
    assert header(h, "consumer-original-scheduler-fire-id") == "s@7"
    assert [k for k, _ in h].count("consumer-attempt") == 1, "replaced, never appended"


def test_idempotency_key_prefers_carried_then_fire_id_then_message_id_then_coordinates() -> None:
    assert idempotency_key((("consumer-idempotency-key", b"x"),), ORIGIN, "g") == "g|x"
    assert idempotency_key(USER, ORIGIN, "g") == "g|fire:s@7"
    assert idempotency_key((("message-id", b"m1"),), ORIGIN, "g") == "g|msg:m1"
    assert idempotency_key((), ORIGIN, "g") == "g|tpo:orders/3/42"


def test_a_carried_key_is_namespaced_once_however_often_it_was_prefixed() -> None:
    for carried in (b"fire:s@7", b"g|fire:s@7", b"g|g|g|fire:s@7"):
        assert idempotency_key((("consumer-idempotency-key", carried),), ORIGIN, "g") == "g|fire:s@7"


def test_dead_letter_headers_name_the_users_exception_and_cap_the_message() -> None:
    failure = Failure(DltReason.MAX_ATTEMPTS_EXHAUSTED, BadThing("é" * 2000), "billing", 5, 1_700_000_001_000)
    h = dlt_headers(USER, ORIGIN, failure)
    assert header(h, "consumer-dlt-reason") == "max_attempts_exhausted"
    assert header(h, "consumer-dlt-exception-type") == f"{__name__}.BadThing"
    message = dict(h)["consumer-dlt-exception-message"]
    assert message is not None and len(message) <= 1024
    assert header(h, "consumer-dlt-original-offset") == "42"
    assert header(h, "consumer-dlt-original-timestamp") == "1700000000000"
    assert header(h, "consumer-dlt-group") == "billing"
    assert header(h, "consumer-dlt-attempts") == "5"
    assert header(h, "consumer-dlt-failed-at") == "1700000001000"
    assert header(h, "consumer-attempt") is None
    assert header(h, "trace") == "t1"


def test_a_retry_record_reports_its_original_coordinates_and_scheduler_metadata() -> None:
    original = (
        ("scheduler-schedule-id", b"s"),
        ("scheduler-fire-id", b"s@7"),
        ("scheduler-due-at", b"1700000001000"),
        ("scheduler-fired-at", b"1700000001100"),
    )
    headers = (
        *retry_headers(original, ORIGIN, 3, "k"),  # + what the scheduler adds when it fires the retry:
        ("scheduler-schedule-id", b"consumer-retry:billing:orders:3:42:3"),
        ("scheduler-fire-id", b"consumer-retry:billing:orders:3:42:3@9"),
        ("scheduler-due-at", b"1700000005000"),
        ("scheduler-fired-at", b"1700000005100"),
    )
    raw = RawRecord("orders.billing.retry", 3, 7, b"k", b"v", headers, 1_700_000_005_100)
    msg = build_message(raw, "orders", Context("billing", lambda: None))  # type: ignore[arg-type,return-value]
    assert (msg.topic, msg.partition, msg.offset, msg.attempt) == ("orders", 3, 42, 3)
    assert msg.record_topic == "orders.billing.retry"
    assert msg.fire_id == "s@7" and msg.schedule_id == "s", "the original's, not the retry schedule's"
    assert msg.due_at == datetime.fromtimestamp(1_700_000_001, tz=UTC)
    assert msg.fired_at == datetime.fromtimestamp(1_700_000_001.1, tz=UTC)
    assert msg.timestamp == datetime.fromtimestamp(1_700_000_000, tz=UTC)


def test_a_first_delivery_has_attempt_one_and_no_scheduler_metadata() -> None:
    raw = RawRecord("orders", 0, 1, None, b"v", (), None)
    msg = build_message(raw, "orders", Context("g", lambda: None))  # type: ignore[arg-type,return-value]
    assert msg.attempt == 1 and msg.fire_id is None and msg.due_at is None and msg.timestamp is None
