"""Reading what the scheduler wrote, from the beginning, read_committed or not, to position >= high watermark."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes | None]
    timestamp_ms: int
    seen_ms: int = 0
    header_list: tuple[tuple[str, bytes | None], ...] = ()  # as sent, duplicates included

    def header(self, name: str) -> str:
        raw = self.headers.get(name)
        return raw.decode() if raw is not None else ""


def read_all(bootstrap: str, topic: str, *, committed: bool = True, timeout_s: float = 30.0) -> list[Record]:
    """Every record of `topic` now visible; stops when each partition's position reaches its end offset."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed" if committed else "read_uncommitted",
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions]
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in parts}
        consumer.assign(parts)
        out: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while True:
            positions = consumer.position([TopicPartition(topic, p) for p in ends])
            if all(tp.offset >= ends[tp.partition] or ends[tp.partition] == 0 for tp in positions):
                return out
            if time.monotonic() > deadline:
                raise AssertionError(f"reading {topic}: positions {positions} never reached {ends}")
            for msg in consumer.consume(1000, 0.2):
                if msg.error() is None:
                    out.append(_record(msg))
    finally:
        consumer.close()


def _record(msg: object) -> Record:
    m = msg  # confluent_kafka.Message
    return Record(
        m.topic(),  # type: ignore[attr-defined]
        m.partition(),  # type: ignore[attr-defined]
        m.offset(),  # type: ignore[attr-defined]
        m.key(),  # type: ignore[attr-defined]
        m.value(),  # type: ignore[attr-defined]
        dict(m.headers() or []),  # type: ignore[attr-defined]
        m.timestamp()[1],  # type: ignore[attr-defined]
        int(time.time() * 1000),
        tuple(m.headers() or ()),  # type: ignore[attr-defined]
    )


class Tail:
    """A read_committed consumer following a topic from its start, recording when each record became visible."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.records: list[Record] = []
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"tail-{uuid.uuid4().hex[:8]}",
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        self._consumer.subscribe([topic])

    def poll_until(self, done: Callable[[list[Record]], bool], timeout_s: float, what: str) -> list[Record]:
        deadline = time.monotonic() + timeout_s
        while not done(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout_s}s waiting for {what}; got {len(self.records)}"
                )
            for msg in self._consumer.consume(500, 0.05):
                if msg.error() is None:
                    self.records.append(_record(msg))
        return self.records

    def poll_for(self, seconds: float) -> list[Record]:
        """Keep reading for `seconds` (to see a stray record that must not come), then return everything."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for msg in self._consumer.consume(500, 0.05):
                if msg.error() is None:
                    self.records.append(_record(msg))
        return self.records

    def close(self) -> None:
        self._consumer.close()
