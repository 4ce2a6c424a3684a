"""Session-scoped real broker plus factories for fresh topic, group and transactional ids."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from scheduler.dev.broker import BrokerHandle
from tests.kafka_fixtures import kafka_broker
from tests.scheduler_proc import SchedulerStack

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BROKER_DIRS = ("integration", "chaos")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(part in BROKER_DIRS for part in Path(str(item.fspath)).parts):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real Apache Kafka broker; under CI=true failing to get one fails the test, never skips it."""
    try:
        with kafka_broker() as bootstrap:
            yield bootstrap
            return
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"no Kafka broker for integration tests (CI must not skip): {exc}", pytrace=False)
        pytest.skip(f"no Kafka broker available: {exc}")


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Fresh names per test, so tests never see each other's topics, groups or transactional ids."""

    def make(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    return make


@pytest.fixture
def create_topic(kafka_bootstrap: str) -> Callable[..., str]:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})

    def create(name: str, partitions: int = 1, config: dict[str, str] | None = None) -> str:
        futures = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])
        futures[name].result(timeout=30)
        wait_until(lambda: name in admin.list_topics(timeout=5).topics, 30, f"topic {name} visible")
        return name

    return create


def wait_until(check: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    """Every wait has a deadline: poll `check` until truthy or fail naming what never happened."""
    end = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s}s waiting for: {what}")
        time.sleep(interval_s)


@pytest.fixture
def scheduler_stack(
    kafka_bootstrap: str, unique: Callable[[str], str], tmp_path: Path
) -> Iterator[SchedulerStack]:
    """Fresh scheduler topics (3 partitions) and one running `kafka-scheduler run` process, ready."""
    stack = SchedulerStack(kafka_bootstrap, unique("scheduled"), tmp_path).create()
    stack.start_instance()
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture
def scheduler_topics(
    kafka_bootstrap: str, unique: Callable[[str], str], tmp_path: Path
) -> Iterator[SchedulerStack]:
    """Fresh scheduler topics with no instance started: the test starts (and kills) its own."""
    stack = SchedulerStack(kafka_bootstrap, unique("scheduled"), tmp_path).create()
    try:
        yield stack
    finally:
        stack.close()


@contextmanager
def own_broker(what: str, **options: Any) -> Iterator[BrokerHandle]:
    """A broker of the test's own (never the shared one): started, yielded, stopped and its data removed."""
    from scheduler.dev import broker

    try:
        handle = broker.start(**options)
    except Exception as exc:  # no Java, jars or openssl on this machine
        if IN_CI:
            pytest.fail(f"no {what} (CI must not skip): {exc}", pytrace=False)
        pytest.skip(f"no {what}: {exc}")
    try:
        yield handle
    finally:
        broker.stop(handle)
        shutil.rmtree(handle.run_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def secure_broker() -> Iterator[BrokerHandle]:
    """A private broker with SASL_PLAINTEXT (SCRAM user `scheduler`) and SSL listeners, stopped after the module."""
    with own_broker("local secured broker", sasl=True, ssl=True) as handle:
        yield handle


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[BrokerHandle]:
    """A plain broker of this test's own, which the test may stop (the shared one must never stop)."""
    with own_broker("private broker", run_dir=tmp_path / "broker") as handle:
        yield handle


SecureStack = Callable[[str, dict[str, str]], tuple[SchedulerStack, str]]


@pytest.fixture
def secure_stack(unique: Callable[[str], str], tmp_path: Path) -> Iterator[SecureStack]:
    """Factory: fresh scheduler topics and a target (2 partitions each) created through a secured listener."""
    from confluent_kafka.admin import AdminClient

    from scheduler.settings import ServiceSettings
    from scheduler.topics import create_topics

    stacks: list[SchedulerStack] = []

    def make(bootstrap: str, conf: dict[str, str]) -> tuple[SchedulerStack, str]:
        scheduled = unique("secure")
        admin = AdminClient({"bootstrap.servers": bootstrap, **conf})
        create_topics(admin, ServiceSettings(bootstrap_servers=bootstrap, scheduled_topic=scheduled), 2, 1)
        stack = SchedulerStack(bootstrap, scheduled, tmp_path, partitions=2, _admin=admin)
        stacks.append(stack)
        return stack, stack.create_target(f"{scheduled}-target", 2)

    try:
        yield make
    finally:
        for stack in stacks:
            stack.close()


ReadCommitted = Callable[[str, str, dict[str, str]], list[bytes | None]]


@pytest.fixture
def read_committed() -> ReadCommitted:
    """(bootstrap, topic, client conf) -> the values of the first records visible read_committed, within 40 s."""
    from confluent_kafka import Consumer, TopicPartition

    def read(bootstrap: str, topic: str, conf: dict[str, str]) -> list[bytes | None]:
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"reader-{uuid.uuid4().hex[:6]}",
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                **conf,
            }
        )
        out: list[bytes | None] = []
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            consumer.assign([TopicPartition(topic, p) for p in partitions])
            deadline = time.monotonic() + 40
            while not out and time.monotonic() < deadline:
                out += [m.value() for m in consumer.consume(10, 0.5) if m.error() is None]
            return out
        finally:
            consumer.close()

    return read
