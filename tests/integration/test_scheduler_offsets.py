"""Regression: commands with no effect (a cancel of nothing) still move the group's committed offsets."""

from __future__ import annotations

from confluent_kafka import ConsumerGroupTopicPartitions, Producer

from tests.conftest import wait_until
from tests.scheduler_proc import SchedulerStack


def test_cancels_of_nothing_commit_their_offsets(scheduler_stack: SchedulerStack) -> None:
    # Found by the chaos checker: a tick whose plan was empty ran no transaction, so the offsets of no-op
    # cancels were never committed; the group's lag never reached 0 and every restart re-read them.
    topic = scheduler_stack.scheduled_topic
    producer = Producer({"bootstrap.servers": scheduler_stack.bootstrap, "enable.idempotence": True})
    for i in range(9):
        producer.produce(topic, None, f"nothing-{i}".encode(), partition=i % scheduler_stack.partitions)
    assert producer.flush(30) == 0
    admin = scheduler_stack.admin()

    def at_end() -> bool:
        request = [ConsumerGroupTopicPartitions(scheduler_stack.group)]
        result = admin.list_consumer_group_offsets(request)[scheduler_stack.group].result(timeout=10)
        committed = {tp.partition: tp.offset for tp in result.topic_partitions if tp.topic == topic}
        return all(committed.get(p) == 3 for p in range(scheduler_stack.partitions))

    wait_until(at_end, 30, "committed offsets at the end of every partition")
    assert scheduler_stack.instances[0].metric("kafka_scheduler_commands_total") >= 9
