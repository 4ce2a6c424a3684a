"""Retries through the REAL scheduler: attempt header, original coordinates, block-key vs relaxed ordering."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from consumers import Message, RetryPolicy
from consumers.app import Ordering
from tests.conftest import wait_until
from tests.integration.consumer_helpers import make_app, produce


def test_a_retry_arrives_later_through_the_scheduler_with_the_attempt_header(
    scheduler_stack: Any, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    bootstrap = scheduler_stack.bootstrap
    topic = create_topic(unique("reminders"), partitions=2)
    produce(bootstrap, topic, [(b"k1", b"remind", 1)])
    seen: list[Message] = []
    policy = RetryPolicy(max_attempts=5, base=0.2, cap=0.5, min_delay=0.5)
    app = make_app(bootstrap, unique("g"), retry=policy, scheduled_topic=scheduler_stack.scheduled_topic)

    @app.handler(topic)
    def handle(message: Message) -> None:
        seen.append(message)
        if message.attempt < 3:
            raise RuntimeError(f"temporary failure on attempt {message.attempt}")

    with app.running():
        wait_until(lambda: len(seen) >= 3, 60, "the third attempt")
    assert [m.attempt for m in seen] == [1, 2, 3]
    first, third = seen[0], seen[2]
    assert third.record_topic == f"{topic}.{app.group_id}.retry"
    assert (third.topic, third.partition, third.offset) == (topic, 1, first.offset)
    assert third.key == b"k1" and third.value == b"remind"
    assert third.fire_id is None and third.due_at is None, "a plain record has no fire id, even on a retry"
    assert third.timestamp == first.timestamp, "a retry reports its original record's timestamp"


@pytest.mark.parametrize("ordering", ["block-key", "relaxed"])
def test_block_key_keeps_order_under_retries_and_relaxed_does_not(
    scheduler_stack: Any, unique: Callable[[str], str], create_topic: Callable[..., str], ordering: Ordering
) -> None:
    bootstrap = scheduler_stack.bootstrap
    topic = create_topic(unique("accounts"), partitions=2)
    produce(bootstrap, topic, [(key, f"{i}".encode(), 0) for i in range(3) for key in (b"K", b"J")])
    done: dict[bytes, list[int]] = {b"K": [], b"J": []}
    lock = threading.Lock()
    policy = RetryPolicy(max_attempts=3, base=0.2, cap=0.5, min_delay=1.0)
    app = make_app(
        bootstrap,
        unique("g"),
        ordering=ordering,
        retry=policy,
        scheduled_topic=scheduler_stack.scheduled_topic,
    )

    @app.handler(topic)
    def handle(message: Message) -> None:
        assert message.key is not None and message.value is not None
        if message.key == b"K" and message.value == b"0" and message.attempt == 1:
            raise RuntimeError("the first record of K fails once")
        with lock:
            done[message.key].append(int(message.value))

    with app.running():
        wait_until(lambda: len(done[b"K"]) == 3 and len(done[b"J"]) == 3, 60, "all six records handled")
    assert done[b"J"] == [0, 1, 2]
    if ordering == "block-key":
        assert done[b"K"] == [0, 1, 2], "block-key: later records of K must wait for its retry"
    else:
        assert done[b"K"] == [1, 2, 0], "relaxed: later records of K overtake the retrying one"


def test_a_blocked_key_stays_blocked_across_a_restart(
    scheduler_stack: Any, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    """The marker topic is rebuilt on assignment: after a restart, K's later record still waits for its retry."""
    bootstrap = scheduler_stack.bootstrap
    topic = create_topic(unique("ledger"), partitions=2)
    group = unique("g")
    produce(bootstrap, topic, [(b"K", b"0", 1), (b"K", b"1", 1)])
    done: list[bytes] = []
    attempts: list[int] = []
    policy = RetryPolicy(max_attempts=3, base=0.2, cap=0.5, min_delay=6.0)

    def member() -> Any:
        app = make_app(bootstrap, group, retry=policy, scheduled_topic=scheduler_stack.scheduled_topic)

        @app.handler(topic)
        def handle(message: Message) -> None:
            attempts.append(message.attempt)
            if message.value == b"0" and message.attempt == 1:
                raise RuntimeError("fails once")
            assert message.value is not None
            done.append(message.value)

        return app

    first = member()
    with first.running():
        wait_until(lambda: attempts == [1], 30, "the first attempt failed and the key is blocked")
        wait_until(lambda: _marker_written(bootstrap, topic, group), 30, "marker")
    assert done == [], "the later record of K must not run while K is blocked"
    second = member()
    with second.running():
        wait_until(lambda: len(done) == 2, 60, "both records after the retry")
    assert done == [b"0", b"1"], "after the restart, K's later record overtook its retry"


def _marker_written(bootstrap: str, topic: str, group: str) -> bool:
    from consumers.kafka_io import read_markers

    conf = {"bootstrap.servers": bootstrap, "group.id": "marker-check"}
    return b"K" in read_markers(conf, f"{topic}.{group}.blocked", 1, timeout_s=5)
