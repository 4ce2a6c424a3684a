"""The transaction floor: the lateness of a raw transactional timer, B2's same-run baseline.

A raw loop in its own process knows every schedule in advance (no intake, no decoding, no index): it sleeps until
the earliest due time, then, in one transaction shaped like a scheduler tick, produces every due payload to the
target (with the scheduler's due-at / fired-at / schedule-id headers, so the same `Counter` measures it), a
tombstone per fire to a state-like topic, and offsets with fresh group metadata, and commits. Its visible lateness
is what a Kafka transaction per tick costs on this broker and machine: no scheduler can fire below it with one
transactional producer. The due times follow B2's arrivals (`rate` per second, each due `spread` seconds after).
"""

from __future__ import annotations

import heapq
import random
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.common import PAYLOAD, bootstrap, uid
from scheduler.kafka.clients import LIBRDKAFKA_LOG, PRODUCER_DEFAULTS
from scheduler.model import HEADER_DUE_AT, HEADER_FIRED_AT, HEADER_SCHEDULE_ID
from scheduler.partitioner import partition_for

__all__ = ["due_times", "raw_timer"]


def due_times(rate: float, total: int, spread: tuple[float, float], seed: int, start_ms: int) -> list[int]:
    """B2's due times: the i-th arrival at start + i / rate, due a uniform `spread` after it."""
    rng = random.Random(seed)
    lo, hi = int(spread[0] * 1000), int(spread[1] * 1000)
    return [start_ms + int(i * 1000 / rate) + rng.randint(lo, hi) for i in range(total)]


def raw_timer(target: str, state: str, source: str, partitions: int, dues: list[int]) -> dict[str, float]:
    """Fire `dues` on time with one transaction per wake-up (run in its own process); transaction figures."""
    group = uid("bench-floor")
    consumer = Consumer({"bootstrap.servers": bootstrap(), "group.id": group, "enable.auto.commit": False})
    consumer.assign([TopicPartition(source, p, 0) for p in range(partitions)])
    producer = Producer(
        {
            "bootstrap.servers": bootstrap(),
            "transactional.id": group,
            "enable.idempotence": True,
            "acks": "all",
            # the scheduler's own producer defaults (linger, compression, retry back-off), without its logger
            **{k: v for k, v in PRODUCER_DEFAULTS.items() if k not in LIBRDKAFKA_LOG},
        }
    )
    producer.init_transactions(30)
    heap = [(due, i) for i, due in enumerate(dues)]
    heapq.heapify(heap)
    offsets = [TopicPartition(source, p, 0) for p in range(partitions)]
    txns, txn_s = 0, 0.0
    while heap:
        wait = heap[0][0] / 1000 - time.time()
        if wait > 0:
            time.sleep(wait)
        now = time.time_ns() // 1_000_000
        started = time.perf_counter()
        producer.begin_transaction()
        while heap and heap[0][0] <= now:
            due, i = heapq.heappop(heap)
            sid = f"f-{i:09d}".encode()
            headers = [
                (HEADER_SCHEDULE_ID, sid),
                (HEADER_DUE_AT, b"%d" % due),
                (HEADER_FIRED_AT, b"%d" % now),
            ]
            producer.produce(target, PAYLOAD, sid, partition_for(sid, partitions), headers=headers)
            producer.produce(state, None, sid, partition_for(sid, partitions))
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        txns += 1
        txn_s += time.perf_counter() - started
    consumer.close()
    return {"transactions": txns, "mean_transaction_ms": 1000 * txn_s / max(1, txns)}
