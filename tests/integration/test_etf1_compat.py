"""etf1/kafka-message-scheduler consumers keep working: fires of etf1-style commands carry etf1's headers."""

from __future__ import annotations

import time
from collections import Counter

from confluent_kafka import Producer

from tests.integration.scheduler_helpers import Tail
from tests.scheduler_proc import SchedulerStack


def test_etf1_command_fires_with_etf1_headers_after_a_restart(scheduler_stack: SchedulerStack) -> None:
    """etf1's README example, sent as etf1 producers do; the fire comes from the state topic after a restart."""
    stack = scheduler_stack
    target = stack.create_target(f"{stack.scheduled_topic}-online-videos")
    sent_ms = int(time.time() * 1000) - 5_000
    epoch_s = int(time.time()) + 4
    producer = Producer({"bootstrap.servers": stack.bootstrap, "partitioner": "murmur2_random"})
    etf1_headers = [
        ("scheduler-epoch", str(epoch_s).encode()),
        ("scheduler-target-topic", target.encode()),
        ("scheduler-target-key", b"vid1"),
        ("customer-header", b"dummy"),
        # left over from an earlier hop: replaced, never appended
        ("scheduler-key", b"stale"),
        ("scheduler-timestamp", b"1"),
        ("scheduler-fire-id", b"stale@0"),
    ]
    producer.produce(
        stack.scheduled_topic, b"video 1", b"vid1-online", headers=etf1_headers, timestamp=sent_ms
    )
    ours = [("scheduler-target-topic", target.encode()), ("scheduler-deliver-at", b"%d" % (epoch_s * 1000))]
    producer.produce(stack.scheduled_topic, b"not etf1", b"plain", headers=ours)
    assert producer.flush(10) == 0
    first = stack.instances[0]
    tail = Tail(stack.bootstrap, stack.settings.state)
    tail.poll_until(lambda r: len(r) >= 2, 20, "both schedules in the state topic")
    tail.close()
    assert first.stop() == 0, first.log_tail()
    stack.start_instance()

    tail = Tail(stack.bootstrap, target)
    records = tail.poll_until(lambda r: len(r) >= 2, 30, "both fires after the restart")
    tail.close()
    fired = {r.key: r for r in records}
    etf1 = fired[b"vid1"]
    assert etf1.value == b"video 1"
    counts = Counter(name for name, _ in etf1.header_list)
    assert {
        n: counts[n] for n in ("scheduler-timestamp", "scheduler-key", "scheduler-topic")
    } == dict.fromkeys(("scheduler-timestamp", "scheduler-key", "scheduler-topic"), 1), etf1.header_list
    assert counts["scheduler-fire-id"] == 1 and counts["scheduler-schedule-id"] == 1
    assert etf1.header("scheduler-timestamp") == str(sent_ms // 1000)  # the command's record time, seconds
    assert etf1.header("scheduler-key") == "vid1-online"
    assert etf1.header("scheduler-topic") == stack.scheduled_topic
    assert etf1.header("customer-header") == "dummy"
    # etf1 passes its own control headers through too
    assert etf1.header("scheduler-epoch") == str(epoch_s)
    assert etf1.header("scheduler-target-key") == "vid1"
    assert int(etf1.header("scheduler-fired-at")) >= epoch_s * 1000

    plain = fired[None]
    names = {name for name, _ in plain.header_list}
    assert not names & {"scheduler-timestamp", "scheduler-key", "scheduler-topic", "scheduler-target-topic"}
