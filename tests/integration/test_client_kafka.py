"""Against a real broker: partition choice is Kafka's, kcat and the client agree, delivery errors surface."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from scheduler import (
    AsyncSchedulerClient,
    ClientSettings,
    DeliveryError,
    Schedule,
    SchedulerClient,
    UnknownTargetTopic,
)
from scheduler.codec import decode_command
from scheduler.known_topics import MISSING_TTL_S
from scheduler.partitioner import partition_for as kafka_partition
from tests.conftest import wait_until


def settings_for(topic: str, check_targets: bool = False) -> ClientSettings:
    """These tests read the commands themselves (no scheduler), so their targets need not exist."""
    return ClientSettings(  # type: ignore[call-arg]
        scheduled_topic=topic, producer_name="it", check_targets=check_targets, _env_file=None
    )


def read_all(bootstrap: str, topic: str, partitions: int, count: int, timeout_s: float = 30.0) -> list[Any]:
    """Every record of `topic` from the beginning, until `count` arrived (bounded)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < count:
            assert time.monotonic() < deadline, (
                f"only {len(records)} of {count} records arrived in {timeout_s}s"
            )
            msg = consumer.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                records.append(msg)
    finally:
        consumer.close()
    return records


def decoded(msg: Any) -> Any:
    return decode_command(msg.key(), msg.value(), msg.headers(), msg.timestamp()[1])


def test_records_land_on_the_partition_murmur2_predicts(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    topic = create_topic(unique("scheduled"), partitions=6)
    sent: dict[bytes, Schedule] = {}
    with SchedulerClient(kafka_bootstrap, settings=settings_for(topic)) as client:
        for i in range(120):
            s = client.schedule(f"order-{i}-é", topic="orders", value=f"p{i}", key=f"k{i}", at=1_000 * i)
            sent[s.id.encode()] = s
        assert client.flush(30) == 0
    records = read_all(kafka_bootstrap, topic, 6, len(sent))
    assert len({m.partition() for m in records}) == 6
    for msg in records:
        assert msg.partition() == kafka_partition(msg.key(), 6), msg.key()
        assert msg.headers() is None  # the envelope carries everything; no Kafka headers
        assert decoded(msg) == sent[msg.key()]


def test_kcat_header_protocol_decodes_to_the_same_schedule_as_the_client(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    topic = create_topic(unique("scheduled"), partitions=1)
    at = datetime(2031, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    with SchedulerClient(kafka_bootstrap, settings=settings_for(topic)) as client:
        ours = client.schedule(
            "invoice-42",
            topic="invoices.due",
            value=b"hello",
            key=b"customer-7",
            headers=[("trace", "abc"), ("attempt", "1")],
            at=at,
            partition=2,
        )
    kcat = [
        "kcat", "-P", "-b", kafka_bootstrap, "-t", topic, "-k", "invoice-42",
        "-H", "scheduler-target-topic=invoices.due",
        "-H", "scheduler-deliver-at=2031-05-06T09:08:09.123+02:00",
        "-H", "scheduler-target-key=customer-7",
        "-H", "scheduler-target-partition=2",
        "-H", "trace=abc",
        "-H", "attempt=1",
    ]  # fmt: skip
    subprocess.run(kcat, input=b"hello\n", check=True, timeout=30)
    from_client, from_kcat = (decoded(m) for m in read_all(kafka_bootstrap, topic, 1, 2))
    assert from_client == ours
    assert isinstance(from_kcat, Schedule)
    assert replace(from_kcat, created_ms=0, producer=None) == replace(ours, created_ms=0, producer=None)


def test_delivery_error_is_latched_and_raised_at_the_next_call(unique: Callable[[str], str]) -> None:
    conf = {"message.timeout.ms": 500, "log_level": 0}
    client = SchedulerClient("127.0.0.1:1", settings=settings_for(unique("scheduled")), config=conf)
    try:
        client.schedule("lost-1", topic="t", value=b"x", delay=timedelta(0))
        with pytest.raises(DeliveryError, match="lost-1"):
            client.flush(15)
        assert client.flush(0) == 0  # raised once, not again

        def next_call_raises() -> bool:
            try:
                client.cancel("lost-2")
            except DeliveryError:
                return True
            return False

        wait_until(next_call_raises, 15, "cancel() raises the latched DeliveryError")
    finally:
        with contextlib.suppress(DeliveryError):
            client.close(timeout=5)


def test_a_lost_fast_path_schedule_surfaces_at_a_later_schedule_call(unique: Callable[[str], str]) -> None:
    """schedule()'s own poll(0) serves the failure report of a command the native fast path sent: no flush needed."""
    conf = {"message.timeout.ms": 300, "log_level": 0}
    client = SchedulerClient("127.0.0.1:1", settings=settings_for(unique("scheduled")), config=conf)
    try:
        client.schedule("first", topic="t", value=b"x", delay=timedelta(0))  # full path: "t" is now checked
        assert client._core.fast.prepare("x", "t", b"x", None, None, None, timedelta(0), None) is not None
        client.schedule("lost-fast", topic="t", value=b"x", delay=timedelta(0))  # the fast path
        raised: list[str] = []

        def next_schedule_raises() -> bool:
            try:
                client.schedule("later", topic="t", value=b"x", delay=timedelta(0))
            except DeliveryError as exc:
                raised.append(str(exc))
                return True
            return False

        wait_until(next_schedule_raises, 15, "schedule() raises the latched DeliveryError")
        assert "'first'" in raised[0] or "'lost-fast'" in raised[0]
        assert "earlier command(s) were not delivered" in raised[0]
    finally:
        with contextlib.suppress(DeliveryError):
            client.close(timeout=5)


def test_async_client_sends_the_same_envelope(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    topic = create_topic(unique("scheduled"), partitions=3)

    async def run() -> list[Schedule]:
        async with AsyncSchedulerClient(kafka_bootstrap, settings=settings_for(topic)) as client:
            sent = [
                await client.schedule(f"a-{i}", topic="t", value=b"v", delay=timedelta(seconds=i))
                for i in range(20)
            ]
            await client.cancel("a-0")
            assert await client.flush(30) == 0
            return sent

    sent = asyncio.run(asyncio.wait_for(run(), 60))
    records = read_all(kafka_bootstrap, topic, 3, 21)
    by_id = {s.id: s for s in sent}
    for msg in records:
        assert msg.partition() == kafka_partition(msg.key(), 3)
        command = decoded(msg)
        assert command == by_id[msg.key().decode()] or command.id == "a-0"


def test_async_delivery_error_is_latched(unique: Callable[[str], str]) -> None:
    async def run() -> None:
        conf = {"message.timeout.ms": 500, "log_level": 0}
        client = AsyncSchedulerClient("127.0.0.1:1", settings=settings_for(unique("scheduled")), config=conf)
        await client.schedule("lost-async", topic="t", value=b"x", delay=timedelta(0))
        with pytest.raises(DeliveryError, match="lost-async"):
            await client.flush(15)
        await client.close(timeout=5)

    asyncio.run(asyncio.wait_for(run(), 60))


def test_a_schedule_to_a_missing_target_raises_in_the_caller(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    """The scheduler would reject it where nobody looks: schedule() says so, naming the topic and the fix."""
    topic = create_topic(unique("scheduled"))
    missing = unique("reservations.expire")
    with SchedulerClient(kafka_bootstrap, settings=settings_for(topic, check_targets=True)) as client:
        with pytest.raises(
            UnknownTargetTopic, match=f"{missing}.*does not exist.*--create --topic {missing}"
        ):
            client.schedule("r-1", topic=missing, value="x", delay=timedelta(minutes=1))
        create_topic(missing)
        with pytest.raises(UnknownTargetTopic):  # a moment after a refusal, the answer is remembered
            client.schedule("r-1", topic=missing, value="x", delay=timedelta(minutes=1))

        def accepted() -> bool:  # after MISSING_TTL_S the topic is looked up again, and found
            try:
                client.schedule("r-1", topic=missing, value="x", delay=timedelta(minutes=1))
            except UnknownTargetTopic:
                return False
            return True

        wait_until(accepted, MISSING_TTL_S + 10, "the created topic accepted")
        client.schedule("r-2", topic=missing, value="y", delay=timedelta(minutes=1))
    assert [m.key() for m in read_all(kafka_bootstrap, topic, 1, 2)] == [b"r-1", b"r-2"]  # nothing else sent
    with SchedulerClient(kafka_bootstrap, settings=settings_for(topic, check_targets=False)) as unchecked:
        unchecked.schedule("r-3", topic=unique("never-created"), value="z", delay=timedelta(minutes=1))


def test_the_async_client_checks_targets_too(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    topic = create_topic(unique("scheduled"))
    target = create_topic(unique("target"))

    async def main() -> None:
        async with AsyncSchedulerClient(
            kafka_bootstrap, settings=settings_for(topic, check_targets=True)
        ) as client:
            with pytest.raises(UnknownTargetTopic, match="does not exist"):
                await client.schedule("a-1", topic=unique("missing"), value="x", delay=timedelta(minutes=1))
            await client.schedule("a-2", topic=target, value="y", delay=timedelta(minutes=1))

    asyncio.run(main())
    assert [m.key() for m in read_all(kafka_bootstrap, topic, 1, 1)] == [b"a-2"]
