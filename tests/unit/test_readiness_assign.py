"""Regression: /readyz said ready while an instance was taking partitions it had not rebuilt.

Found by the libfaketime clock-skew test: `assign()` set `joined` before it filled `owned`, and "joined, every
owned partition rebuilt" is true for an empty `owned`; an instance that never served a partition passed
`wait_ready()`.
"""

from __future__ import annotations

from confluent_kafka import TopicPartition
from prometheus_client import CollectorRegistry

from scheduler.metrics import SchedulerMetrics
from scheduler.service.partitions import Partitions, Phase
from scheduler.service.routing import Layout
from tests.unit.fake_kafka import FakeAdmin, FakeCluster, FakeConsumer


class ReadinessProbe(FakeConsumer):
    """Evaluates /readyz's two partition checks in the middle of `assign`, as the HTTP thread could."""

    partitions: Partitions | None = None
    seen: list[bool] = []

    def _ready(self) -> None:
        p = self.partitions
        assert p is not None
        self.seen.append(p.joined and all(o.phase is Phase.SERVING for o in list(p.owned.values())))

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        self._ready()
        super().incremental_assign(partitions)

    def pause(self, partitions: list[TopicPartition]) -> None:
        self._ready()
        super().pause(partitions)


def test_an_instance_is_never_ready_while_it_takes_partitions_it_has_not_rebuilt() -> None:
    cluster = FakeCluster({"scheduled": 1, "scheduled.state": 1})
    consumer = ReadinessProbe(cluster, "i0")
    partitions = Partitions(
        consumer,  # type: ignore[arg-type]
        FakeConsumer(cluster),  # type: ignore[arg-type]
        FakeAdmin(cluster),  # type: ignore[arg-type]
        Layout("scheduled", "scheduled.state", 1),
        SchedulerMetrics(CollectorRegistry()),
        stall_timeout_s=1e9,
    )
    consumer.partitions = partitions
    partitions.assign([TopicPartition("scheduled", 0)])
    assert consumer.seen == [False, False]
    assert partitions.joined and partitions.owned[0].phase is not Phase.SERVING
