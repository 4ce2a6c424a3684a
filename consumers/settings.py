"""Everything about an App beyond its first-class arguments: validated, and read from the environment like the service.

Environment variables have the service's prefix and nesting (`KAFKA_SCHEDULER_BOOTSTRAP_SERVERS`,
`KAFKA_SCHEDULER_KAFKA__security.protocol`, `KAFKA_SCHEDULER_CONSUMER__session.timeout.ms`), `.env` and a
secrets dir included; values given in code win. A bad value raises `ConfigError` with one line naming it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scheduler.errors import ConfigError

__all__ = ["ConsumerSettings", "one_line"]

TEMPLATES = ("retry_topic_template", "dlt_topic_template", "blocked_topic_template")


class ConsumerSettings(BaseSettings):
    """Topic templates take `{topic}` and `{group}`; librdkafka settings pass through verbatim.

    `kafka` goes to every client (security, bootstrap, client.id), `consumer` to the consumer only,
    `producer` to the producers only (the one for dead letters and markers, and the scheduler client's).
    """

    model_config = SettingsConfigDict(
        env_prefix="KAFKA_SCHEDULER_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        frozen=True,
        arbitrary_types_allowed=True,
        secrets_dir=os.environ.get("KAFKA_SCHEDULER_SECRETS_DIR") or None,
    )

    bootstrap_servers: str = "localhost:9092"
    scheduled_topic: str = "scheduled"
    retry_topic_template: str = "{topic}.{group}.retry"
    dlt_topic_template: str = "{topic}.{group}.dlt"
    blocked_topic_template: str = "{topic}.{group}.blocked"
    create_topics: bool = True
    commit_interval_s: float = Field(default=1.0, ge=0)
    poll_batch: int = Field(default=500, ge=1, le=1_000_000)
    max_pending_per_partition: int = Field(default=10_000, ge=1)
    max_queued_per_key: int = Field(default=1_000, ge=1)
    shutdown_timeout_s: float = Field(default=25.0, ge=0, description="drain + close; < Kubernetes' 30 s")
    revoke_timeout_s: float = Field(default=10.0, ge=0)
    handler_timeout_s: float = Field(default=300.0, gt=0, description="time limit of one handler call")
    liveness_timeout_s: float = Field(default=30.0, gt=0)
    metrics_host: str = Field(default="0.0.0.0", description="every interface; 127.0.0.1 for this host only")
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    state_dir: Path | None = Field(default=None, description="where the default SQLite store lives")
    log_json: bool = False
    log_level: str = "INFO"
    sasl_password: SecretStr | None = None
    kafka: dict[str, Any] = Field(default_factory=dict)
    consumer: dict[str, Any] = Field(default_factory=dict)
    producer: dict[str, Any] = Field(default_factory=dict)
    registry: CollectorRegistry | None = Field(default=None, exclude=True)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(f"consumer settings: {one_line(exc)}") from None

    @field_validator(*TEMPLATES)
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            value.format(topic="t", group="g")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{value!r} may use only {{topic}} and {{group}}: {exc!r}") from None
        if "{topic}" not in value:
            raise ValueError(f"{value!r} must contain {{topic}}: every source topic needs its own")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in logging.getLevelNamesMapping():
            raise ValueError(f"{value!r} is not a logging level (DEBUG, INFO, WARNING, ERROR)")
        return value.upper()

    @model_validator(mode="after")
    def _distinct(self) -> ConsumerSettings:
        names = [getattr(self, t) for t in TEMPLATES]
        if len(set(names)) != len(names):
            raise ValueError(f"the retry, dead-letter and blocked topic templates must differ: {names}")
        return self

    def retry_for(self, topic: str, group: str) -> str:
        return self.retry_topic_template.format(topic=topic, group=group)

    def dlt_for(self, topic: str, group: str) -> str:
        return self.dlt_topic_template.format(topic=topic, group=group)

    def blocked_for(self, topic: str, group: str) -> str:
        return self.blocked_topic_template.format(topic=topic, group=group)


def one_line(exc: ValidationError) -> str:
    """`poll_batch=0: Input should be greater than or equal to 1; …` instead of pydantic's multi-line report."""
    parts = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if error["loc"]:
            message = f"{'.'.join(str(p) for p in error['loc'])}={error['input']}: {message}"
        parts.append(message)
    return "; ".join(parts)
