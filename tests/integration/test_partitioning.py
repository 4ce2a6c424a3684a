"""Fires, dead letters and rejects land in the partition the Java client's default partitioner gives their keys.

The expected partitions come from Java's outputs, not from our murmur2: Kafka's UtilsTest vectors give
Utils.murmur2(key) for these keys, and the Java default partitioner puts a keyed record in
toPositive(murmur2(key)) % partitions (toPositive = & 0x7fffffff). librdkafka's own default (consistent_random,
CRC32) puts most of them elsewhere.
"""

from __future__ import annotations

from datetime import timedelta

from confluent_kafka import Producer

from scheduler.client import SchedulerClient
from tests.conftest import wait_until
from tests.integration.scheduler_helpers import Tail, read_all
from tests.scheduler_proc import SchedulerStack

# apache/kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java::testMurmur2
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def java_partition(key: bytes, partitions: int) -> int:
    return (JAVA_MURMUR2[key] & 0x7FFFFFFF) % partitions


def test_fires_go_where_java_puts_their_keys(scheduler_stack: SchedulerStack) -> None:
    target = scheduler_stack.create_target(f"{scheduler_stack.scheduled_topic}-six", partitions=6)
    tail = Tail(scheduler_stack.bootstrap, target)
    with SchedulerClient(settings=scheduler_stack.client_settings) as client:
        for key in JAVA_MURMUR2:
            client.schedule(f"fire-{key.decode()}", topic=target, key=key, value=b"v", delay=timedelta(0))
    fired = tail.poll_until(lambda r: len(r) >= len(JAVA_MURMUR2), 30, "every schedule fires")
    tail.close()
    assert {r.key: r.partition for r in fired} == {k: java_partition(k, 6) for k in JAVA_MURMUR2}


def test_dead_letters_and_rejects_go_where_java_puts_their_keys(scheduler_stack: SchedulerStack) -> None:
    dlt, rejected = scheduler_stack.settings.dlt, scheduler_stack.settings.rejected
    doomed = scheduler_stack.create_target(f"{scheduler_stack.scheduled_topic}-doomed")
    with SchedulerClient(settings=scheduler_stack.client_settings) as client:
        for key in JAVA_MURMUR2:  # a dead letter's key is the schedule's target key
            client.schedule(
                f"dead-{key.decode()}", topic=doomed, key=key, value=b"v", delay=timedelta(seconds=8)
            )
    instance = scheduler_stack.instances[0]
    wait_until(
        lambda: instance.metric("kafka_scheduler_commands_total") >= len(JAVA_MURMUR2),
        30,
        "schedules accepted",
    )
    scheduler_stack.admin().delete_topics([doomed])[doomed].result(timeout=30)

    producer = Producer({"bootstrap.servers": scheduler_stack.bootstrap})
    missing = f"{scheduler_stack.scheduled_topic}-missing".encode()
    for key in JAVA_MURMUR2:  # a reject's key is the command's key, the schedule id
        producer.produce(
            scheduler_stack.scheduled_topic,
            b"v",
            key,
            partition=0,  # wherever the command came from, its reject is keyed and partitioned by its id
            headers=[("scheduler-target-topic", missing), ("scheduler-delay-ms", b"0")],
        )
    assert producer.flush(30) == 0

    dlt_tail, reject_tail = Tail(scheduler_stack.bootstrap, dlt), Tail(scheduler_stack.bootstrap, rejected)
    dead = dlt_tail.poll_until(lambda r: len(r) >= len(JAVA_MURMUR2), 60, "every schedule dead-lettered")
    refused = reject_tail.poll_until(lambda r: len(r) >= len(JAVA_MURMUR2), 30, "every command rejected")
    dlt_tail.close()
    reject_tail.close()
    expected = {k: java_partition(k, 3) for k in JAVA_MURMUR2}
    assert {r.key: r.partition for r in dead} == expected
    assert {r.key: r.partition for r in refused} == expected
    assert len(read_all(scheduler_stack.bootstrap, dlt)) == len(JAVA_MURMUR2)
