"""Start-up (issue 15: a restart serves within 2 s): the checks are fewer round trips but find and report every
problem as before, in the same order; nothing on the way to SERVING waits out a fixed timeout."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import ConfigResource
from prometheus_client import CollectorRegistry

from scheduler.codec import encode_state
from scheduler.errors import KafkaFatalError, TopicConfigError
from scheduler.kafka.txn import INIT_STEP_S, TransactionRunner
from scheduler.metrics import SchedulerMetrics
from scheduler.model import Schedule
from scheduler.service.loop import JOINING_WAIT_S, SchedulerLoop
from scheduler.service.partitions import Partitions, Phase
from scheduler.service.routing import Layout
from scheduler.settings import ServiceSettings
from scheduler.topics import STATE_CONFIG, check_topics, require_valid, verify_topics
from tests.unit.fake_kafka import FakeAdmin, FakeCluster, FakeConsumer, FakeProducer, FakeTargets

# --- topic checks -------------------------------------------------------------------------------------------


@dataclass
class _Entry:
    value: str


@dataclass
class _Partition:
    replicas: list[int]


@dataclass
class _Description:
    partitions: list[_Partition]


@dataclass
class _Cluster:
    nodes: list[object]


def _done(value: Any = None, error: KafkaError | None = None) -> Future[Any]:
    future: Future[Any] = Future()
    if error is not None:
        future.set_exception(KafkaException(error))
    else:
        future.set_result(value)
    return future


class TopicsAdmin:
    """DescribeTopics, DescribeCluster and DescribeConfigs over a dict of topics: name -> (partitions, config)."""

    def __init__(self, topics: dict[str, tuple[int, dict[str, str]]]) -> None:
        self.topics = topics
        self.described: list[list[str]] = []  # the topics of each DescribeConfigs request
        self.described_topics: list[list[str]] = []  # and of each DescribeTopics request

    def list_topics(self, *_args: Any, **_kw: Any) -> None:
        raise AssertionError("the checks ask for the scheduler's topics only, never the cluster's metadata")

    def describe_topics(self, topics: Any, request_timeout: float = -1) -> dict[str, Future[Any]]:
        names = list(topics.topic_names)
        self.described_topics.append(names)
        unknown = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
        return {
            n: _done(_Description([_Partition([1])] * self.topics[n][0]))
            if n in self.topics
            else _done(error=unknown)
            for n in names
        }

    def describe_cluster(self, request_timeout: float = -1) -> Future[Any]:
        return _done(_Cluster([object()]))

    def describe_configs(self, resources: list[ConfigResource]) -> dict[ConfigResource, Future[Any]]:
        self.described.append([r.name for r in resources])
        unknown = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
        return {
            r: _done({k: _Entry(v) for k, v in self.topics[r.name][1].items()})
            if r.name in self.topics
            else _done(error=unknown)
            for r in resources
        }


def _settings(**kw: Any) -> ServiceSettings:
    return ServiceSettings(scheduled_topic="s", http_port=None, **kw)


def _healthy(history: dict[str, str] | None = None) -> dict[str, tuple[int, dict[str, str]]]:
    topics = {
        "s": (3, {"cleanup.policy": "delete", "retention.ms": str(7 * 86_400_000)}),
        "s.state": (3, dict(STATE_CONFIG)),
        "s.rejected": (3, {}),
        "s.dlt": (3, {}),
    }
    if history is not None:
        topics["s.history"] = (3, history)
    return topics


def test_every_problem_is_found_with_one_describe_request_and_reported_in_a_stable_order() -> None:
    topics = _healthy(history={"cleanup.policy": "compact"})
    topics["s"] = (3, {"cleanup.policy": "delete", "retention.ms": "3600000"})  # a warning: 1 h
    topics["s.state"] = (
        3,
        {
            **STATE_CONFIG,
            "cleanup.policy": "compact,delete",
            "delete.retention.ms": "60000",
            "segment.ms": "1e12",
        },
    )
    admin = TopicsAdmin(topics)
    settings = _settings(history_topic="s.history")
    found = [(p.topic, p.problem.split(":")[0], p.fatal) for p in verify_topics(admin, settings)]  # type: ignore[arg-type]
    assert found == [
        ("s.state", "has cleanup.policy=compact,delete", True),
        ("s.state", "has delete.retention.ms=60000", True),
        ("s.state", "has segment.ms=1e12", False),
        ("s", "has retention.ms=3600000 (1.0 h)", False),
        ("s", "replication factor 1 < 3 (a single-node development broker)", False),
        ("s.state", "replication factor 1 < 3 (a single-node development broker)", False),
        ("s.history", "has cleanup.policy=compact", False),
    ]
    assert admin.described == [["s.state", "s", "s.history"]]  # one request each
    assert admin.described_topics == [sorted(settings.own_topics)]
    with pytest.raises(TopicConfigError) as refused:
        require_valid(admin, settings)  # type: ignore[arg-type]
    lines = str(refused.value).splitlines()
    assert lines[0] == "refusing to run:" and len(lines) == 3
    assert "cleanup.policy=compact,delete" in lines[1] and "delete.retention.ms=60000" in lines[2]


def test_missing_topics_are_reported_though_their_configs_were_asked_for_before_knowing() -> None:
    topics = _healthy()
    del topics["s.state"], topics["s.dlt"]
    problems = verify_topics(TopicsAdmin(topics), _settings())  # type: ignore[arg-type]
    assert [(p.topic, p.problem, p.fatal) for p in problems] == [
        ("s.dlt", "topic does not exist", True),
        ("s.state", "topic does not exist", True),
    ]


def test_the_checks_give_the_partition_count_ids_are_routed_by() -> None:
    check = require_valid(TopicsAdmin(_healthy()), _settings())  # type: ignore[arg-type]
    assert check.partitions == 3 and all(not p.fatal for p in check.problems)
    assert check_topics(TopicsAdmin(_healthy()), _settings()).partitions == 3  # type: ignore[arg-type]


# --- init_transactions ---------------------------------------------------------------------------------------


class SlowInitProducer:
    """init_transactions times out `timeouts` times (librdkafka's 500 ms retry timer), then succeeds."""

    def __init__(self, timeouts: int, error: KafkaError | None = None) -> None:
        self.timeouts, self.error = timeouts, error
        self.calls: list[float] = []

    def init_transactions(self, timeout: float) -> None:
        self.calls.append(timeout)
        if self.error is not None:
            raise KafkaException(self.error)
        if len(self.calls) <= self.timeouts:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "init timed out", retriable=True))


def test_init_asks_again_in_short_steps_instead_of_waiting_out_librdkafkas_retry_timer() -> None:
    producer = SlowInitProducer(timeouts=3)
    TransactionRunner(producer, object(), timeout_s=30).init()  # type: ignore[arg-type]
    assert len(producer.calls) == 4 and all(t <= INIT_STEP_S for t in producer.calls)


def test_init_still_fails_closed_on_a_fatal_error() -> None:
    producer = SlowInitProducer(0, KafkaError(KafkaError._FENCED, "fenced", fatal=True))
    with pytest.raises(KafkaFatalError, match="init_transactions: fatal"):
        TransactionRunner(producer, object(), timeout_s=30).init()  # type: ignore[arg-type]


def test_init_falls_back_to_one_patient_call_when_the_coordinator_is_slow() -> None:
    producer = SlowInitProducer(timeouts=10_000)
    with pytest.raises(KafkaFatalError, match="did not complete"):
        TransactionRunner(producer, object(), timeout_s=7, retries=2).init()  # type: ignore[arg-type]
    assert producer.calls[-2:] == [7, 7] and all(t <= INIT_STEP_S for t in producer.calls[:-2])


# --- no fixed waits on the way to SERVING ----------------------------------------------------------------------


class RecordingConsumer(FakeConsumer):
    """Records the timeout of every consume() and poll()."""

    def __init__(self, cluster: FakeCluster, name: str | None = None) -> None:
        super().__init__(cluster, name)
        self.waits: list[tuple[str, float]] = []

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        self.waits.append(("consume", timeout))
        return super().consume(num_messages, timeout)

    def poll(self, timeout: float = -1) -> Any:
        self.waits.append(("poll", timeout))
        out = FakeConsumer.consume(self, 1, timeout)
        return out[0] if out else None


def _partitions(cluster: FakeCluster, consumer: FakeConsumer, reader: FakeConsumer) -> Partitions:
    return Partitions(
        consumer,  # type: ignore[arg-type]
        reader,  # type: ignore[arg-type]
        FakeAdmin(cluster),  # type: ignore[arg-type]
        Layout("scheduled", "scheduled.state", 1),
        SchedulerMetrics(CollectorRegistry()),
        stall_timeout_s=1e9,
    )


def _put_state(cluster: FakeCluster, n: int) -> None:
    for i in range(n):
        s = Schedule(id=f"id{i}", target_topic="t", due_ms=10**13, payload=b"x")
        cluster.append("scheduled.state", 0, s.id.encode(), encode_state(s, 1), status="committed")


def test_the_replay_takes_what_has_arrived_instead_of_waiting_for_a_full_batch() -> None:
    cluster = FakeCluster({"scheduled": 1, "scheduled.state": 1})
    _put_state(cluster, 5)  # far fewer than a batch
    reader = RecordingConsumer(cluster)
    partitions = _partitions(cluster, FakeConsumer(cluster, "i0"), reader)
    partitions.assign([TopicPartition("scheduled", 0)])
    partitions.step(0.05)
    assert partitions.owned[0].phase is Phase.SERVING
    assert reader.waits and all(t == 0 for kind, t in reader.waits if kind == "consume")


def test_the_first_assignment_is_taken_within_a_short_wait_not_a_max_wait_tick() -> None:
    cluster = FakeCluster({"scheduled": 1, "scheduled.state": 1})
    consumer = RecordingConsumer(cluster, "i0")  # the assignment comes with its first consume()
    partitions = _partitions(cluster, consumer, FakeConsumer(cluster))
    settings = ServiceSettings(scheduled_topic="scheduled", instance_id="i0", http_port=None, max_wait_ms=200)
    txn = TransactionRunner(FakeProducer(cluster, settings.transactional_id), consumer)  # type: ignore[arg-type]
    loop = SchedulerLoop(
        settings,
        (consumer, txn, partitions, FakeTargets({"t"})),  # type: ignore[arg-type]
        SchedulerMetrics(CollectorRegistry()),
    )
    stop = threading.Event()
    stop.set()
    loop.run(stop)  # subscribe and init, no tick
    cluster.rebalance({consumer.member: [0]}, "scheduled")
    loop.tick_once()  # not joined yet: the assignment comes in this consume, and its rebuild (of nothing)
    loop.tick_once()
    loop.tick_once()  # serving, nothing due: the ordinary wait
    waits = [t for kind, t in consumer.waits if kind == "consume"]
    assert waits[0] <= JOINING_WAIT_S and partitions.joined
    assert partitions.owned[0].phase is Phase.SERVING and waits[-1] == pytest.approx(0.2)
