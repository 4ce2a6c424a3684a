"""The only consumers module that touches confluent_kafka: clients with forced settings, topics, marker reads."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from consumers.headers import RawHeaders
from consumers.message import RawRecord
from scheduler.errors import ConfigError, TopicConfigError
from scheduler.logs import LIBRDKAFKA_LOG

__all__ = [
    "CONSUMER_FORCED",
    "build_consumer",
    "build_producer",
    "ensure_topics",
    "produce_sync",
    "read_markers",
    "to_raw",
]

# Correctness-critical: manual commits (the offset tracker decides), range assignment (co-partitioning of a
# source topic with its retry topic, docs/consumers.md), read_committed (the scheduler fires in transactions).
CONSUMER_FORCED: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "partition.assignment.strategy": "range",
    "isolation.level": "read_committed",
}
CONSUMER_DEFAULTS: dict[str, Any] = {
    **LIBRDKAFKA_LOG,
    "auto.offset.reset": "earliest",
    "statistics.interval.ms": 5000,
}
PRODUCER_FORCED: dict[str, Any] = {"acks": "all", "enable.idempotence": True}


def _merge(defaults: Mapping[str, Any], user: Mapping[str, Any], forced: Mapping[str, Any]) -> dict[str, Any]:
    for name, value in forced.items():
        if name in user and str(user[name]).lower() != str(value).lower():
            raise ConfigError(f"{name}={user[name]!r} contradicts the consumer framework's {name}={value!r}")
    return {**defaults, **user, **forced}


def build_consumer(
    bootstrap: str, group: str, extra: Mapping[str, str], stats: Callable[[str], None] | None
) -> Consumer:
    conf = _merge(
        CONSUMER_DEFAULTS, {"bootstrap.servers": bootstrap, "group.id": group, **extra}, CONSUMER_FORCED
    )
    if stats is not None:
        conf["stats_cb"] = stats
    return Consumer(conf)


def build_producer(bootstrap: str, extra: Mapping[str, str]) -> Producer:
    defaults = {**LIBRDKAFKA_LOG, "linger.ms": 5}
    return Producer(_merge(defaults, {"bootstrap.servers": bootstrap, **extra}, PRODUCER_FORCED))


def produce_sync(
    producer: Producer,
    topic: str,
    partition: int,
    key: bytes | None,
    value: bytes | None,
    headers: RawHeaders,
) -> None:
    """Produce one record and wait for its delivery report; raises if the broker did not take it."""
    errors: list[object] = []
    delivered: list[bool] = []

    def on_delivery(err: object, _msg: object) -> None:
        (errors.append(err) if err is not None else delivered.append(True))

    producer.produce(topic, value, key, partition=partition, headers=list(headers), on_delivery=on_delivery)
    deadline = time.monotonic() + 30.0
    while not errors and not delivered:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no delivery report for a record to {topic}[{partition}] within 30s")
        producer.flush(1.0)
    if errors:
        raise KafkaException(errors[0])


def ensure_topics(bootstrap: str, source: str, derived: Mapping[str, bool], create: bool) -> None:
    """Give every derived topic (name → compacted?) the source's partition count, or refuse with the fix."""
    admin = AdminClient({**LIBRDKAFKA_LOG, "bootstrap.servers": bootstrap})
    topics = admin.list_topics(timeout=30).topics
    if source not in topics:
        raise TopicConfigError(
            f"source topic {source!r} does not exist: create it before starting the consumer"
        )
    partitions = len(topics[source].partitions)
    missing = [name for name in derived if name not in topics]
    if missing and create:
        new = [
            NewTopic(name, partitions, -1, config={"cleanup.policy": "compact"} if derived[name] else {})
            for name in missing
        ]
        for future in admin.create_topics(new).values():
            try:
                future.result(timeout=30)
            except Exception as exc:  # created concurrently by another member is fine
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
        _wait_visible(admin, missing)
        topics = admin.list_topics(timeout=30).topics
    for name in derived:
        if name not in topics:
            raise TopicConfigError(f"topic {name!r} is missing: create it with {partitions} partitions")
        count = len(topics[name].partitions)
        if count != partitions:
            raise TopicConfigError(
                f"topic {name!r} has {count} partitions but {source!r} has {partitions}: retries and blocked-key "
                f"markers must be co-partitioned with the source; recreate {name!r} with {partitions} partitions"
            )


def _wait_visible(admin: AdminClient, names: list[str], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(n in admin.list_topics(timeout=10).topics for n in names):
            return
        time.sleep(0.1)
    raise TopicConfigError(f"topics {names} were created but did not become visible within {timeout_s}s")


def _high_watermark(reader: Consumer, tp: TopicPartition, deadline: float) -> int:
    """A just-created topic may have no leader yet: retry retriable errors until the deadline."""
    while True:
        try:
            _, high = reader.get_watermark_offsets(tp, timeout=10)
            return int(high)
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise TopicConfigError(
                    f"cannot read the watermark of {tp.topic}[{tp.partition}]: {exc}"
                ) from exc
            time.sleep(0.2)


def read_markers(bootstrap: str, topic: str, partition: int, timeout_s: float = 30.0) -> dict[bytes, bytes]:
    """The live (non-tombstoned) keys of one compacted partition, read from the beginning to the high watermark."""
    reader = Consumer(
        {**LIBRDKAFKA_LOG, "bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False}
    )
    try:
        tp = TopicPartition(topic, partition)
        deadline = time.monotonic() + timeout_s
        high = _high_watermark(reader, tp, deadline)
        markers: dict[bytes, bytes] = {}
        if high <= 0:
            return markers
        reader.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        while reader.position([tp])[0].offset < high:
            if time.monotonic() > deadline:
                raise TopicConfigError(
                    f"could not read {topic}[{partition}] to offset {high} in {timeout_s}s"
                )
            for msg in reader.consume(500, 0.2):
                key, value = msg.key(), msg.value()
                if msg.error() is not None or not isinstance(key, bytes):
                    continue
                if value is None:
                    markers.pop(key, None)
                else:
                    markers[key] = bytes(value)
        return markers
    finally:
        reader.close()


def _bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def to_raw(msg: Message) -> RawRecord:
    """A fetched (non-error) record as plain data."""
    _, ts = msg.timestamp()
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None and partition is not None and offset is not None, "error records never get here"
    raw_headers = msg.headers() or []
    pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
    return RawRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        key=_bytes(msg.key()),
        value=_bytes(msg.value()),
        headers=tuple((name, _bytes(value)) for name, value in pairs),
        timestamp_ms=ts if ts > 0 else None,
    )
