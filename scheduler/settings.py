"""Scheduler service settings: env prefix KAFKA_SCHEDULER_, nested delimiter `__`, `.env` and a secrets dir.

librdkafka settings come verbatim (`KAFKA_SCHEDULER_KAFKA__security.protocol`, JSON in `KAFKA_SCHEDULER_KAFKA`,
`-X key=value`) or in the environment's own spelling (`KAFKA_SCHEDULER_KAFKA__CLIENT_ID` is `client.id`).
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scheduler.cpus import usable_cpus
from scheduler.errors import ConfigError

__all__ = [
    "ServiceSettings",
    "check_topic_name",
    "forbidden_target",
    "librdkafka_keys",
    "load",
    "own_topics",
    "settings_error",
]

DEFAULT_DENY = r"^__.*"
MAX_WORKERS = 256
# librdkafka names its properties with dots; these few have underscores (the rest of `*_cb` are callbacks).
_UNDERSCORED = frozenset({"log_level"})
_TOPIC_RE = re.compile(r"[a-zA-Z0-9._-]{1,249}")


def check_topic_name(name: str) -> str:
    """Kafka's rule for topic names; ValueError saying the rule otherwise."""
    if name in (".", "..") or _TOPIC_RE.fullmatch(name) is None:
        raise ValueError(
            f"{name!r} is not a legal Kafka topic name: use 1-249 of [a-zA-Z0-9._-], not '.' or '..'"
        )
    return name


def own_topics(scheduled: str, state: str | None, rejected: str | None, dlt: str | None) -> frozenset[str]:
    """The scheduler's own topics; the state, rejected and dead-letter ones default to `<scheduled>.<kind>`."""
    return frozenset(
        {
            scheduled,
            state or f"{scheduled}.state",
            rejected or f"{scheduled}.rejected",
            dlt or f"{scheduled}.dlt",
        }
    )


def forbidden_target(
    topic: str, own: frozenset[str], deny: re.Pattern[str] | None = None, allow: re.Pattern[str] | None = None
) -> str | None:
    """Why the scheduler refuses `topic` as a target (reason forbidden_target_topic), or None.

    Internal topics (`__consumer_offsets`, `__transaction_state`, ...) and the scheduler's own are refused
    whatever the deny pattern says; the patterns narrow the rest.
    """
    if topic in own:
        return f"{topic} is one of the scheduler's own topics"
    if topic.startswith("__"):
        return f"{topic} is an internal topic"
    if deny is not None and deny.search(topic):
        return f"{topic} matches the deny pattern {deny.pattern!r}"
    if allow is not None and not allow.fullmatch(topic):
        return f"{topic} does not match the allow pattern {allow.pattern!r}"
    return None


def librdkafka_keys(conf: Any) -> Any:
    """Environment-style keys (CLIENT_ID, from KAFKA_SCHEDULER_KAFKA__CLIENT_ID) as librdkafka's (client.id).

    Dotted keys are librdkafka's own spelling and win over an environment-style key naming the same property.
    """
    if not isinstance(conf, dict):
        return conf
    out = {str(k).lower(): v for k, v in conf.items() if "." in str(k)}
    for key, value in conf.items():
        name = str(key).lower()
        if "." in name:
            continue
        if name not in _UNDERSCORED and not name.endswith("_cb"):
            name = name.replace("_", ".")
        out.setdefault(name, value)
    return out


def settings_error(exc: ValidationError, prefix: str = "KAFKA_SCHEDULER_") -> ConfigError:
    """A pydantic error as one line naming each bad setting by its environment variable."""
    problems = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:
            problems.append(message)
            continue
        env = prefix + "__".join(str(part) for part in error["loc"]).upper()
        got = "" if isinstance(error["input"], dict) else f"={error['input']!r}"
        problems.append(f"{env}{got}: {message}")
    return ConfigError("; ".join(problems))


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
    static_membership: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="group.instance.id = the instance id (KIP-345): a restart rejoins without a rebalance; a "
        "clean stop waits session.timeout.ms for its partitions; auto: on iff the instance id is set "
        "(docs/transactional-id.md)",
    )
    fence_departed: bool = Field(
        default=True,
        description="on assignment, fence the transactional id of a previous owner that left the group with a "
        "transaction open, instead of waiting transaction.timeout.ms (docs/transactional-id.md)",
    )
    workers: int | Literal["auto"] = Field(
        default="auto",
        description="group members this unit runs, one process each; auto: the cores it may use (docs/operations.md)",
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
    prepare_ahead_ms: int = Field(
        default=5,
        ge=0,
        le=100,
        description="produce fires due within this many ms into the tick's transaction ahead of time and commit "
        "it at their due time: never visible nor timestamped early; not for LogAppendTime targets; 0: off "
        "(docs/architecture.md, 'Prepared fires')",
    )
    min_interval_ms: int = Field(
        default=1000,
        ge=1,
        description="recurring schedules: the shortest interval between occurrences accepted (every, after, and "
        "how often a cron expression fires); shorter ones are rejected (docs/recurring.md)",
    )
    missed_grace_ms: int = Field(
        default=60_000,
        ge=0,
        description="an occurrence reached later than this after its time counts as missed, and its schedule's "
        "missed policy decides (docs/recurring.md)",
    )
    catch_up_ms: int = Field(
        default=86_400_000,
        ge=0,
        description="missed policy `all`: missed occurrences older than this are skipped, not fired (a schedule's "
        "own catch-up window overrides it)",
    )
    max_backfill: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="the most occurrences one backfill command fires (more: rejected; split the range)",
    )
    fire_attempts: int = Field(default=3, ge=1, description="failed fire transactions before a dead letter")
    transaction_timeout_ms: int = Field(default=10_000, ge=1000)
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    shutdown_timeout_s: float = Field(default=30.0, gt=0)
    rebuild_stall_timeout_s: float = Field(default=120.0, gt=0)
    min_delete_retention_ms: int = Field(default=3_600_000, ge=0)
    http_host: str = "0.0.0.0"
    http_port: int | None = Field(
        default=9400, ge=0, le=65535, description="metrics and health; None disables"
    )
    request_timeout_s: float = Field(
        default=10.0, gt=0, description="operator tools: how long to wait for the cluster to answer"
    )
    txn_log: Path | None = Field(
        default=None,
        description="append one JSON line per transaction and its outcome (forensics, chaos checker); "
        "with several workers, one file each: <stem>-wK<suffix>",
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
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> int | str:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        text = str(value).strip()
        if isinstance(value, bool) or not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
            raise ValueError(f"expected 'auto' or a whole number of worker processes from 1 to {MAX_WORKERS}")
        return int(text)

    @field_validator("kafka", "consumer", "producer", mode="before")
    @classmethod
    def _librdkafka_keys(cls, value: Any) -> Any:
        return librdkafka_keys(value)

    @field_validator("scheduled_topic", "state_topic", "rejected_topic", "dlt_topic")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        return None if value is None else check_topic_name(value)

    @model_validator(mode="after")
    def _derived_topic_names(self) -> ServiceSettings:
        for name in sorted(self.own_topics):
            check_topic_name(name)  # <scheduled>.rejected may be too long even if <scheduled> is not
        return self

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
        own = own_topics(self.scheduled_topic, self.state_topic, self.rejected_topic, self.dlt_topic)
        return own | {self.history_topic} if self.history_topic else own

    @property
    def worker_count(self) -> int:
        """`workers` resolved: "auto" is the cores this process may use (affinity, cgroup quota)."""
        return usable_cpus() if self.workers == "auto" else self.workers

    @property
    def transactional_id(self) -> str:
        return f"{self.group_id}-{self.instance_id}"

    @property
    def group_instance_id(self) -> str | None:
        """The consumer's group.instance.id, or None (dynamic membership): a random default id is new at every
        start, so a static one would only make a clean stop wait out its session."""
        if self.static_membership == "auto":
            return self.instance_id if "instance_id" in self.model_fields_set else None
        return self.instance_id if self.static_membership == "on" else None

    def base_kafka(self) -> dict[str, Any]:
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers, **self.kafka}
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        return conf


def load(**overrides: Any) -> ServiceSettings:
    """Environment, `.env` and secrets, then `overrides` (the command line); ConfigError naming what is wrong."""
    try:
        return ServiceSettings(**overrides)
    except ValidationError as exc:
        raise settings_error(exc) from None
