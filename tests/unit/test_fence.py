"""Fencing a departed owner: the pure decision (who to fence) and the checker's wiring over a fake admin."""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import IsolationLevel, KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

from scheduler.kafka.clients import consumer_config
from scheduler.metrics import SchedulerMetrics
from scheduler.service.fence import DepartedFencer, Member, live_transactional_ids, to_fence
from scheduler.service.unit import worker_settings
from scheduler.settings import ServiceSettings

G = "grp"
ME = "grp-a"
STATIC_B = Member("b", "grp-b")
DYNAMIC_C = Member(None, "grp-c")


@pytest.mark.parametrize(
    ("committers", "open_txn", "members", "expected"),
    [
        # the dead owner of partition 0 left the group with a transaction open: fenced
        ({0: "grp-dead"}, {0}, [Member("a", ME), STATIC_B], {"grp-dead"}),
        # ... once, whatever the number of its partitions
        ({0: "grp-dead", 1: "grp-dead"}, {0, 1}, [Member("a", ME)], {"grp-dead"}),
        # no open transaction on its state partition: nothing to abort, nothing to fence
        ({0: "grp-dead"}, set(), [Member("a", ME)], set()),
        # the previous owner is alive (a cooperative move): static by its instance id, dynamic by its client id
        ({0: "grp-b"}, {0}, [Member("a", ME), STATIC_B], set()),
        ({0: "grp-c"}, {0}, [Member("a", ME), DYNAMIC_C], set()),
        # this instance's own id (a restart fenced it already in init_transactions)
        ({0: ME}, {0}, [Member("a", ME)], set()),
        # one member that cannot be told (client.id set by hand, an older version): nobody is fenced
        ({0: "grp-dead"}, {0}, [Member("a", ME), Member(None, "billing")], set()),
        ({0: "grp-dead"}, {0}, [Member("a", ME), Member(None, None)], set()),
        # no metadata (committed by an older version, or never), or another group's id: nothing
        ({0: None, 1: "other-x"}, {0, 1}, [Member("a", ME)], set()),
        # only the partitions with an open transaction count
        ({0: "grp-x", 1: "grp-y"}, {1}, [Member("a", ME)], {"grp-y"}),
    ],
)
def test_who_is_fenced(
    committers: dict[int, str | None], open_txn: set[int], members: list[Member], expected: set[str]
) -> None:
    assert to_fence(committers, open_txn, members, G, ME) == expected


def test_a_static_member_is_told_by_its_instance_id_even_with_a_foreign_client_id() -> None:
    assert live_transactional_ids([Member("b", "billing"), DYNAMIC_C], G) == {"grp-b", "grp-c"}
    assert live_transactional_ids([Member(None, "rdkafka")], G) is None


def test_members_name_their_transactional_id_and_a_set_instance_id_makes_them_static() -> None:
    explicit = ServiceSettings(group_id="g", instance_id="slot-1")
    conf = consumer_config(explicit)
    assert conf["group.instance.id"] == "slot-1" and conf["client.id"] == "g-slot-1"
    worker = worker_settings(explicit, 1)
    assert consumer_config(worker)["group.instance.id"] == "slot-1-w1"
    assert "group.instance.id" not in consumer_config(ServiceSettings(group_id="g"))  # random id: dynamic
    assert "group.instance.id" not in consumer_config(worker_settings(ServiceSettings(group_id="g"), 1))
    off = ServiceSettings(group_id="g", instance_id="slot-1", static_membership="off")
    assert "group.instance.id" not in consumer_config(off)
    assert consumer_config(ServiceSettings(static_membership="on"))["group.instance.id"]


def test_the_static_setting_and_the_fence_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SCHEDULER_INSTANCE_ID", "slot-2")
    assert ServiceSettings().group_instance_id == "slot-2"
    monkeypatch.setenv("KAFKA_SCHEDULER_STATIC_MEMBERSHIP", "off")
    monkeypatch.setenv("KAFKA_SCHEDULER_FENCE_DEPARTED", "false")
    settings = ServiceSettings()
    assert settings.group_instance_id is None and settings.fence_departed is False


def done(value: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(value)
    return future


class FakeAdmin:
    """The three admin calls the fencer makes, answered from fixed tables."""

    def __init__(self, committers: dict[int, str], stable: dict[int, int], high: dict[int, int]) -> None:
        self.committers, self.stable, self.high = committers, stable, high
        self.members = [Member("a", ME)]
        self.fail: KafkaException | None = None
        self.pending: set[int] = set()  # partitions with a transactional offset commit pending

    def list_consumer_group_offsets(
        self, requests: list[Any], require_stable: bool, **_kw: Any
    ) -> dict[str, Future[Any]]:
        if self.fail is not None:
            raise self.fail
        if require_stable:
            unstable = KafkaError(KafkaError.UNSTABLE_OFFSET_COMMIT)
            pending = [
                TopicPartition("in", p, 5) if p not in self.pending else _errored(p, unstable)
                for p in (tp.partition for tp in requests[0].topic_partitions)
            ]
            return {G: done(SimpleNamespace(topic_partitions=pending))}
        parts = [
            TopicPartition("in", tp.partition, 5, self.committers.get(tp.partition, ""))
            for tp in requests[0].topic_partitions
        ]
        return {G: done(SimpleNamespace(topic_partitions=parts))}

    def list_offsets(
        self, spec: dict[TopicPartition, Any], isolation_level: Any, **_kw: Any
    ) -> dict[Any, Any]:
        ends = self.stable if isolation_level == IsolationLevel.READ_COMMITTED else self.high
        return {tp: done(SimpleNamespace(offset=ends[tp.partition])) for tp in spec}

    def describe_consumer_groups(self, groups: list[str], **_kw: Any) -> dict[str, Future[Any]]:
        members = [
            SimpleNamespace(group_instance_id=m.group_instance_id, client_id=m.client_id)
            for m in self.members
        ]
        return {G: done(SimpleNamespace(members=members))}


def _errored(partition: int, error: KafkaError) -> Any:
    return SimpleNamespace(partition=partition, offset=-1001, metadata=None, error=error)


class FakeFencingProducer:
    def __init__(self, made: list[str], transactional_id: str, error: KafkaException | None) -> None:
        made.append(transactional_id)
        self._error = error

    def init_transactions(self, _timeout: float) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        pass


def fencer(
    admin: FakeAdmin, made: list[str], error: KafkaException | None = None
) -> tuple[DepartedFencer, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = SchedulerMetrics(registry)
    made_fencer = DepartedFencer(
        ("in", "in.state"),
        G,
        ME,
        lambda: admin,  # type: ignore[arg-type,return-value]
        lambda tid: FakeFencingProducer(made, tid, error),  # type: ignore[arg-type,return-value]
        metrics,
    )
    return made_fencer, registry


def test_the_checker_fences_the_departed_owner_of_an_open_state_partition_once() -> None:
    admin = FakeAdmin({0: "grp-dead", 1: "grp-dead", 2: "grp-live"}, {0: 3, 1: 7, 2: 1}, {0: 9, 1: 7, 2: 4})
    admin.members.append(Member("live", "x"))
    made: list[str] = []
    check, registry = fencer(admin, made)
    assert check.check([0, 1, 2]) == {"grp-dead"}
    assert made == ["grp-dead"]
    assert registry.get_sample_value("kafka_scheduler_fenced_departed_total") == 1


def test_the_checkers_errors_are_logged_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    admin = FakeAdmin({0: "grp-dead"}, {0: 3}, {0: 9})
    made: list[str] = []
    check, registry = fencer(admin, made, KafkaException(KafkaError(KafkaError._TIMED_OUT)))
    assert check.check([0]) == set() and made == ["grp-dead"]  # init_transactions failed: logged
    admin.fail = KafkaException(KafkaError(KafkaError._TRANSPORT))
    assert check.check([0]) == set()
    assert registry.get_sample_value("kafka_scheduler_fenced_departed_total") == 0
    assert "fencing departed owner grp-dead" in caplog.text and "departed owner to fence" in caplog.text


def test_pending_offsets_count_as_an_open_transaction_when_its_state_records_never_arrived() -> None:
    """Killed after send_offsets with its records still in its own buffer: the state partition looks closed, but
    the committed offset is unstable and pins the rebuild's committed() until the transaction times out."""
    admin = FakeAdmin({0: "grp-dead", 1: "grp-other"}, {0: 5, 1: 5}, {0: 5, 1: 5})
    made: list[str] = []
    check, _registry = fencer(admin, made)
    assert check.check([0, 1]) == set()  # nothing open anywhere
    admin.pending = {0}
    assert check.check([0, 1]) == {"grp-dead"} and made == ["grp-dead"]
