"""Per-key ordered throughput of the consumer framework vs a sequential consumer, same run, real broker.

    python -m bench.consumers [--messages 100000] [--keys 10000] [--concurrency 64] [--handler-ms 5]

Ideal = concurrency / handler time (64 / 5 ms = 12.8k msg/s). Goals: >= 0.8 of ideal, >= 50x sequential.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from consumers import App, ConsumerSettings, IdempotencyStore, InMemoryStore, Message, SQLiteStore

RESULTS = Path(__file__).parent / "results" / "consumers.json"


def prepare(bootstrap: str, topic: str, messages: int, keys: int, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000})
    for i in range(messages):
        while True:
            try:
                producer.produce(topic, f"{i}".encode(), f"key-{i % keys}".encode())
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0


def framework(
    bootstrap: str, topic: str, messages: int, concurrency: int, handler_s: float, store: str
) -> dict[str, float]:
    done = 0
    lock = threading.Lock()
    first: list[float] = []
    order_errors = 0
    last: dict[bytes, int] = {}
    settings = ConsumerSettings(create_topics=True, commit_interval_s=1.0)
    app = App(
        f"bench-{uuid.uuid4().hex[:8]}",
        bootstrap_servers=bootstrap,
        concurrency=concurrency,
        idempotency=_store(store),
        settings=settings,
    )

    @app.handler(topic)
    def handle(message: Message) -> None:
        nonlocal done, order_errors
        time.sleep(handler_s)
        seq = int(message.value or b"0")
        with lock:
            if not first:
                first.append(time.perf_counter())
            assert message.key is not None
            if last.get(message.key, -1) > seq:
                order_errors += 1
            last[message.key] = seq
            done += 1

    with app.running():
        deadline = time.monotonic() + 120
        while done < messages and time.monotonic() < deadline:
            time.sleep(0.01)
        end = time.perf_counter()
    elapsed = end - first[0]
    return {
        "messages": done,
        "seconds": elapsed,
        "msgs_per_s": done / elapsed,
        "order_violations": order_errors,
    }


def _store(kind: str) -> IdempotencyStore | None:
    if kind == "sqlite":
        return SQLiteStore(Path(tempfile.mkdtemp()) / "bench-idempotency.sqlite3")
    return InMemoryStore() if kind == "memory" else None


def sequential(bootstrap: str, topic: str, messages: int, handler_s: float) -> dict[str, float]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-seq-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    done, start = 0, 0.0
    while done < messages:
        msg = consumer.poll(1.0)
        if msg is None or msg.error() is not None:
            continue
        if done == 0:
            start = time.perf_counter()
        time.sleep(handler_s)
        consumer.commit(message=msg, asynchronous=True)
        done += 1
    elapsed = time.perf_counter() - start
    consumer.close()
    return {"messages": done, "seconds": elapsed, "msgs_per_s": done / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"))
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--handler-ms", type=float, default=5.0)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--sequential-messages", type=int, default=1_000)
    parser.add_argument("--store", choices=["memory", "sqlite", "none"], default="memory")
    args = parser.parse_args()
    handler_s = args.handler_ms / 1000
    topic = f"bench-consumers-{uuid.uuid4().hex[:8]}"
    prepare(args.bootstrap, topic, args.messages, args.keys, args.partitions)
    fw = framework(args.bootstrap, topic, args.messages, args.concurrency, handler_s, args.store)
    seq = sequential(args.bootstrap, topic, args.sequential_messages, handler_s)
    ideal = args.concurrency / handler_s
    result = {
        "config": vars(args) | {"topic": topic},
        "framework": fw,
        "sequential_baseline": seq,
        "ideal_msgs_per_s": ideal,
        "ratio_to_ideal": fw["msgs_per_s"] / ideal,
        "speedup_vs_sequential": fw["msgs_per_s"] / seq["msgs_per_s"],
        "goals": {"ratio_to_ideal": 0.8, "speedup_vs_sequential": 50},
    }
    print(
        f"framework:  {fw['msgs_per_s']:,.0f} msg/s ({fw['messages']} msgs, {fw['seconds']:.1f}s, "
        f"order violations {fw['order_violations']})"
    )
    print(f"sequential: {seq['msgs_per_s']:,.0f} msg/s ({seq['messages']} msgs)")
    print(
        f"ideal {ideal:,.0f} msg/s; ratio to ideal {result['ratio_to_ideal']:.2f} (goal 0.8); "
        f"speedup vs sequential {result['speedup_vs_sequential']:.1f}x (goal 50x)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
