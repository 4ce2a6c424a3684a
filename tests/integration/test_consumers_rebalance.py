"""A second member joins mid-stream: nothing lost, no effect applied twice, per-key order kept."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from consumers import App, ConsumerSettings, Message, SQLiteStore
from tests.conftest import wait_until
from tests.integration.consumer_helpers import produce


def test_two_member_rebalance_loses_nothing_and_keeps_key_order(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = create_topic(unique("events"), partitions=4)
    group = unique("g")
    keys, per_key, first_half = 40, 80, 50
    lock = threading.Lock()
    effects: dict[bytes, list[int]] = defaultdict(list)
    store = SQLiteStore(tmp_path / "shared-idempotency.sqlite3")  # the shared DB both members use

    registries = [CollectorRegistry(), CollectorRegistry()]

    def member(registry: CollectorRegistry) -> App:
        settings = ConsumerSettings(
            commit_interval_s=0.5, consumer={"session.timeout.ms": "6000"}, registry=registry
        )
        app = App(
            group, bootstrap_servers=kafka_bootstrap, concurrency=4, idempotency=store, settings=settings
        )

        @app.handler(topic)
        def handle(message: Message) -> None:
            time.sleep(0.005)
            assert message.key is not None and message.value is not None
            with lock:
                effects[message.key].append(int(message.value))

        return app

    def total() -> int:
        with lock:
            return sum(len(v) for v in effects.values())

    produce(
        kafka_bootstrap,
        topic,
        [(f"k{k}".encode(), f"{i}".encode(), None) for i in range(first_half) for k in range(keys)],
    )
    first, second = member(registries[0]), member(registries[1])
    with first.running():
        wait_until(lambda: total() >= 100, 60, "the first member is consuming")
        with second.running():
            assigned = {"group": group, "event": "assigned"}
            wait_until(
                lambda: registries[1].get_sample_value("kafka_scheduler_consumer_rebalances_total", assigned),
                60,
                "the second member got partitions",
            )
            produce(
                kafka_bootstrap,
                topic,
                [
                    (f"k{k}".encode(), f"{i}".encode(), None)
                    for i in range(first_half, per_key)
                    for k in range(keys)
                ],
            )
            wait_until(lambda: total() >= keys * per_key, 90, "every record handled after the rebalance")
    assert len(effects) == keys
    revoked = registries[0].get_sample_value(
        "kafka_scheduler_consumer_rebalances_total", {"group": group, "event": "revoked"}
    )
    handled_by_second = registries[1].get_sample_value(
        "kafka_scheduler_consumer_messages_total", {"group": group, "topic": topic, "outcome": "success"}
    )
    assert revoked and revoked >= 1, "the first member never gave up partitions: no rebalance happened"
    assert handled_by_second, "the second member handled nothing"
    for key, values in effects.items():
        assert values == list(range(per_key)), f"{key!r}: lost, duplicated or reordered: {values}"
