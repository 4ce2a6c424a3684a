"""Done reports on a real broker: a record carrying scheduler-await-done puts one header-protocol done command on
the commands topic (key = schedule id, in its murmur2 partition) when handled, after its dead letter when it fails
for good, and once at the end of a retry chain that went through the real scheduler."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from consumers import Message, NonRetryable
from scheduler.partitioner import partition_for
from tests.conftest import wait_until
from tests.integration.consumer_helpers import make_app, read_all, retrying_app

Record = tuple[int, bytes | None, bytes | None, dict[str, bytes], int]  # partition, key, value, headers, ts


def send(bootstrap: str, topic: str, key: bytes, fire_id: str) -> None:
    """A fired occurrence as the scheduler writes it (only the headers that matter here)."""
    producer = Producer({"bootstrap.servers": bootstrap})
    headers = [("scheduler-fire-id", fire_id.encode()), ("scheduler-await-done", fire_id.encode())]
    producer.produce(topic, b"run the job", key, headers=headers)
    assert producer.flush(30) == 0


def read_to_end(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[Record]:
    """Every record of `topic` up to its current end offsets (bounded)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.time_ns()}"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while any(
            ends[tp.partition] > 0 and tp.offset < ends[tp.partition]
            for tp in consumer.position([TopicPartition(topic, p) for p in parts])
        ):
            assert time.monotonic() < deadline, f"could not read {topic} to {ends}"
            for msg in consumer.consume(100, 0.2):
                if msg.error() is None:
                    part = msg.partition()
                    assert part is not None
                    out.append((part, msg.key(), msg.value(), dict(msg.headers() or []), msg.timestamp()[1]))
        return out
    finally:
        consumer.close()


def done_reports(bootstrap: str, topic: str) -> list[Record]:
    return [r for r in read_to_end(bootstrap, topic) if r[3].get("scheduler-control") == b"done"]


def test_a_handled_record_reports_done_to_the_commands_topic(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    source = create_topic(unique("jobs"), partitions=2)
    commands = create_topic(unique("scheduled"), partitions=3)
    fire = "refresh-status@17/1700000000000"
    send(kafka_bootstrap, source, b"status", fire)
    handled: list[int] = []
    app = make_app(kafka_bootstrap, unique("g"), scheduled_topic=commands)

    @app.handler(source)
    def handle(message: Message) -> None:
        handled.append(int(time.time() * 1000))

    with app.running():
        wait_until(lambda: done_reports(kafka_bootstrap, commands), 60, "the done report")
    [(partition, key, value, headers, ts)] = done_reports(kafka_bootstrap, commands)
    assert key == b"refresh-status" and value == b""
    assert headers == {"scheduler-control": b"done", "scheduler-fire-id": fire.encode()}
    assert partition == partition_for(b"refresh-status", 3), "in the schedule id's partition"
    assert ts >= handled[0], "the record time is when the handler finished"


def test_a_record_that_fails_for_good_reports_after_its_dead_letter(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    source = create_topic(unique("jobs"), partitions=1)
    commands = create_topic(unique("scheduled"), partitions=1)
    fire = "cleanup@3/1700000000000"
    send(kafka_bootstrap, source, b"cleanup", fire)
    app = make_app(kafka_bootstrap, unique("g"), scheduled_topic=commands)

    @app.handler(source)
    def handle(message: Message) -> None:
        raise NonRetryable("the job cannot run")

    with app.running():
        wait_until(lambda: done_reports(kafka_bootstrap, commands), 60, "the done report")
    [dead] = read_all(kafka_bootstrap, f"{source}.{app.group_id}.dlt", 1)
    assert dead[2]["scheduler-await-done"] == fire.encode()
    [(_p, key, _v, headers, _ts)] = done_reports(kafka_bootstrap, commands)
    assert key == b"cleanup" and headers["scheduler-fire-id"] == fire.encode()


def test_a_retried_record_reports_once_after_its_last_attempt(
    scheduler_stack: Any, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    bootstrap, commands = scheduler_stack.bootstrap, scheduler_stack.scheduled_topic
    source = create_topic(unique("jobs"), partitions=2)
    fire = "hourly-export@8/1700000000000"
    send(bootstrap, source, b"export", fire)
    attempts: list[tuple[int, int]] = []  # (attempt, reports on the commands topic when it started)
    app = retrying_app(scheduler_stack, unique("g"), max_attempts=5)

    @app.handler(source)
    def handle(message: Message) -> None:
        attempts.append((message.attempt, len(done_reports(bootstrap, commands))))
        if message.attempt < 3:
            raise RuntimeError("not yet")

    with app.running():
        wait_until(lambda: done_reports(bootstrap, commands), 90, "the done report")
    assert attempts == [(1, 0), (2, 0), (3, 0)], "no report while a retry is scheduled"
    [(_p, key, _v, headers, _ts)] = done_reports(bootstrap, commands)
    assert key == b"hourly-export" and headers["scheduler-fire-id"] == fire.encode()
