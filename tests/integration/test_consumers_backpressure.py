"""A hot key behind a slow handler pauses its partition: fetched-but-unfinished records stay bounded."""

from __future__ import annotations

import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from consumers import Message
from tests.conftest import wait_until
from tests.integration.consumer_helpers import make_app, produce


def test_a_hot_key_pauses_its_partition_and_resumes_when_drained(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    topic = create_topic(unique("hot"), partitions=1)
    group = unique("g")
    produce(kafka_bootstrap, topic, [(b"hot", f"{i}".encode(), None) for i in range(120)])
    registry = CollectorRegistry()
    release = threading.Event()
    handled: list[int] = []
    app = make_app(
        kafka_bootstrap,
        group,
        registry=registry,
        poll_batch=10,
        max_queued_per_key=5,
        consumer={"statistics.interval.ms": "500"},
    )

    @app.handler(topic)
    def handle(message: Message) -> None:
        release.wait(60)
        handled.append(int(message.value or b"0"))

    def sample(name: str, **labels: str) -> float:
        return (
            registry.get_sample_value(f"kafka_scheduler_consumer_{name}", {"group": group, **labels}) or 0.0
        )

    try:
        with app.running():
            # librdkafka reports the lag it sees while the partition is paused: the records were not fetched.
            wait_until(lambda: sample("lag_messages", topic=topic, partition="0") >= 80, 30, "lag reported")
            in_flight = sample("in_flight")
            assert 1 <= in_flight <= 5 + 10 + 1, f"{in_flight} records fetched for one blocked key"
            release.set()
            wait_until(lambda: len(handled) == 120, 60, "all records after resume")
    finally:
        release.set()
    assert handled == list(range(120))
