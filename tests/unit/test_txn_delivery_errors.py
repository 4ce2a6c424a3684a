"""Which failed fire deliveries count toward a dead letter: only a target that refuses the record, never an outage.

Found in a chaos run with a broker hard restart: `fire to <target> failed: Local: Message timed out (attempts
counted toward a dead letter)`. With `fire_attempts` such failures in a row (a broker down for 3 x
transaction.timeout.ms), deliverable schedules to a healthy target would have been dead-lettered.
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from scheduler.kafka.txn import Outcome, TransactionRunner
from scheduler.model import Schedule
from scheduler.records import OutRecord, fired_record


class Report:
    """A delivery report's message."""

    def __init__(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self._topic, self._key, self._value = topic, key, value

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value


class StubProducer:
    """Reports `error` for every produced record and then needs the transaction aborted."""

    def __init__(self, error: int) -> None:
        self.error = error
        self.aborted = 0

    def begin_transaction(self) -> None:
        pass

    def produce(
        self, topic: str, value: bytes | None, key: bytes | None, _p: int, on_delivery: Any, *_args: Any
    ) -> None:
        if on_delivery is not None:  # as librdkafka reports: the record's topic, key and value, no headers
            on_delivery(KafkaError(self.error), Report(topic, key, value))

    def send_offsets_to_transaction(self, *_args: Any) -> None:
        pass

    def commit_transaction(self, _timeout: float) -> None:
        raise KafkaException(KafkaError(self.error, "delivery failed", txn_requires_abort=True))

    def abort_transaction(self, _timeout: float) -> None:
        self.aborted += 1


class StubConsumer:
    def consumer_group_metadata(self) -> object:
        return object()


@pytest.mark.parametrize(
    ("code", "counts"),
    [
        (KafkaError._MSG_TIMED_OUT, False),
        (KafkaError._TRANSPORT, False),
        (KafkaError._ALL_BROKERS_DOWN, False),
        (KafkaError.NOT_ENOUGH_REPLICAS, False),
        (KafkaError.REQUEST_TIMED_OUT, False),
        (KafkaError.NOT_LEADER_FOR_PARTITION, False),
        (KafkaError._PURGE_QUEUE, False),
        (KafkaError.UNKNOWN_TOPIC_OR_PART, True),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, True),
        (KafkaError.MSG_SIZE_TOO_LARGE, True),
    ],
)
def test_only_undeliverable_targets_count_toward_a_dead_letter(code: int, counts: bool) -> None:
    producer = StubProducer(code)
    runner = TransactionRunner(producer, StubConsumer(), timeout_s=1, retries=1)  # type: ignore[arg-type]
    fire = OutRecord("orders", b"k", b"v", [])
    assert runner.run([fire], [], []) is Outcome.ABORTED
    assert producer.aborted == 1
    assert ("orders" in runner.failed_topics) is counts


def test_a_fire_the_target_refuses_on_delivery_is_charged_to_its_schedule_only() -> None:
    # a delivery report names topic, key and value, never headers: the runner finds the fire's schedule id
    class RefusesBig(StubProducer):
        def produce(
            self, topic: str, value: bytes | None, key: bytes | None, _p: int, on_delivery: Any, *_args: Any
        ) -> None:
            if on_delivery is not None and value is not None and len(value) > 100:
                on_delivery(KafkaError(self.error), Report(topic, key, value))

    producer = RefusesBig(KafkaError.MSG_SIZE_TOO_LARGE)
    runner = TransactionRunner(producer, StubConsumer(), timeout_s=1, retries=1)  # type: ignore[arg-type]
    big = fired_record(Schedule("big", "orders", 1_000, b"x" * 500, b"k"), 3, 1_001)
    small = fired_record(Schedule("small", "orders", 1_000, b"ok", b"k"), 4, 1_001)
    twin = fired_record(Schedule("small-2", "orders", 1_000, b"ok", b"k"), 5, 1_001)  # same key and value
    assert runner.run([small, big, twin], [], []) is Outcome.ABORTED
    assert runner.failed_topics.keys() == {"orders"} and runner.failed_ids == {b"big"}
