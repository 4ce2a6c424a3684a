"""A record keeps its identity through every retry: one idempotency key, the original's fire and schedule ids."""

from __future__ import annotations

from collections.abc import Callable

from consumers import InMemoryStore, Message, RetryPolicy
from consumers.headers import RawHeaders, header
from consumers.message import RawRecord
from tests.unit.consumer_fakes import HandlerFn, Harness

ORIGINAL: RawHeaders = (
    ("trace", b"t1"),
    ("scheduler-schedule-id", b"rem-C-1"),
    ("scheduler-fire-id", b"rem-C-1@2"),
    ("scheduler-due-at", b"1700000000000"),
    ("scheduler-fired-at", b"1700000000050"),
)
FIRED = RawRecord("orders", 0, 4, b"C", b"remind", ORIGINAL, 1_700_000_000_050)


def fails_until(attempt: int) -> Callable[[Harness], HandlerFn]:
    def make(h: Harness) -> HandlerFn:
        def handle(message: Message) -> None:
            h.seen.append(message)
            if message.attempt < attempt:
                raise RuntimeError(f"attempt {message.attempt} fails")
            h.handled.append(message.value or b"")

        return handle

    return make


def test_a_redelivered_original_of_a_record_that_succeeded_on_its_third_attempt_is_skipped() -> None:
    store = InMemoryStore()
    h = Harness(handler=fails_until(3), store=store)
    h.run_raw(FIRED)
    h.run_raw(h.scheduler.fire(0, offset=0))
    h.run_raw(h.scheduler.fire(1, offset=1))
    assert [m.attempt for m in h.seen] == [1, 2, 3] and h.handled == [b"remind"]
    h.run_raw(FIRED)  # the same fired record again (a rebalance before the commit, a replayed dead letter)
    assert len(h.seen) == 3, "the handler ran again for an original whose retry chain succeeded"
    assert h.count("duplicate_skipped") == 1
    assert len(h.scheduler.scheduled) == 2, "a duplicate must not start a new retry chain"
    assert store.is_done("g|fire:rem-C-1@2"), "one key, namespaced once, for the original and every retry"


def test_retries_report_the_original_fire_and_schedule_ids() -> None:
    h = Harness(handler=fails_until(3))
    h.run_raw(FIRED)
    h.run_raw(h.scheduler.fire(0, offset=0))
    h.run_raw(h.scheduler.fire(1, offset=1))
    for message in h.seen:
        assert message.fire_id == "rem-C-1@2" and message.schedule_id == "rem-C-1", message.attempt
        assert message.due_at is not None and int(message.due_at.timestamp() * 1000) == 1_700_000_000_000
        assert message.header("scheduler-fire-id") == "rem-C-1@2"
        assert message.header("trace") == "t1"


def test_a_dead_letter_after_retries_carries_the_original_identity() -> None:
    h = Harness(handler=fails_until(99), policy=RetryPolicy(max_attempts=3))
    h.run_raw(FIRED)
    h.run_raw(h.scheduler.fire(0, offset=0))
    h.run_raw(h.scheduler.fire(1, offset=1))
    [(_topic, _partition, _value, headers)] = h.dead
    assert header(headers, "scheduler-fire-id") == "rem-C-1@2"
    assert header(headers, "scheduler-schedule-id") == "rem-C-1"
    assert header(headers, "scheduler-due-at") == "1700000000000"
    assert [name for name, _ in headers].count("scheduler-fire-id") == 1
    assert header(headers, "consumer-dlt-attempts") == "3"
    assert header(headers, "consumer-dlt-original-offset") == "4"
    assert not any(name.startswith("consumer-original-") for name, _ in headers)


def test_a_retry_of_a_plain_record_has_no_fire_id_of_its_own() -> None:
    """The retry schedule's ids are bookkeeping: a record that had no fire id still has none on a retry."""
    h = Harness(handler=fails_until(2))
    h.run("orders", 9, b"K", b"plain")
    h.run_raw(h.scheduler.fire(0, offset=0))
    assert [m.fire_id for m in h.seen] == [None, None]
    assert [m.schedule_id for m in h.seen] == [None, None]


def test_a_legacy_retry_whose_carried_key_grew_prefixes_still_matches_its_original() -> None:
    """Retries written before the fix carry `g|…` (or `g|g|…`); the key is the same once the prefixes go."""
    store = InMemoryStore()
    h = Harness(handler=fails_until(1), store=store)
    legacy = (
        ("consumer-attempt", b"3"),
        ("consumer-original-topic", b"orders"),
        ("consumer-original-partition", b"0"),
        ("consumer-original-offset", b"4"),
        ("consumer-idempotency-key", b"g|g|fire:rem-C-1@2"),
    )
    h.run_raw(RawRecord("orders.g.retry", 0, 0, b"C", b"remind", legacy, 1))
    h.run_raw(FIRED)
    assert h.handled == [b"remind"] and store.is_done("g|fire:rem-C-1@2")
