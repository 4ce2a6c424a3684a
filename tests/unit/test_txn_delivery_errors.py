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
from scheduler.records import OutRecord


class StubProducer:
    """Reports `error` for every produced record and then needs the transaction aborted."""

    def __init__(self, error: int) -> None:
        self.error = error
        self.aborted = 0

    def begin_transaction(self) -> None:
        pass

    def produce(self, *_args: Any, on_delivery: Any = None, **_kw: Any) -> None:
        if on_delivery is not None:
            on_delivery(KafkaError(self.error), None)

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
