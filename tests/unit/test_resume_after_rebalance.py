"""A partition rebuilt while the group rebalances cannot be sought yet: it waits and resumes, never exits."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

from scheduler.codec import encode_state
from scheduler.metrics import SchedulerMetrics
from scheduler.model import Schedule
from scheduler.service.partitions import Partitions, Phase
from scheduler.service.routing import Layout
from tests.unit.fake_kafka import FakeAdmin, FakeCluster, FakeConsumer


class Rebalancing(FakeConsumer):
    """librdkafka refuses a seek while the partition is being revoked: ERR__STATE, for a while."""

    refusals = 2

    def seek(self, tp: TopicPartition) -> None:
        if self.refusals:
            self.refusals -= 1
            raise KafkaException(KafkaError(KafkaError._STATE, "Failed to seek to offset 0: Erroneous state"))
        super().seek(tp)


def test_a_refused_seek_retries_at_the_next_step_instead_of_ending_the_process() -> None:
    cluster = FakeCluster({"scheduled": 1, "scheduled.state": 1})
    cluster.append("scheduled.state", 0, b"a", encode_state(Schedule("a", "t", 1, b"x"), 0))
    consumer = Rebalancing(cluster, "i0")
    partitions = Partitions(
        consumer,  # type: ignore[arg-type]
        FakeConsumer(cluster),  # type: ignore[arg-type]
        FakeAdmin(cluster),  # type: ignore[arg-type]
        Layout("scheduled", "scheduled.state", 1),
        SchedulerMetrics(CollectorRegistry()),
        stall_timeout_s=1e9,
    )
    consumer.incremental_assign([TopicPartition("scheduled", 0)])
    partitions.assign([TopicPartition("scheduled", 0)])
    partitions.step(0)  # offsets, the replay reaches the watermark: the seek is refused, and again at once
    assert partitions.owned[0].phase is Phase.RESUMING and partitions.serving() == {}
    partitions.step(0)
    assert partitions.owned[0].phase is Phase.SERVING and len(partitions.owned[0].index) == 1
