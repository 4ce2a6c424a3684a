"""B5 client: schedule() per second next to raw confluent-kafka produce of the same value size, same run.

Usage: KAFKA_BOOTSTRAP_SERVERS=host:port python -m bench.client [N]

Goals (issue 14): SchedulerClient / raw Producer >= 0.5, AsyncSchedulerClient / raw AIOProducer >= 0.6.
The raw baseline is what a careful user writes for the same guarantees: the client's producer config, a delivery
callback (sync; failures only, as the client's) or a done-callback per future (async) to see a lost message, and
poll(0) after each produce (sync) as the client does to serve those reports.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.aio import AIOProducer

from scheduler import AsyncSchedulerClient, ClientSettings, SchedulerClient
from scheduler.client import PRODUCER_DEFAULTS
from scheduler.config import PRODUCER_FORCED, merge_config

PAYLOAD = b"x" * 100
PARTITIONS = 6
GOALS = {"sync": 0.5, "async": 0.6}  # client / raw produce, per mode (issue 14)
RESULTS = Path(__file__).parent / "results" / "client.json"


def make_topic(bootstrap: str, prefix: str = "bench-client") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(30)
    return name


def timed(run: Callable[[], None], n: int) -> float:
    start = time.perf_counter()
    run()
    return n / (time.perf_counter() - start)


def sync_pair(bootstrap: str, topic: str, target: str, n: int) -> tuple[float, float, int]:
    settings = ClientSettings(scheduled_topic=topic, _env_file=None)  # type: ignore[call-arg]
    client = SchedulerClient(bootstrap, settings=settings)
    size = len(client._core.build("id-0", topic=target, value=PAYLOAD, delay=timedelta(0))[2])
    raw = Producer(merge_config(PRODUCER_DEFAULTS, {"bootstrap.servers": bootstrap}, PRODUCER_FORCED))
    value = b"v" * size

    def ours() -> None:
        for i in range(n):
            client.schedule(f"id-{i}", topic=target, value=PAYLOAD, delay=timedelta(0))
        client.flush(60)

    failed: list[object] = []

    def report(err: object, msg: object) -> None:  # what a careful user needs to see a lost message
        if err is not None:
            failed.append(err)

    def baseline() -> None:
        for i in range(n):
            raw.produce(topic, value, f"id-{i}".encode(), -1, report)  # positional, as the client does
            raw.poll(0)
        raw.flush(60)

    ours(), baseline()  # warm up connections and metadata
    result = timed(ours, n), timed(baseline, n)
    client.close()
    return result[0], result[1], size


async def async_pair(bootstrap: str, topic: str, target: str, n: int, size: int) -> tuple[float, float]:
    settings = ClientSettings(scheduled_topic=topic, _env_file=None)  # type: ignore[call-arg]
    client = AsyncSchedulerClient(bootstrap, settings=settings)
    raw = AIOProducer(merge_config(PRODUCER_DEFAULTS, {"bootstrap.servers": bootstrap}, PRODUCER_FORCED))
    value = b"v" * size

    async def ours() -> float:
        start = time.perf_counter()
        for i in range(n):
            await client.schedule(f"id-{i}", topic=target, value=PAYLOAD, delay=timedelta(0))
        await client.flush(60)
        return n / (time.perf_counter() - start)

    failed: list[object] = []

    def done(future: asyncio.Future[Any]) -> None:  # what a careful user needs to see a lost message
        if future.cancelled() or future.exception() is not None:
            failed.append(future)

    async def baseline() -> float:
        start = time.perf_counter()
        for i in range(n):
            (await raw.produce(topic, value, f"id-{i}".encode())).add_done_callback(done)
        await raw.flush(60)
        return n / (time.perf_counter() - start)

    await ours(), await baseline()
    result = await ours(), await baseline()
    await client.close()
    await raw.close()
    return result


def main(argv: list[str]) -> dict[str, Any]:
    n = int(argv[0]) if argv else 20_000
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    topic = make_topic(bootstrap)
    target = make_topic(bootstrap, "bench-client-target")  # the client checks that a target exists
    sync_ours, sync_raw, size = sync_pair(bootstrap, topic, target, n)
    async_ours, async_raw = asyncio.run(async_pair(bootstrap, topic, target, n, size))
    rows: dict[str, dict[str, Any]] = {
        "sync": {"client_msgs_s": sync_ours, "raw_msgs_s": sync_raw, "ratio": sync_ours / sync_raw},
        "async": {"client_msgs_s": async_ours, "raw_msgs_s": async_raw, "ratio": async_ours / async_raw},
    }
    print(f"n={n} value={size} B (envelope of a {len(PAYLOAD)} B payload) partitions={PARTITIONS}")
    print(f"{'mode':<6} {'client msg/s':>13} {'raw msg/s':>11} {'ratio':>6} {'goal':>6}")
    for mode, row in rows.items():
        goal = GOALS[mode]
        row["goal_ratio"], row["goal_met"] = goal, row["ratio"] >= goal
        ok = "met" if row["goal_met"] else "NOT MET"
        print(
            f"{mode:<6} {row['client_msgs_s']:>13,.0f} {row['raw_msgs_s']:>11,.0f} {row['ratio']:>6.2f} "
            f"{'>= ' + str(goal):>6} {ok}"
        )
    result = {"n": n, "value_bytes": size, "partitions": PARTITIONS, **rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
