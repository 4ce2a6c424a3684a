"""Per-key order under concurrency with many keys, against a real broker."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable

from consumers import Message
from tests.conftest import wait_until
from tests.integration.consumer_helpers import make_app, produce


def test_per_key_order_holds_with_many_keys_in_parallel(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    topic = create_topic(unique("orders"), partitions=4)
    keys, per_key = 200, 10
    records = [(f"k{k}".encode(), f"{k}:{i}".encode(), None) for i in range(per_key) for k in range(keys)]
    produce(kafka_bootstrap, topic, records)
    seen: dict[bytes, list[int]] = defaultdict(list)
    lock = threading.Lock()
    running, peak = 0, 0
    rng = random.Random(7)

    app = make_app(kafka_bootstrap, unique("g"), concurrency=32)

    @app.handler(topic)
    def handle(message: Message) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(rng.random() * 0.004)
        with lock:
            running -= 1
            assert message.key is not None and message.value is not None
            seen[message.key].append(int(message.value.split(b":")[1]))

    with app.running():
        wait_until(lambda: sum(len(v) for v in seen.values()) >= keys * per_key, 60, "all records handled")
    assert all(v == list(range(per_key)) for v in seen.values()), "a key's records ran out of order"
    assert len(seen) == keys
    assert peak > 4, f"keys did not run in parallel (peak concurrency {peak})"
