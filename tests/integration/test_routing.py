"""A cancel or replace from any Kafka client, with any partitioner, takes effect (a real broker and scheduler)."""

from __future__ import annotations

import subprocess
import time
import zlib
from collections import Counter
from datetime import timedelta

import pytest
from confluent_kafka import Producer

from scheduler.client import SchedulerClient
from scheduler.codec import encode_schedule, encode_state
from scheduler.model import Schedule
from scheduler.partitioner import partition_for
from tests.conftest import wait_until
from tests.integration.scheduler_helpers import Tail, read_all
from tests.scheduler_proc import SchedulerProcess, SchedulerStack

PARTITIONS = 6


def sample(instance: SchedulerProcess, name: str, label: str) -> float:
    """One labelled sample of /metrics, e.g. sample(i, "kafka_scheduler_commands_total", 'result="forwarded"')."""
    _status, text = instance.get("/metrics")
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def crc_partition(sid: str, partitions: int) -> int:
    """librdkafka's default partitioner (consistent_random) for a keyed record: CRC32 of the key."""
    return zlib.crc32(sid.encode()) % partitions


def misrouted_ids(count: int, partitions: int) -> list[str]:
    """Ids whose librdkafka-default partition differs from their murmur2 partition."""
    ids = (f"reservation-{i}" for i in range(10_000))
    return [s for s in ids if crc_partition(s, partitions) != partition_for(s.encode(), partitions)][:count]


@pytest.fixture
def stack(scheduler_topics: SchedulerStack) -> SchedulerStack:
    return scheduler_topics


def six_partition_stack(stack: SchedulerStack, **env: str) -> tuple[SchedulerStack, str, SchedulerProcess]:
    """Fresh 6-partition scheduler topics, a target, and one running instance."""
    fresh = SchedulerStack(
        stack.bootstrap, stack.scheduled_topic + "-r", stack.workdir, partitions=PARTITIONS
    )
    fresh.create()
    target = fresh.create_target(f"{fresh.scheduled_topic}-target", 3)
    instance = fresh.start_instance(**env)
    stack.instances.append(instance)  # stopped with the fixture's stack
    return fresh, target, instance


def test_cancels_from_librdkafkas_default_partitioner_cancel(stack: SchedulerStack) -> None:
    """20 schedules from SchedulerClient, cancelled by a plain confluent-kafka producer (consistent_random)."""
    fresh, target, instance = six_partition_stack(stack)
    ids = [f"reservation-{i}" for i in range(20)]
    misrouted = [s for s in ids if crc_partition(s, PARTITIONS) != partition_for(s.encode(), PARTITIONS)]
    assert len(misrouted) >= 10, "the sample must exercise the bug"
    with SchedulerClient(settings=fresh.client_settings) as client:
        for sid in ids:
            client.schedule(sid, topic=target, value=sid, delay=timedelta(seconds=6))
        client.schedule("marker", topic=target, value="marker", delay=timedelta(seconds=7))
    plain = Producer({"bootstrap.servers": fresh.bootstrap})  # librdkafka's defaults, as most clients have
    for sid in ids:
        plain.produce(fresh.scheduled_topic, value=None, key=sid)
    assert plain.flush(10) == 0
    tail = Tail(fresh.bootstrap, target)
    records = tail.poll_until(lambda r: any(x.value == b"marker" for x in r), 40, "the marker")
    tail.close()
    assert [r.value for r in records] == [b"marker"], "a cancelled schedule fired"
    wait_until(lambda: instance.metric("kafka_scheduler_cancelled_total") == 20, 10, "20 cancels counted")
    assert sample(instance, "kafka_scheduler_commands_total", 'result="forwarded"') == len(misrouted)
    assert "set partitioner=murmur2_random" in instance.log_tail(200)


def test_kcat_cancel_and_replace_with_its_default_partitioner(stack: SchedulerStack) -> None:
    fresh, target, _instance = six_partition_stack(stack)
    cancelled, replaced = misrouted_ids(2, PARTITIONS)
    with SchedulerClient(settings=fresh.client_settings) as client:
        client.schedule(cancelled, topic=target, value="never", delay=timedelta(seconds=5))
        client.schedule(replaced, topic=target, value="old", delay=timedelta(seconds=5))
    base = ["kcat", "-P", "-b", fresh.bootstrap, "-t", fresh.scheduled_topic]
    subprocess.run([*base, "-K:", "-Z"], input=f"{cancelled}:\n", text=True, check=True, timeout=30)
    replace = ["-k", replaced, "-H", f"scheduler-target-topic={target}", "-H", "scheduler-delay-ms=1500"]
    subprocess.run([*base, *replace], input="new\n", text=True, check=True, timeout=30)
    tail = Tail(fresh.bootstrap, target)
    records = tail.poll_until(lambda r: len(r) >= 1, 30, "the replaced schedule")
    records = tail.poll_for(6)  # past the original due time: neither the cancelled nor the old version fires
    tail.close()
    assert [(r.header("scheduler-schedule-id"), r.value) for r in records] == [(replaced, b"new")]


def test_a_replace_sent_to_an_explicit_wrong_partition_replaces_once(stack: SchedulerStack) -> None:
    fresh, target, instance = six_partition_stack(stack)
    sid = "invoice-7"
    wrong = (partition_for(sid.encode(), PARTITIONS) + 3) % PARTITIONS
    with SchedulerClient(settings=fresh.client_settings) as client:
        client.schedule(sid, topic=target, value="v1", delay=timedelta(seconds=4))
    value = encode_schedule(Schedule(sid, target, int(time.time() * 1000) + 1500, b"v2"))
    plain = Producer({"bootstrap.servers": fresh.bootstrap})
    plain.produce(fresh.scheduled_topic, value=value, key=sid, partition=wrong)
    assert plain.flush(10) == 0
    tail = Tail(fresh.bootstrap, target)
    tail.poll_until(lambda r: len(r) >= 1, 30, "the replacement")
    records = tail.poll_for(5)  # past v1's due time
    tail.close()
    assert [r.value for r in records] == [b"v2"]
    (copy,) = [
        r
        for r in read_all(fresh.bootstrap, fresh.scheduled_topic)
        if r.header("scheduler-forwarded-from").startswith(f"{wrong}/")
    ]
    assert copy.partition == partition_for(sid.encode(), PARTITIONS)
    assert records[0].header("scheduler-fire-id") == f"{sid}@{copy.offset}"
    # the group's committed offsets step over the forwarding transactions' markers: no lag left behind
    wait_until(lambda: committed_lag(fresh) == 0, 20, "committed offsets at the end of every partition")
    assert sample(instance, "kafka_scheduler_commands_total", 'result="forwarded"') == 1


def committed_lag(stack: SchedulerStack) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": stack.group})
    try:
        parts = [TopicPartition(stack.scheduled_topic, p) for p in range(stack.partitions)]
        committed = consumer.committed(parts, timeout=10)
        lag = 0
        for tp in committed:
            _low, high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()


def test_reject_mode_refuses_misrouted_commands(stack: SchedulerStack) -> None:
    fresh, target, instance = six_partition_stack(stack, KAFKA_SCHEDULER_MISROUTED="reject")
    (sid,) = misrouted_ids(1, PARTITIONS)
    plain = Producer({"bootstrap.servers": fresh.bootstrap})
    plain.produce(
        fresh.scheduled_topic,
        value=b"x",
        key=sid,
        headers=[("scheduler-target-topic", target.encode()), ("scheduler-delay-ms", b"0")],
    )
    assert plain.flush(10) == 0
    wait_until(lambda: read_all(fresh.bootstrap, fresh.settings.rejected), 30, "a reject")
    (reject,) = read_all(fresh.bootstrap, fresh.settings.rejected)
    assert reject.header("scheduler-reject-reason") == "wrong_partition"
    assert "partitioner=murmur2_random" in reject.header("scheduler-reject-message")
    assert sample(instance, "kafka_scheduler_rejected_total", 'reason="wrong_partition"') == 1


def test_state_left_in_the_wrong_partition_moves_home_before_commands(stack: SchedulerStack) -> None:
    """State an older scheduler kept in the id's librdkafka-default partition: after the upgrade the producer's
    cancels (still landing there) are forwarded home, and so is the state, first."""
    fresh = SchedulerStack(
        stack.bootstrap, stack.scheduled_topic + "-l", stack.workdir, partitions=PARTITIONS
    )
    fresh.create()
    target = fresh.create_target(f"{fresh.scheduled_topic}-target", 3)
    kept, cancelled = misrouted_ids(2, PARTITIONS)
    due = int(time.time() * 1000) + 8000
    legacy = Producer({"bootstrap.servers": fresh.bootstrap})
    for offset, sid in enumerate((kept, cancelled)):
        record = encode_state(Schedule(sid, target, due, sid.encode(), created_ms=1), 1000 + offset)
        legacy.produce(fresh.settings.state, value=record, key=sid, partition=crc_partition(sid, PARTITIONS))
    plain = Producer({"bootstrap.servers": fresh.bootstrap})
    plain.produce(fresh.scheduled_topic, value=None, key=cancelled)  # waits while its partition rebuilds
    assert legacy.flush(10) == 0 and plain.flush(10) == 0
    instance = fresh.start_instance()
    stack.instances.append(instance)
    tail = Tail(fresh.bootstrap, target)
    tail.poll_until(lambda r: len(r) >= 1, 40, "the kept schedule")
    records = tail.poll_for(2)
    tail.close()
    assert Counter(r.header("scheduler-schedule-id") for r in records) == Counter({kept: 1})
    assert int(records[0].header("scheduler-fired-at")) >= due
    state = read_all(fresh.bootstrap, fresh.settings.state)
    last = {(r.partition, r.key): r.value for r in state}
    assert all(v is None for v in last.values()), f"state left pending: {last}"
    moved = [
        r for r in read_all(fresh.bootstrap, fresh.scheduled_topic) if r.header("scheduler-relocated-from")
    ]
    assert sorted(r.key for r in moved) == sorted([kept.encode(), cancelled.encode()])
    assert all(r.partition == partition_for(r.key or b"", PARTITIONS) for r in moved)
    assert sample(instance, "kafka_scheduler_commands_total", 'result="relocated"') == 2
