"""B6 intake: commands consumed and committed into the state topic per second vs the physical floor of that work.

    python -m bench.intake [--n 100000] [--partitions 6] [--misrouted 0.5]

N schedule commands (Avro envelopes, 100 B payloads, due in a day so nothing fires) are produced to `scheduled`
before the scheduler starts, each to its id's murmur2 partition; then one `kafka-scheduler run` process takes them
in. Rate = N / (last state record visible read_committed - /readyz answered 200).

The baseline, same run, same commands: the physical floor of intake, an EOS loop in its own process (as the
scheduler is) that consumes `scheduled` read_committed in batches of the scheduler's INTAKE_BATCH and, per batch
(as the scheduler does: 2 000 state records stay far below its max_transaction_bytes),
writes one state-record-sized value per command to the same partition of a compacted topic co-partitioned like
the state topic, in one transaction with send_offsets_to_transaction of the consumed offsets; no decoding. Its
rate is counted the same way (N / last record visible - loop start), once before the scheduler and once after
(fresh group and topic each time): the figure is the mean of the two. Goal: scheduler / floor >= 0.7. Printed
beside it, as before: a plain read_committed consume of the same commands to the high watermarks.

A second pass on fresh topics sends a share (`--misrouted`, default half) to another partition, as a producer on
librdkafka's default partitioner does: the scheduler forwards those to their id's partition first, and the ratio
of the two passes is the cost of forwarding.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from bench.common import (
    Counter,
    bootstrap,
    closing,
    console,
    counted_in_own_process,
    fast_producer,
    in_own_process,
    produce,
    progress,
    save,
    schedule,
    stack,
    start_scheduler,
    table,
    uid,
    wait_ready,
)
from bench.rebuild import raw_replay
from scheduler.codec import encode_schedule, encode_state
from scheduler.kafka.clients import CONSUMER_DEFAULTS, PRODUCER_DEFAULTS
from scheduler.partitioner import partition_for
from scheduler.service.loop import INTAKE_BATCH
from scheduler.topics import STATE_CONFIG

GOAL = 0.7  # scheduler / physical floor (issue 14)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="commands (full: 1000000)")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--misrouted", type=float, default=0.5, help="share sent to the wrong partition (pass 2; 0: none)"
    )
    parser.add_argument("--profile", help="run the scheduler under pyinstrument, output here (.txt or .html)")
    args = parser.parse_args(argv)
    n, parts = args.n, args.partitions
    console.print(
        f"B6 intake: n={n:,} commands, partitions={parts}, batch={INTAKE_BATCH}, goal scheduler/floor >= {GOAL}"
    )
    home = one_pass(n, parts, 0.0, args.profile, floor=True)
    misrouted = one_pass(n, parts, args.misrouted, None, floor=False) if args.misrouted > 0 else None
    floor = home["floor"]
    rows = [
        [
            "physical floor: consume -> txn produce + offsets (mean of 2)",
            floor["count"],
            floor["s"],
            floor["rate"],
            1.0,
            "",
        ],
        ["  the two floor runs, records/s", "", "", ", ".join(f"{r:,.0f}" for r in floor["rates"]), "", ""],
        [
            "raw read_committed consume",
            home["raw_count"],
            home["raw_s"],
            home["raw"],
            home["raw"] / floor["rate"],
            "",
        ],
        _row("scheduler: consumed -> state committed", home, floor["rate"]),
    ]
    if misrouted is not None:
        share = f"{args.misrouted:.0%}"
        rows.append(_row(f"scheduler, {share} misrouted (forwarded first)", misrouted, floor["rate"]))
    table(
        f"B6 intake of {n:,} commands (per second; ratio to the physical floor)",
        ["side", "records", "seconds", "records/s", "ratio", "goal"],
        rows,
    )
    ratio = home["ours"] / floor["rate"]
    console.print(
        f"scheduler / floor = {ratio:.2f} (goal >= {GOAL}: {'met' if ratio >= GOAL else 'NOT MET'}); "
        f"scheduler / raw consume = {home['ours'] / home['raw']:.2f}"
    )
    result = {
        "n": n,
        "partitions": parts,
        "batch": INTAKE_BATCH,
        "floor_records_per_s": floor["rate"],
        "floor_s": floor["s"],
        "floor_runs_records_per_s": floor["rates"],
        "floor_last_commit_s": floor["commit_s"],
        "floor_complete": floor["complete"],
        "raw_records_per_s": home["raw"],
        "raw_s": home["raw_s"],
        "scheduler_records_per_s": home["ours"],
        "scheduler_s": home["ours_s"],
        "complete": home["complete"],
        "ratio": ratio,
        "ratio_to_raw_consume": home["ours"] / home["raw"],
        "goal_ratio": GOAL,
        "goal_met": ratio >= GOAL,
    }
    if misrouted is not None:
        result["misrouted_share"] = args.misrouted
        result["misrouted_records_per_s"] = misrouted["ours"]
        result["misrouted_complete"] = misrouted["complete"]
        result["forwarding_cost"] = 1 - misrouted["ours"] / home["ours"]
        console.print(
            f"forwarding {args.misrouted:.0%} of the commands costs {result['forwarding_cost']:.0%}"
        )
    save("intake", result)
    return result


def _row(label: str, run: dict[str, Any], floor: float) -> list[Any]:
    ratio = run["ours"] / floor
    return [label, run["count"], run["ours_s"], run["ours"], ratio, "met" if ratio >= GOAL else "NOT MET"]


def one_pass(n: int, parts: int, misrouted: float, profile: str | None, floor: bool) -> dict[str, Any]:
    """Fresh topics, N commands (a share sent to another partition than their id's), one instance takes them."""
    rng = random.Random(n)
    with closing(stack("intake", parts)) as st:
        target = st.create_target(uid("bench-intake-target"), parts)
        producer = fast_producer()
        due = int(time.time() * 1000) + 86_400_000
        with progress() as bar:
            task = bar.add_task(f"produce commands ({misrouted:.0%} misrouted)", total=n)
            for i in range(n):
                s = schedule(i, target, due + i, due - 86_400_000)
                key = s.id.encode()
                partition = partition_for(key, parts)
                if rng.random() < misrouted:
                    partition = (partition + rng.randrange(1, parts)) % parts
                produce(producer, st.scheduled_topic, encode_schedule(s), key, partition)
                if i % 5000 == 0:
                    producer.poll(0)
                    bar.update(task, completed=i)
        assert producer.flush(60) == 0
        out: dict[str, Any] = {}
        state_size = len(encode_state(schedule(0, target, due, due), 0))
        floors = [physical_floor(st, n, parts, state_size)] if floor else []
        out["raw_s"], out["raw_count"] = in_own_process(raw_replay, st.scheduled_topic, parts)
        out["raw"] = out["raw_count"] / out["raw_s"]
        counter = Counter(st.settings.state).start()
        instance = start_scheduler(st, Path(profile) if profile else None)
        ready = wait_ready(instance)
        out["complete"] = counter.wait(n, timeout_s=max(120.0, n / 300), label="state records committed")
        counter.stop()
        out["ours_s"] = counter.last_at - ready
        instance.stop(timeout_s=30)
        if floor:  # once before and once after the scheduler, so drift of a shared machine falls on both
            floors.append(physical_floor(st, n, parts, state_size))
            out["floor"] = _mean_floor(floors)
    out["count"] = len(counter.seen)
    out["ours"] = out["count"] / out["ours_s"]
    return out


def _mean_floor(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [run["rate"] for run in runs]
    return {
        "count": min(run["count"] for run in runs),
        "s": sum(run["s"] for run in runs) / len(runs),
        "rate": sum(rates) / len(rates),
        "rates": rates,
        "commit_s": max(run["commit_s"] for run in runs),
        "complete": all(run["complete"] for run in runs),
    }


def physical_floor(st: Any, n: int, parts: int, state_size: int) -> dict[str, Any]:
    """The floor loop over `scheduled` in its own process, into a fresh compacted topic; counted read_committed."""
    out_topic = st.create_target(uid("bench-intake-floor-state"), parts, config=dict(STATE_CONFIG))
    counter = Counter(out_topic).start()
    topics = (st.scheduled_topic, out_topic, uid("bench-intake-floor"))
    start, committed = counted_in_own_process(
        "physical floor (consume -> txn produce)",
        counter,
        n,
        floor_loop,
        *(bootstrap(), topics, n, parts, state_size, INTAKE_BATCH),
    )
    complete = counter.wait(n, timeout_s=120, label="floor records visible")
    counter.stop()
    seconds = counter.last_at - start
    count = len(counter.seen)
    return {
        "count": count,
        "s": seconds,
        "rate": count / seconds,
        "commit_s": committed - start,
        "complete": complete,
    }


def floor_loop(
    bootstrap_servers: str, topics: tuple[str, str, str], n: int, parts: int, value_size: int, batch: int
) -> tuple[float, float]:
    """Consume N commands read_committed; per consumed batch one transaction: a value of `value_size` per command
    to its partition of `out_topic`, and the consumed offsets. (perf_counter at assignment, at the last commit.)"""
    scheduled, out_topic, group_id = topics
    consumer = Consumer(
        {
            **CONSUMER_DEFAULTS,
            "bootstrap.servers": bootstrap_servers,
            "group.id": group_id,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "log_level": 4,
        }
    )
    producer = Producer(
        {
            **PRODUCER_DEFAULTS,
            "bootstrap.servers": bootstrap_servers,
            "transactional.id": uid("bench-intake-floor-txn"),
            "enable.idempotence": True,
            "acks": "all",
            "transaction.timeout.ms": 10_000,
            "message.timeout.ms": 5_000,
            "log_level": 4,
        }
    )
    producer.init_transactions(30)
    producer.list_topics(out_topic, timeout=10)  # the scheduler knows both topics' leaders by /readyz
    consumer.list_topics(scheduled, timeout=10)
    value = b"v" * value_size
    positions = dict.fromkeys(range(parts), 0)
    start = time.perf_counter()
    consumer.assign([TopicPartition(scheduled, p, OFFSET_BEGINNING) for p in range(parts)])
    consumed, deadline = 0, time.monotonic() + max(120.0, n / 300)
    while consumed < n and time.monotonic() < deadline:
        messages = [m for m in consumer.consume(batch, 0.2) if m.error() is None]
        if not messages:
            continue
        producer.begin_transaction()
        for msg in messages:
            partition = msg.partition()
            produce(producer, out_topic, value, msg.key(), partition)
            positions[partition] = msg.offset() + 1
        offsets = [TopicPartition(scheduled, p, o) for p, o in positions.items()]
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        consumed += len(messages)
    committed = time.perf_counter()
    consumer.close()
    return start, committed


if __name__ == "__main__":
    main()
