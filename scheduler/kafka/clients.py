"""Builds the service's Kafka clients; the correctness-critical settings are forced here and only here."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from scheduler.config import merge_config
from scheduler.errors import ConfigError
from scheduler.logs import LIBRDKAFKA_LOG
from scheduler.settings import ServiceSettings

__all__ = [
    "DEFAULT_PARTITIONER",
    "LIBRDKAFKA_LOG",
    "build_admin",
    "build_consumer",
    "build_producer",
    "build_state_reader",
    "check_configs",
    "consumer_config",
    "consumer_forced",
    "create",
    "kafka_error",
    "producer_config",
    "producer_forced",
]

T = TypeVar("T")
DEFAULT_PARTITIONER = "murmur2_random"
CONSUMER_DEFAULTS: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "fetch.wait.max.ms": 10,
    "socket.nagle.disable": True,
    **LIBRDKAFKA_LOG,
}
PRODUCER_DEFAULTS: dict[str, Any] = {
    # Fires, dead letters and rejects land where a Java producer puts their keys (librdkafka's own default is
    # consistent_random, CRC32): per-key order on a target topic holds across both. A target whose producers
    # use librdkafka's default wants KAFKA_SCHEDULER_PRODUCER__PARTITIONER=consistent_random.
    "partitioner": DEFAULT_PARTITIONER,
    # Measured for the fire path (issue 15; docs/performance.md): linger.ms 0 made B2 at 1,000/s worse (visible
    # p50 85 / 39 ms vs 19 / 15 ms with 1, two interleaved pairs: a request per produce call) and B1 no faster
    # (47k vs 46k fires/s); batch.num.messages 100000 over the default 10000 was within B1's noise. Kept at 1.
    "linger.ms": 1,
    # A transaction begun right after the previous commit meets CONCURRENT_TRANSACTIONS while the coordinator
    # still writes that commit's markers (a few ms); librdkafka backs off retry.backoff.ms before asking again,
    # 100 ms by default: back-to-back tick transactions took 83 ms at the median, 7 ms with 2 ms (the backoff
    # still grows exponentially up to retry.backoff.max.ms, 1 s, for a broker that is really away).
    "retry.backoff.ms": 2,
    "compression.type": "lz4",
    "socket.nagle.disable": True,
    # The transaction runner needs delivery reports of failures only (a failed fire counts toward its dead
    # letter); a report per delivered record would cost a Python call per fire in commit_transaction's flush.
    "delivery.report.only.error": True,
    **LIBRDKAFKA_LOG,
}


def kafka_error(exc: KafkaException) -> KafkaError | None:
    """The KafkaError a KafkaException carries, if any."""
    return exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None


def create(factory: Callable[[dict[str, Any]], T], conf: dict[str, Any]) -> T:
    """A librdkafka client; ConfigError naming the property librdkafka refused (unknown, or a bad value)."""
    try:
        return factory(conf)
    except KafkaException as exc:
        err = kafka_error(exc)
        if err is None or err.code() != KafkaError._INVALID_ARG:
            raise
        raise ConfigError(
            f"librdkafka refused the configuration: {err.str()} (set by -X, KAFKA_SCHEDULER_KAFKA__*, "
            "KAFKA_SCHEDULER_CONSUMER__* or KAFKA_SCHEDULER_PRODUCER__*): fix or remove it"
        ) from None


def check_configs(settings: ServiceSettings) -> None:
    """Build (and drop) the consumer and producer `run` would use, without connecting: ConfigError if either
    configuration contradicts a forced setting or has a property librdkafka does not know or accept."""
    silent = {"logger": _SILENT}
    for factory, conf in ((Consumer, consumer_config(settings)), (Producer, producer_config(settings))):
        client: Any = create(factory, {k: v for k, v in conf.items() if k != "bootstrap.servers"} | silent)
        if isinstance(client, Consumer):
            client.close()


_SILENT = logging.getLogger("librdkafka.config-check")
_SILENT.propagate = False
_SILENT.addHandler(logging.NullHandler())


def consumer_forced(settings: ServiceSettings) -> dict[str, Any]:
    """Intake is read_committed, offsets move only inside transactions, partitions move cooperatively; a static
    member's group.instance.id is its instance id, so its transactional id can be told from the group."""
    forced: dict[str, Any] = {
        "group.id": settings.group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "partition.assignment.strategy": "cooperative-sticky",
        "allow.auto.create.topics": False,
    }
    if settings.group_instance_id is not None:
        forced["group.instance.id"] = settings.group_instance_id
    return forced


def producer_forced(settings: ServiceSettings) -> dict[str, Any]:
    """Fires, state writes and input offsets commit together: one transactional, idempotent producer."""
    return {
        "transactional.id": settings.transactional_id,
        "enable.idempotence": True,
        "acks": "all",
        "allow.auto.create.topics": False,  # a fire to a deleted target must fail, not re-create it
    }


def consumer_config(settings: ServiceSettings) -> dict[str, Any]:
    # A member learns of a rebalance (a dead member's session expired, a worker of its unit joined) at its next
    # heartbeat: librdkafka's 3 s default kept the first of a unit's workers on every partition for 3 s while the
    # others waited to join, and would add up to 3 s to every failover.
    heartbeat = max(100, min(500, settings.session_timeout_ms // 10))
    defaults = {
        **CONSUMER_DEFAULTS,
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": heartbeat,
        # How the other members tell this one's transactional id from the group (fence_departed); a client.id
        # set by the operator makes this member unidentifiable, and then nobody fences a departed owner.
        "client.id": settings.transactional_id,
    }
    user = {**settings.base_kafka(), **settings.consumer}
    if "group.instance.id" in user and settings.group_instance_id is None:
        raise ConfigError(
            f"group.instance.id={user['group.instance.id']!r} is set by hand: the scheduler derives it from the "
            "instance id; set KAFKA_SCHEDULER_INSTANCE_ID (and KAFKA_SCHEDULER_STATIC_MEMBERSHIP=on or auto) "
            "instead and remove it"
        )
    return merge_config(defaults, user, consumer_forced(settings))


def build_consumer(settings: ServiceSettings) -> Consumer:
    return create(Consumer, consumer_config(settings))


def build_state_reader(settings: ServiceSettings) -> Consumer:
    """Replays the state topic by assignment (no group membership, never commits)."""
    forced = {
        "group.id": f"{settings.group_id}.state-reader",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    }
    user = {**settings.base_kafka(), **settings.consumer}
    # It holds only partitions being replayed, so a short broker-side wait costs no idle fetching; with 50 ms, a
    # small state's partitions came back one 50 ms fetch wait after another (6 partitions: 0.21 s, now 0.07 s).
    defaults = {**CONSUMER_DEFAULTS, "fetch.wait.max.ms": 10, "queued.max.messages.kbytes": 262144}
    return create(Consumer, merge_config(defaults, user, forced))


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
    return create(Producer, producer_config(settings))


def build_admin(
    settings: ServiceSettings, error_cb: Callable[[KafkaError], None] | None = None
) -> AdminClient:
    conf: dict[str, Any] = {**LIBRDKAFKA_LOG, **settings.base_kafka(), "allow.auto.create.topics": False}
    if error_cb is not None:
        conf["error_cb"] = error_cb
    return create(AdminClient, conf)
