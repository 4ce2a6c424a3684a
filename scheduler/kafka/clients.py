"""Builds the service's Kafka clients; the correctness-critical settings are forced here and only here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from scheduler.config import merge_config
from scheduler.logs import LIBRDKAFKA_LOG
from scheduler.settings import ServiceSettings

__all__ = [
    "build_admin",
    "build_consumer",
    "build_producer",
    "build_state_reader",
    "consumer_config",
    "consumer_forced",
    "kafka_error",
    "producer_config",
    "producer_forced",
]

CONSUMER_DEFAULTS: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "fetch.wait.max.ms": 10,
    "socket.nagle.disable": True,
    **LIBRDKAFKA_LOG,
}
PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 1,
    "compression.type": "lz4",
    "socket.nagle.disable": True,
    **LIBRDKAFKA_LOG,
}


def kafka_error(exc: KafkaException) -> KafkaError | None:
    """The KafkaError a KafkaException carries, if any."""
    return exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None


def consumer_forced(settings: ServiceSettings) -> dict[str, Any]:
    """Intake is read_committed, offsets move only inside transactions, partitions move cooperatively."""
    return {
        "group.id": settings.group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "partition.assignment.strategy": "cooperative-sticky",
        "allow.auto.create.topics": False,
    }


def producer_forced(settings: ServiceSettings) -> dict[str, Any]:
    """Fires, state writes and input offsets commit together: one transactional, idempotent producer."""
    return {
        "transactional.id": settings.transactional_id,
        "enable.idempotence": True,
        "acks": "all",
        "allow.auto.create.topics": False,  # a fire to a deleted target must fail, not re-create it
    }


def consumer_config(settings: ServiceSettings) -> dict[str, Any]:
    defaults = {**CONSUMER_DEFAULTS, "session.timeout.ms": settings.session_timeout_ms}
    user = {**settings.base_kafka(), **settings.consumer}
    return merge_config(defaults, user, consumer_forced(settings))


def build_consumer(settings: ServiceSettings) -> Consumer:
    return Consumer(consumer_config(settings))


def build_state_reader(settings: ServiceSettings) -> Consumer:
    """Replays the state topic by assignment (no group membership, never commits)."""
    forced = {
        "group.id": f"{settings.group_id}.state-reader",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    }
    user = {**settings.base_kafka(), **settings.consumer}
    defaults = {**CONSUMER_DEFAULTS, "fetch.wait.max.ms": 50, "queued.max.messages.kbytes": 262144}
    return Consumer(merge_config(defaults, user, forced))


def producer_config(settings: ServiceSettings) -> dict[str, Any]:
    defaults = {
        **PRODUCER_DEFAULTS,
        "transaction.timeout.ms": settings.transaction_timeout_ms,
        # A record that cannot be delivered must fail (and the transaction abort cleanly) well before the
        # coordinator times the transaction out and fences this producer.
        "message.timeout.ms": settings.transaction_timeout_ms // 2,  # >= 500: the setting is >= 1000
    }
    user = {**settings.base_kafka(), **settings.producer}
    return merge_config(defaults, user, producer_forced(settings))


def build_producer(settings: ServiceSettings) -> Producer:
    return Producer(producer_config(settings))


def build_admin(
    settings: ServiceSettings, error_cb: Callable[[KafkaError], None] | None = None
) -> AdminClient:
    conf: dict[str, Any] = {**LIBRDKAFKA_LOG, **settings.base_kafka(), "allow.auto.create.topics": False}
    if error_cb is not None:
        conf["error_cb"] = error_cb
    return AdminClient(conf)
