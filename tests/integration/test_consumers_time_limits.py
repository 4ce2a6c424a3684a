"""A hung handler past handler_timeout_s, against the REAL scheduler: its record is retried, its key moves on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from consumers import Message
from tests.conftest import wait_until
from tests.integration.consumer_helpers import produce, retrying_app
from tests.scheduler_proc import SchedulerStack


def test_a_hung_handler_is_retried_after_its_time_limit_and_later_records_of_its_key_follow_in_order(
    scheduler_stack: SchedulerStack, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    topic = create_topic(unique("payments"), partitions=2)
    produce(scheduler_stack.bootstrap, topic, [(b"K", b"hang", 0), (b"K", b"next", 0), (b"J", b"other", 0)])
    release = threading.Event()
    done: list[tuple[bytes, int]] = []
    app = retrying_app(scheduler_stack, unique("g"), handler_timeout_s=1.0)

    @app.handler(topic)
    def handle(message: Message) -> None:
        assert message.value is not None
        if message.value == b"hang" and message.attempt == 1:
            release.wait(60)  # a call that never returns in time (a dead socket without a timeout)
            return
        done.append((message.value, message.attempt))

    try:
        with app.running():
            started = time.monotonic()
            wait_until(lambda: len(done) == 3, 30, "the hung record's retry, then the rest")
            elapsed = time.monotonic() - started
            assert done[0] == (b"other", 1), "another key must not wait for the hung handler"
            assert done[1:] == [(b"hang", 2), (b"next", 1)], "block-key: K's later record follows its retry"
            assert elapsed < 15, f"the time limit (1 s) did not free the key in time: {elapsed:.1f}s"
            release.set()  # the abandoned call returns; its outcome is ignored
    finally:
        release.set()
    assert done == [(b"other", 1), (b"hang", 2), (b"next", 1)]
