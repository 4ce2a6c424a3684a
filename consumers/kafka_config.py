"""librdkafka configuration of every client the framework creates, the forced settings, and the start-up probe.

defaults < user (`kafka` for every client, then `consumer` or `producer`) < forced; a user value contradicting a
forced one is a `ConfigError`, and so is a property librdkafka does not know. librdkafka's own log lines go through
Python logging (`scheduler.kafka.clients.LIBRDKAFKA_LOG`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from consumers.settings import ConsumerSettings
from scheduler.config import merge_config
from scheduler.errors import ConfigError, KafkaFatalError
from scheduler.kafka.clients import LIBRDKAFKA_LOG, kafka_error

__all__ = [
    "CONNECT_TIMEOUT_S",
    "CONSUMER_FORCED",
    "PRODUCER_FORCED",
    "build",
    "connect_admin",
    "consumer_config",
    "producer_config",
    "reader_config",
    "scheduler_client_config",
]

# Correctness-critical: manual commits (the offset tracker decides), range assignment (co-partitioning of a
# source topic with its retry topic, docs/consumers.md), read_committed (the scheduler fires in transactions).
CONSUMER_FORCED: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "partition.assignment.strategy": "range",
    "isolation.level": "read_committed",
}
PRODUCER_FORCED: dict[str, Any] = {"acks": "all", "enable.idempotence": True, "partitioner": "murmur2_random"}
FORCED_REASONS: dict[str, str] = {
    "enable.auto.commit": "offsets are committed only up to the lowest unfinished record",
    "enable.auto.offset.store": "offsets are committed only up to the lowest unfinished record",
    "partition.assignment.strategy": "partition p of a topic and of its retry topic must go to the same member",
    "isolation.level": "handlers must never see the records of aborted transactions",
    "acks": "a dead letter or blocked-key marker acknowledged by one replica can be lost with it",
    "enable.idempotence": "retried writes must not duplicate or reorder dead letters and markers",
    "partitioner": "a done report must land in its schedule id's partition of `scheduled`, as the scheduler "
    "client's commands do",
}
# A member that died without leaving holds its partitions for session.timeout.ms: 10 s, not librdkafka's 45 s.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "statistics.interval.ms": 5000,
    "session.timeout.ms": 10_000,
}
PRODUCER_DEFAULTS: dict[str, Any] = {"linger.ms": 5}
CONNECT_TIMEOUT_S = 10.0
SOURCES = "ConsumerSettings.kafka/.consumer/.producer, KAFKA_SCHEDULER_KAFKA__*, or -X"

T = TypeVar("T")


def _base(settings: ConsumerSettings) -> dict[str, Any]:
    conf: dict[str, Any] = {"bootstrap.servers": settings.bootstrap_servers, **settings.kafka}
    if settings.sasl_password is not None:
        conf["sasl.password"] = settings.sasl_password.get_secret_value()
    return conf


def consumer_config(settings: ConsumerSettings, group: str) -> dict[str, Any]:
    user = {**_base(settings), "group.id": group, **settings.consumer}
    return {**merge_config(CONSUMER_DEFAULTS, user, CONSUMER_FORCED, FORCED_REASONS), **LIBRDKAFKA_LOG}


def producer_config(settings: ConsumerSettings) -> dict[str, Any]:
    user = {**_base(settings), **settings.producer}
    return {**merge_config(PRODUCER_DEFAULTS, user, PRODUCER_FORCED, FORCED_REASONS), **LIBRDKAFKA_LOG}


def reader_config(settings: ConsumerSettings) -> dict[str, Any]:
    """The blocked-marker reader: by assignment, never commits, no group membership."""
    forced = {"group.id": "kafka-scheduler-marker-reader", "enable.auto.commit": False}
    return {**_base(settings), **settings.consumer, **forced, **LIBRDKAFKA_LOG}


def scheduler_client_config(settings: ConsumerSettings) -> dict[str, Any]:
    """Extra librdkafka settings of the SchedulerClient that schedules retries (it forces its own on top)."""
    return {**_base(settings), **settings.producer, **LIBRDKAFKA_LOG}


def build(factory: Callable[[dict[str, Any]], T], conf: dict[str, Any]) -> T:
    """Create a client; a property librdkafka refuses becomes one `ConfigError` line naming where to fix it."""
    try:
        return factory(conf)
    except KafkaException as exc:
        err = kafka_error(exc)
        text = err.str() if err is not None else str(exc)
        raise ConfigError(f"librdkafka refused the configuration: {text} (check {SOURCES})") from None


def connect_admin(settings: ConsumerSettings, timeout_s: float = CONNECT_TIMEOUT_S) -> AdminClient:
    """An admin client that has reached the cluster, or one `KafkaFatalError` line naming the address.

    Its own log lines are off: while the brokers cannot be reached librdkafka would log every reconnect; the
    errors it reports are collected and the last one ends the message.
    """
    errors: list[KafkaError] = []
    conf = {**_base(settings), "log_level": 0, "error_cb": errors.append}
    admin = build(AdminClient, conf)
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        deadline = time.monotonic() + 2.0
        while not errors and time.monotonic() < deadline:
            admin.poll(0.1)  # error_cb runs only when the client is polled
        cause = errors[-1].str() if errors else str(kafka_error(exc) or exc)
        raise KafkaFatalError(
            f"cannot reach the Kafka brokers at {settings.bootstrap_servers} within {timeout_s:g}s ({cause}); "
            "check -b/--bootstrap-servers or KAFKA_SCHEDULER_BOOTSTRAP_SERVERS and the security settings"
        ) from None
    return admin


def new_consumer(settings: ConsumerSettings, group: str, stats: Callable[[str], None] | None) -> Consumer:
    conf = consumer_config(settings, group)
    if stats is not None:
        conf["stats_cb"] = stats
    return build(Consumer, conf)


def new_producer(settings: ConsumerSettings) -> Producer:
    return build(Producer, producer_config(settings))
