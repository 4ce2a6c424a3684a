"""B1 drain: fires per second of a scheduler working off N already-due schedules, vs raw transactional produce.

    python -m bench.fire [--n 50000] [--partitions 6] [--profile out.html]

N state records (100 B payloads, all due) are written straight into a fresh state topic; then one
`kafka-scheduler run` process starts, rebuilds, and fires them. Fires per second = N / (last - first fire visible at
the target, read_committed); partitions start firing as each is rebuilt, so the first fire may come before
/readyz (the figure from /readyz is printed too). The baseline, in the same run and on the same broker: one
transactional producer sending the same record pairs (the fired record with its headers + the tombstone to the
state partition) in transactions of `max_fires_per_transaction` pairs, each with send_offsets_to_transaction, from
its own process, counted the same way at its own target. Goal: ratio >= 0.5.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.common import (
    Counter,
    bootstrap,
    closing,
    console,
    preload_state,
    progress,
    save,
    schedule,
    stack,
    start_scheduler,
    table,
    uid,
    wait_ready,
)
from scheduler.kafka.clients import PRODUCER_DEFAULTS
from scheduler.partitioner import partition_for
from scheduler.records import fired_record

GOAL = 0.5


def scheduler_drain(n: int, partitions: int, profile: Path | None) -> dict[str, Any]:
    with closing(stack("fire", partitions)) as st:
        target = st.create_target(uid("bench-fire-target"), partitions)
        due = int(time.time() * 1000) - 60_000
        preload_state(st, target, n, lambda i: due + i % 1000)
        counter = Counter(target).start()
        started = time.perf_counter()
        instance = start_scheduler(st, profile)
        ready = wait_ready(instance)
        complete = counter.wait(n, timeout_s=max(120.0, n / 500), label="scheduler fires")
        counter.stop()
        fired = [s.fired_ms for s in counter.seen]
        return {
            "fired": len(counter.seen),
            "complete": complete,
            "start_to_ready_s": ready - started,
            "first_fire_before_ready_s": max(0.0, ready - counter.first_at),
            "ready_to_last_s": counter.last_at - ready,
            "first_to_last_s": counter.last_at - counter.first_at,
            "fired_at_span_s": (max(fired) - min(fired)) / 1000,
            "fires_per_s": len(counter.seen) / (counter.last_at - counter.first_at),
            "fires_per_s_from_ready": len(counter.seen) / (counter.last_at - ready),
            "transactions": instance.metric("kafka_scheduler_transactions_total"),
        }


def raw_baseline(n: int, partitions: int, batch: int) -> dict[str, Any]:
    """The same record pairs, pre-built, in transactions of `batch` pairs with send_offsets each.

    The producer runs in its own process, as the scheduler does, so the counting consumer does not share its GIL.
    """
    with closing(stack("fire-raw", partitions)) as st:
        target = st.create_target(uid("bench-fire-raw-target"), partitions)
        counter = Counter(target).start()
        topics = (target, st.settings.state, st.scheduled_topic, st.group)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            pending = pool.apply_async(raw_producer, (bootstrap(), topics, n, partitions, batch))
            with progress() as bar:
                task = bar.add_task("raw transactional produce", total=n)
                while not pending.ready():
                    bar.update(task, completed=len(counter.seen))
                    time.sleep(0.05)
            start, committed = pending.get()
        counter.wait(n, timeout_s=120, label="raw fires visible")
        counter.stop()
        return {
            "fired": len(counter.seen),
            "from_start_s": counter.last_at - start,
            "first_to_last_s": counter.last_at - counter.first_at,
            "commit_elapsed_s": committed - start,
            "fires_per_s": len(counter.seen) / (counter.last_at - counter.first_at),
            "fires_per_s_from_start": len(counter.seen) / (counter.last_at - start),
        }


def raw_producer(
    bootstrap_servers: str, topics: tuple[str, str, str, str], n: int, partitions: int, batch: int
) -> tuple[float, float]:
    """(perf_counter at the first produce, at the last commit); CLOCK_MONOTONIC is system-wide on Linux."""
    target, state, scheduled, group_id = topics
    now = int(time.time() * 1000)
    pairs = []
    for i in range(n):
        s = schedule(i, target, now - 60_000 + i % 1000, now)
        pairs.append((fired_record(s, i, now), s.id.encode(), partition_for(s.id.encode(), partitions)))
    producer = Producer(
        {
            **PRODUCER_DEFAULTS,
            "bootstrap.servers": bootstrap_servers,
            "transactional.id": uid("bench-raw-txn"),
            "enable.idempotence": True,
            "acks": "all",
            "transaction.timeout.ms": 10_000,
            "log_level": 4,
        }
    )
    group = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": group_id, "log_level": 4})
    producer.init_transactions(30)
    offsets = [TopicPartition(scheduled, p, 0) for p in range(partitions)]
    start = time.perf_counter()
    for lo in range(0, n, batch):
        producer.begin_transaction()
        for fire, sid, partition in pairs[lo : lo + batch]:
            _produce(producer, fire.topic, fire.key, fire.value, fire.headers, None)
            _produce(producer, state, sid, None, None, partition)
        producer.send_offsets_to_transaction(offsets, group.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
    committed = time.perf_counter()
    group.close()
    return start, committed


def _produce(
    producer: Producer,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: Any,
    partition: int | None,
) -> None:
    while True:
        try:
            if partition is None:
                producer.produce(topic, value, key, headers=headers)
            else:
                producer.produce(topic, value, key, partition=partition)
            return
        except BufferError:
            producer.poll(0.05)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.fire", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--n", type=int, default=50_000, help="due schedules to drain (full: 200000, 1000000)"
    )
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--batch", type=int, default=2000, help="max_fires_per_transaction of both sides")
    parser.add_argument("--repeat", type=int, default=3, help="alternating raw/scheduler pairs; median ratio")
    parser.add_argument("--profile", type=Path, help="run the scheduler under pyinstrument, HTML here")
    args = parser.parse_args(argv)
    console.print(
        f"B1 drain: n={args.n:,} partitions={args.partitions} batch={args.batch} "
        f"repeat={args.repeat} goal>={GOAL}"
    )
    pairs = []
    for _ in range(args.repeat):
        raw = raw_baseline(args.n, args.partitions, args.batch)
        ours = scheduler_drain(args.n, args.partitions, args.profile)
        pairs.append((ours["fires_per_s"] / raw["fires_per_s"], raw, ours))
    pairs.sort(key=lambda pair: pair[0])
    ratio, raw, ours = pairs[(len(pairs) - 1) // 2]  # the median pair (the lower one of two)
    rows = []
    for i, (r, raw_i, ours_i) in enumerate(pairs):
        mark = " (median)" if raw_i is raw else ""
        rows.append(
            [
                f"raw txn produce #{i + 1}",
                raw_i["fired"],
                raw_i["first_to_last_s"],
                raw_i["fires_per_s"],
                1.0,
                "",
                raw_i["fires_per_s_from_start"],
            ]
        )
        rows.append(
            [
                f"kafka-scheduler #{i + 1}{mark}",
                ours_i["fired"],
                ours_i["first_to_last_s"],
                ours_i["fires_per_s"],
                r,
                "met" if r >= GOAL else "NOT MET",
                ours_i["fires_per_s_from_ready"],
            ]
        )
    table(
        f"B1 drain of {args.n:,} due schedules (fires/s, counted read_committed at the target)",
        ["side", "fires", "first->last visible s", "fires/s", "ratio", "goal", "fires/s from ready|start"],
        rows,
    )
    result = {
        "n": args.n,
        "partitions": args.partitions,
        "batch": args.batch,
        "goal_ratio": GOAL,
        "raw": raw,
        "scheduler": ours,
        "ratio": ratio,
        "ratios": [pair[0] for pair in pairs],
        "goal_met": ratio >= GOAL,
    }
    save("fire", result)
    return result


if __name__ == "__main__":
    main()
