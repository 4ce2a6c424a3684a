"""Read a topic by assignment from the beginning to its end offsets, read_committed, with a bounded wait.

Used for the state topic (last record per key wins) and for dead-letter topics. No group membership, no commits:
it works with or without a scheduler running and never disturbs one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from scheduler.errors import SchedulerError
from scheduler.logs import LIBRDKAFKA_LOG
from scheduler.settings import ServiceSettings

__all__ = ["Progress", "TopicRecord", "partition_count", "read_topic"]

Progress = Callable[[int, int], None]  # (records read, records to read)
BATCH = 5000
STALL_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class TopicRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


def _consumer(settings: ServiceSettings) -> Consumer:
    conf: dict[str, Any] = {
        **LIBRDKAFKA_LOG,
        "log_level": 3,  # errors only: a command's output is what the operator reads
        **settings.base_kafka(),
        **settings.consumer,
        "group.id": f"{settings.group_id}.ops-{uuid.uuid4().hex[:8]}",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
    }
    return Consumer(conf)


def partition_count(settings: ServiceSettings, topic: str, timeout_s: float = 15.0) -> int:
    """Partitions of `topic`; SchedulerError naming the fix if it does not exist."""
    consumer = _consumer(settings)
    try:
        return _partitions(consumer, topic, timeout_s, settings.bootstrap_servers)
    finally:
        consumer.close()


def _partitions(consumer: Consumer, topic: str, timeout_s: float, bootstrap: str) -> int:
    meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise SchedulerError(
            f"topic {topic} does not exist on {bootstrap}: check -b and the topic name, "
            "or run `kafka-scheduler topics create`"
        )
    return len(meta.partitions)


def read_topic(
    settings: ServiceSettings,
    topic: str,
    *,
    partitions: Iterable[int] | None = None,
    progress: Progress | None = None,
    stall_timeout_s: float = STALL_TIMEOUT_S,
) -> Iterator[TopicRecord]:
    """Every committed record of `topic` (or of `partitions`) up to the end offsets taken at the start.

    Stops when each partition's position is >= its end offset (transaction markers move the position past the
    last record); raises SchedulerError if no progress is made for `stall_timeout_s`.
    """
    consumer = _consumer(settings)
    try:
        count = _partitions(consumer, topic, 15.0, settings.bootstrap_servers)
        wanted = sorted(set(partitions)) if partitions is not None else list(range(count))
        ends: dict[int, int] = {}
        total = 0
        for p in wanted:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15, cached=False)
            if high > low:
                ends[p] = int(high)
                total += int(high - low)
        if progress is not None:
            progress(0, total)
        if not ends:
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        yield from _drain(consumer, topic, ends, total, progress, stall_timeout_s)
    finally:
        consumer.close()


def _drain(
    consumer: Consumer,
    topic: str,
    ends: dict[int, int],
    total: int,
    progress: Progress | None,
    stall_timeout_s: float,
) -> Iterator[TopicRecord]:
    read = 0
    last_progress = time.monotonic()
    open_parts = dict(ends)
    while open_parts:
        messages = consumer.consume(BATCH, 0.2)
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise SchedulerError(f"reading {topic}: {err.str()}")
            read += 1
            yield TopicRecord(
                topic,
                msg.partition() or 0,
                msg.offset() or 0,
                int(msg.timestamp()[1]),
                _as_bytes(msg.key()),
                _as_bytes(msg.value()),
                _headers(msg.headers()),
            )
        if messages:
            last_progress = time.monotonic()
            if progress is not None:
                progress(min(read, total), total)
        for tp in consumer.position([TopicPartition(topic, p) for p in open_parts]):
            if tp.offset >= open_parts[tp.partition]:
                del open_parts[tp.partition]
                last_progress = time.monotonic()
        if open_parts and time.monotonic() - last_progress > stall_timeout_s:
            raise SchedulerError(
                f"reading {topic} made no progress for {stall_timeout_s:.0f}s; still open: "
                f"{sorted(open_parts)} (is the broker reachable? is a transaction stuck open?)"
            )
    if progress is not None:
        progress(total, total)


def _as_bytes(data: str | bytes | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data


def _headers(
    raw: dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | tuple[()] | None,
) -> tuple[tuple[str, bytes | None], ...]:
    pairs = list(raw.items()) if isinstance(raw, dict) else list(raw or ())
    return tuple((name, _as_bytes(value)) for name, value in pairs)
