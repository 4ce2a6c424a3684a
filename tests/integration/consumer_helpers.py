"""Shared helpers for the consumer framework's integration tests: produce, read a topic, build an app."""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import Consumer, Producer

from consumers import App, ConsumerSettings, InMemoryStore, RetryPolicy
from consumers.app import Ordering
from consumers.scheduling import Scheduling
from tests.scheduler_proc import SchedulerStack


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes, int | None]]) -> int:
    """(key, value, partition or None) records, flushed; returns how many."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "partitioner": "murmur2_random"})
    n = 0
    for key, value, partition in records:
        if partition is None:
            producer.produce(topic, value, key)
        else:
            producer.produce(topic, value, key, partition=partition)
        n += 1
        if n % 10_000 == 0:
            producer.flush(30)
    assert producer.flush(30) == 0
    return n


def read_all(
    bootstrap: str, topic: str, expect: int, timeout_s: float = 30.0
) -> list[tuple[bytes | None, bytes | None, dict[str, bytes]]]:
    """Read `topic` from the beginning until `expect` records arrived (bounded)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.time_ns()}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    out: list[tuple[bytes | None, bytes | None, dict[str, bytes]]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expect and time.monotonic() < deadline:
            for msg in consumer.consume(100, 0.2):
                if msg.error() is None:
                    out.append((msg.key(), msg.value(), dict(msg.headers() or [])))
    finally:
        consumer.close()
    return out


def make_app(
    bootstrap: str,
    group: str,
    *,
    concurrency: int = 16,
    ordering: Ordering = "block-key",
    retry: RetryPolicy | None = None,
    scheduler: Scheduling | None = None,
    **settings: object,
) -> App:
    base = {"commit_interval_s": 0.2, "shutdown_timeout_s": 10.0}
    return App(
        group,
        bootstrap_servers=bootstrap,
        concurrency=concurrency,
        idempotency=InMemoryStore(),
        retry=retry or RetryPolicy(max_attempts=3, base=0.2, cap=0.5),
        ordering=ordering,
        settings=ConsumerSettings(**{**base, **settings}),  # type: ignore[arg-type]
        scheduler=scheduler,
    )


def retrying_app(stack: SchedulerStack, group: str, *, max_attempts: int = 3, **settings: object) -> App:
    """An app whose retries go through `stack`'s real scheduler, quickly (0.2 to 0.3 s apart)."""
    policy = RetryPolicy(max_attempts=max_attempts, base=0.2, cap=0.3, min_delay=0.2)
    return make_app(stack.bootstrap, group, retry=policy, scheduled_topic=stack.scheduled_topic, **settings)


def produce_raw(
    bootstrap: str, topic: str, key: bytes | None, value: bytes | None, headers: dict[str, bytes]
) -> None:
    """Re-publish a record with its headers, e.g. to deliver a fired record twice."""
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, value, key, headers=list(headers.items()))
    assert producer.flush(30) == 0
