"""Regression: after a broker restart the rebuild's admin client kept failing with FENCED_LEADER_EPOCH.

Found by a chaos run with broker hard restarts: `committed offsets or state watermarks not available yet
(retrying): FENCED_LEADER_EPOCH` 60,000 times until the stall watchdog killed the instance (librdkafka's admin
client keeps the stale leader epoch). Partitions now replace their admin client on that error.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

from scheduler.metrics import SchedulerMetrics
from scheduler.service.partitions import Partitions, Phase
from scheduler.service.routing import Layout
from tests.unit.fake_kafka import FakeAdmin, FakeCluster, FakeConsumer


class StaleEpochAdmin:
    calls = 0

    def list_offsets(self, *_args: Any, **_kw: Any) -> Any:
        StaleEpochAdmin.calls += 1
        raise KafkaException(
            KafkaError(KafkaError.FENCED_LEADER_EPOCH, "Leader epoch is older than broker epoch")
        )


def test_rebuild_replaces_an_admin_client_stuck_on_a_stale_leader_epoch() -> None:
    cluster = FakeCluster({"scheduled": 1, "scheduled.state": 1})
    consumer = FakeConsumer(cluster, "i0")
    fresh: list[FakeAdmin] = []

    def factory() -> FakeAdmin:
        fresh.append(FakeAdmin(cluster))
        return fresh[-1]

    partitions = Partitions(
        consumer,  # type: ignore[arg-type]
        FakeConsumer(cluster),  # type: ignore[arg-type]
        StaleEpochAdmin(),  # type: ignore[arg-type]
        Layout("scheduled", "scheduled.state", 1),
        SchedulerMetrics(CollectorRegistry()),
        stall_timeout_s=1e9,
        admin_factory=factory,  # type: ignore[arg-type]
    )
    partitions.assign([TopicPartition("scheduled", 0)])
    partitions.step(0)
    assert partitions.owned[0].phase is Phase.OFFSETS and StaleEpochAdmin.calls == 1 and len(fresh) == 1
    partitions.step(0)
    assert partitions.owned[0].phase is Phase.SERVING  # the fresh client answered
