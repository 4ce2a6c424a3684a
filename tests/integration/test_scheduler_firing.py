"""The scheduler against a real broker: on time, never early, replace/cancel, past-due, restart, rejects."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from confluent_kafka import Producer

from scheduler.client import SchedulerClient
from tests.conftest import wait_until
from tests.integration.scheduler_helpers import Tail, read_all
from tests.scheduler_proc import SchedulerStack


def fire_ids(records: list) -> Counter[str]:
    return Counter(r.header("scheduler-fire-id") for r in records)


def test_fires_at_due_time_never_early(scheduler_stack: SchedulerStack) -> None:
    target = scheduler_stack.create_target(f"{scheduler_stack.scheduled_topic}-target")
    tail = Tail(scheduler_stack.bootstrap, target)
    with SchedulerClient(settings=scheduler_stack.client_settings) as client:
        for i in range(30):
            client.schedule(
                f"reservation-{i}",
                topic=target,
                value=f"expire {i}",
                key=f"user-{i}",
                headers={"trace": b"abc"},
                delay=timedelta(milliseconds=800 + 40 * i),
            )
    records = tail.poll_until(lambda r: len(r) >= 30, 30, "30 fires")
    tail.close()
    lateness = []
    for rec in records:
        due = int(rec.header("scheduler-due-at"))
        fired = int(rec.header("scheduler-fired-at"))
        assert fired >= due, f"fired early: {rec}"
        assert rec.seen_ms >= due
        assert rec.header("trace") == "abc"
        assert rec.header("scheduler-schedule-id") == rec.value.decode().replace("expire ", "reservation-")
        lateness.append(rec.seen_ms - due)
    lateness.sort()
    print(f"visible lateness ms: p50={lateness[len(lateness) // 2]} max={lateness[-1]}")
    assert lateness[-1] < 2000
    assert set(fire_ids(records).values()) == {1}


def test_replace_and_cancel(scheduler_stack: SchedulerStack) -> None:
    target = scheduler_stack.create_target(f"{scheduler_stack.scheduled_topic}-target")
    with SchedulerClient(settings=scheduler_stack.client_settings) as client:
        client.schedule("a", topic=target, value="first", delay=timedelta(seconds=2))
        client.schedule("a", topic=target, value="second", delay=timedelta(seconds=1))
        client.schedule("b", topic=target, value="cancelled", delay=timedelta(seconds=1))
        client.cancel("b")
        client.schedule("c", topic=target, value="marker", delay=timedelta(seconds=3))
    tail = Tail(scheduler_stack.bootstrap, target)
    tail.poll_until(lambda r: any(x.value == b"marker" for x in r), 30, "the marker")
    records = tail.poll_for(1.5)  # nothing else is due; give a stray fire the chance to show up
    tail.close()
    assert sorted(r.value for r in records) == [b"marker", b"second"]
    instance = scheduler_stack.instances[0]
    assert instance.metric("kafka_scheduler_cancelled_total") == 1


def test_past_due_fires_at_once_and_counts_late(scheduler_stack: SchedulerStack) -> None:
    target = scheduler_stack.create_target(f"{scheduler_stack.scheduled_topic}-target")
    tail = Tail(scheduler_stack.bootstrap, target)
    started = time.time()
    with SchedulerClient(settings=scheduler_stack.client_settings) as client:
        client.schedule("late", topic=target, value="x", at=datetime.now(UTC) - timedelta(hours=1))
    tail.poll_until(lambda r: len(r) == 1, 15, "the past-due fire")
    tail.close()
    assert time.time() - started < 10
    lateness_sum = scheduler_stack.instances[0].metric("kafka_scheduler_fire_lateness_seconds_sum")
    assert lateness_sum >= 3600


def test_restart_fires_pending_exactly_once(scheduler_stack: SchedulerStack) -> None:
    target = scheduler_stack.create_target(f"{scheduler_stack.scheduled_topic}-target")
    with SchedulerClient(settings=scheduler_stack.client_settings) as client:
        for i in range(50):
            client.schedule(f"p-{i}", topic=target, value=str(i), delay=timedelta(seconds=4 + (i % 5) * 0.2))
    first = scheduler_stack.instances[0]
    # every command taken into state before the stop, so the restart must rebuild them (a loaded machine could
    # leave some in `scheduled`, and the new instance would consume them as commands instead)
    wait_until(lambda: first.metric("kafka_scheduler_commands_total") >= 50, 20, "50 commands taken")
    assert first.stop() == 0, first.log_tail()
    restarted = scheduler_stack.start_instance()
    tail = Tail(scheduler_stack.bootstrap, target)
    tail.poll_until(lambda r: len(r) >= 50, 40, "50 fires after restart")
    tail.close()
    records = read_all(scheduler_stack.bootstrap, target)
    assert len(records) == 50
    assert set(fire_ids(records).values()) == {1}
    assert read_all(scheduler_stack.bootstrap, scheduler_stack.settings.state) != []
    assert restarted.metric("kafka_scheduler_rebuild_records_total") >= 50


def test_poison_commands_are_rejected_with_reasons_and_firing_goes_on(
    scheduler_stack: SchedulerStack,
) -> None:
    target = scheduler_stack.create_target(f"{scheduler_stack.scheduled_topic}-target")
    small = scheduler_stack.create_target(
        f"{scheduler_stack.scheduled_topic}-small", config={"max.message.bytes": "4096"}
    )
    topic = scheduler_stack.scheduled_topic
    producer = Producer({"bootstrap.servers": scheduler_stack.bootstrap})
    poison = [
        (None, b"no key", [("scheduler-target-topic", target.encode()), ("scheduler-delay-ms", b"0")]),
        (b"k1", b"\xc3\x01garbage-fingerprint", []),
        (b"k2", b"plain value, no headers", []),
        (b"k3", b"v", [("scheduler-target-topic", target.encode())]),
        (b"k4", b"v", [("scheduler-target-topic", b"no-such-topic-xyz"), ("scheduler-delay-ms", b"0")]),
        (b"k5", b"v", [("scheduler-target-topic", b"__consumer_offsets"), ("scheduler-delay-ms", b"0")]),
        (b"k6", b"v", [("scheduler-target-topic", topic.encode() + b".state"), ("scheduler-delay-ms", b"0")]),
        (b"k7", b"x" * 10_000, [("scheduler-target-topic", small.encode()), ("scheduler-delay-ms", b"0")]),
    ]
    for key, value, headers in poison:
        producer.produce(topic, value, key, partition=0, headers=headers)
    producer.produce(
        topic,
        b"good",
        b"ok",
        partition=0,
        headers=[("scheduler-target-topic", target.encode()), ("scheduler-delay-ms", b"0")],
    )
    assert producer.flush(30) == 0
    tail = Tail(scheduler_stack.bootstrap, target)
    tail.poll_until(lambda r: len(r) == 1, 30, "the good command's fire")
    tail.close()
    rejected = read_all(scheduler_stack.bootstrap, scheduler_stack.settings.rejected)
    reasons = Counter(r.header("scheduler-reject-reason") for r in rejected)
    assert reasons == Counter(
        {
            "missing_key": 1,
            "unknown_schema": 1,
            "missing_target_topic": 1,
            "invalid_due": 1,
            "unknown_target_topic": 1,
            "forbidden_target_topic": 2,
            "payload_too_large": 1,
        }
    ), reasons
    by_key = {r.key: r for r in rejected}
    assert by_key[b"k2"].value == b"plain value, no headers"
    assert by_key[b"k2"].header("scheduler-reject-offset") != ""
    assert scheduler_stack.instances[0].metric("kafka_scheduler_rejected_total") == 8


def test_target_deleted_before_due_goes_to_dead_letters(scheduler_stack: SchedulerStack) -> None:
    target = scheduler_stack.create_target(f"{scheduler_stack.scheduled_topic}-doomed")
    other = scheduler_stack.create_target(f"{scheduler_stack.scheduled_topic}-other")
    with SchedulerClient(settings=scheduler_stack.client_settings) as client:
        client.schedule("doomed", topic=target, value="payload", key="user-1", delay=timedelta(seconds=4))
        client.schedule("fine", topic=other, value="ok", delay=timedelta(seconds=5))
    state = scheduler_stack.settings.state
    wait_until(lambda: len(read_all(scheduler_stack.bootstrap, state)) == 2, 20, "both schedules accepted")
    scheduler_stack.admin().delete_topics([target])[target].result(timeout=30)
    tail = Tail(scheduler_stack.bootstrap, scheduler_stack.settings.dlt)
    letters = tail.poll_until(lambda r: len(r) == 1, 40, "the dead letter")
    tail.close()
    assert letters[0].value == b"payload"
    assert letters[0].key == b"user-1"
    assert letters[0].header("scheduler-dlt-reason") == "unknown_target_topic"
    assert letters[0].header("scheduler-dlt-target-topic") == target
    fine = Tail(scheduler_stack.bootstrap, other)
    fine.poll_until(lambda r: len(r) == 1, 30, "the other schedule still fires")
    fine.close()
