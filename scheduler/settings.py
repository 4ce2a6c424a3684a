"""Scheduler service settings: env prefix KAFKA_SCHEDULER_, nested delimiter `__`, `.env` and a secrets dir."""

from __future__ import annotations

import os
import re
import socket
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServiceSettings"]

DEFAULT_DENY = r"^__.*"


class ServiceSettings(BaseSettings):
    """Everything `kafka-scheduler run` needs; every field has a working default for a local broker."""

    model_config = SettingsConfigDict(
        env_prefix="KAFKA_SCHEDULER_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        secrets_dir=os.environ.get("KAFKA_SCHEDULER_SECRETS_DIR") or None,
    )

    bootstrap_servers: str = "127.0.0.1:9092"
    scheduled_topic: str = "scheduled"
    state_topic: str | None = Field(default=None, description="default: <scheduled>.state")
    rejected_topic: str | None = Field(default=None, description="default: <scheduled>.rejected")
    dlt_topic: str | None = Field(default=None, description="default: <scheduled>.dlt")
    history_topic: str | None = Field(
        default=None,
        description="a copy of every fire, written in the fire's transaction (audit log, as etf1's); off by default",
    )
    group_id: str = "kafka-scheduler"
    instance_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}",
        description="part of the transactional.id; see docs/transactional-id.md",
    )
    target_allow: str = Field(default=r".*", description="regex a target topic must match")
    target_deny: str = Field(default=DEFAULT_DENY, description="regex a target topic must not match")
    misrouted: Literal["forward", "reject"] = Field(
        default="forward",
        description="a command consumed outside its id's murmur2 partition: forward it there, or reject it",
    )
    max_fires_per_transaction: int = Field(default=2000, ge=1)
    max_transaction_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_wait_ms: int = Field(default=200, ge=1, description="longest sleep between ticks")
    fire_attempts: int = Field(default=3, ge=1, description="failed fire transactions before a dead letter")
    transaction_timeout_ms: int = Field(default=10_000, ge=1000)
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    shutdown_timeout_s: float = Field(default=30.0, gt=0)
    rebuild_stall_timeout_s: float = Field(default=120.0, gt=0)
    min_delete_retention_ms: int = Field(default=3_600_000, ge=0)
    http_host: str = "0.0.0.0"
    http_port: int | None = Field(default=9400, description="metrics and health; None disables")
    txn_log: Path | None = Field(
        default=None,
        description="append one JSON line per transaction and its outcome (forensics, chaos checker)",
    )
    log_json: bool = False
    log_level: str = "INFO"
    sasl_password: SecretStr | None = None
    kafka: dict[str, Any] = Field(default_factory=dict, description="librdkafka settings for every client")
    consumer: dict[str, Any] = Field(default_factory=dict, description="librdkafka overrides for consumers")
    producer: dict[str, Any] = Field(
        default_factory=dict, description="librdkafka overrides for the producer"
    )

    @field_validator("target_allow", "target_deny")
    @classmethod
    def _regex(cls, value: str) -> str:
        re.compile(value)
        return value

    @property
    def state(self) -> str:
        return self.state_topic or f"{self.scheduled_topic}.state"

    @property
    def rejected(self) -> str:
        return self.rejected_topic or f"{self.scheduled_topic}.rejected"

    @property
    def dlt(self) -> str:
        return self.dlt_topic or f"{self.scheduled_topic}.dlt"

    @property
    def own_topics(self) -> frozenset[str]:
        own = {self.scheduled_topic, self.state, self.rejected, self.dlt}
        return frozenset(own | {self.history_topic} if self.history_topic else own)

    @property
    def transactional_id(self) -> str:
        return f"{self.group_id}-{self.instance_id}"

    def base_kafka(self) -> dict[str, Any]:
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers, **self.kafka}
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        return conf
