"""Settings: librdkafka defaults < user config < forced overrides, merged in one place and tested once."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scheduler.errors import ConfigError
from scheduler.settings import librdkafka_keys, own_topics

__all__ = ["FORCED_REASONS", "PRODUCER_FORCED", "ClientSettings", "merge_config"]

PRODUCER_FORCED: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "partitioner": "murmur2_random",
}

# Why each forced key is forced: the ConfigError quotes it so the operator knows what they would break.
FORCED_REASONS: dict[str, str] = {
    "acks": "a command acknowledged by one replica can be lost with it, and the schedule with it",
    "enable.idempotence": "retries must not duplicate or reorder commands for the same schedule id",
    "partitioner": "every client (Java's default, kcat -X partitioner=murmur2) must put a schedule id in the"
    " same partition, or a cancel can overtake its schedule",
    "isolation.level": "the scheduler must never act on records of aborted transactions",
    "enable.auto.commit": "offsets are committed inside the scheduler's transactions only",
    "transactional.id": "fencing of zombie instances depends on it",
    "partition.assignment.strategy": "state rebuild assumes the same assignor on every instance",
    "group.instance.id": "it is the instance id (KAFKA_SCHEDULER_INSTANCE_ID), so the group tells which member"
    " holds which transactional id",
}


def _same(a: object, b: object) -> bool:
    """librdkafka takes "true"/True and "1"/1 alike; compare as librdkafka would read them."""
    return str(a).strip().lower() == str(b).strip().lower()


def merge_config(
    defaults: Mapping[str, Any],
    user: Mapping[str, Any],
    forced: Mapping[str, Any],
    reasons: Mapping[str, str] = FORCED_REASONS,
) -> dict[str, Any]:
    """defaults < user < forced; a user value contradicting a forced one is an error, not overridden."""
    for key, value in user.items():
        if key in forced and not _same(value, forced[key]):
            why = reasons.get(key, "correctness depends on it")
            raise ConfigError(
                f"{key}={value!r} contradicts the forced {key}={forced[key]!r} ({why}): remove it"
            )
    return {**defaults, **user, **forced}


class ClientSettings(BaseSettings):
    """What SchedulerClient needs; KAFKA_SCHEDULER_KAFKA__<key> passes librdkafka settings through."""

    model_config = SettingsConfigDict(
        env_prefix="KAFKA_SCHEDULER_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    bootstrap_servers: str = "localhost:9092"
    scheduled_topic: str = "scheduled"
    state_topic: str | None = None  # the scheduler's own topics, never a target: see own_topics
    rejected_topic: str | None = None
    dlt_topic: str | None = None
    horizon: timedelta = timedelta(days=36525)
    max_payload_bytes: int = 1024 * 1024
    producer_name: str | None = None
    check_targets: bool = True  # schedule() checks the target topic exists (one metadata request per topic)
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    kafka: dict[str, str] = {}

    @field_validator("kafka", mode="before")
    @classmethod
    def _librdkafka_keys(cls, value: Any) -> Any:
        return librdkafka_keys(value)

    @property
    def own_topics(self) -> frozenset[str]:
        """What the scheduler refuses as a target (forbidden_target_topic): its commands, state, reject and
        dead-letter topics, named as the scheduler names them from the same environment."""
        return own_topics(self.scheduled_topic, self.state_topic, self.rejected_topic, self.dlt_topic)

    def librdkafka(self) -> dict[str, Any]:
        """The user's librdkafka config (before forced overrides)."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        if self.sasl_username is not None:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        conf.update(self.kafka)
        return conf
