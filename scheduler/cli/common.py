"""Options every command shares: -b/--bootstrap-servers, kcat-style -X key=value, --topic; loading settings."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from scheduler.settings import ServiceSettings

__all__ = ["Bootstrap", "KafkaProps", "ScheduledTopic", "cluster_settings", "load_settings"]

Bootstrap = Annotated[
    str | None,
    typer.Option(
        "-b", "--bootstrap-servers", help="Kafka bootstrap servers (env KAFKA_SCHEDULER_BOOTSTRAP_SERVERS)."
    ),
]
KafkaProps = Annotated[
    list[str] | None, typer.Option("-X", help="librdkafka property key=value for every client (repeatable).")
]
ScheduledTopic = Annotated[
    str | None, typer.Option("--topic", help="The commands topic (env KAFKA_SCHEDULER_SCHEDULED_TOPIC).")
]


def parse_props(props: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in props or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"-X expects key=value, got {item!r}")
        out[key.strip()] = value
    return out


def load_settings(bootstrap: str | None, props: list[str] | None, **overrides: Any) -> ServiceSettings:
    """Environment and .env first, then what the command line says; ConfigError (exit 2) for a bad setting,
    a librdkafka property librdkafka refuses, or one that contradicts a forced setting."""
    from scheduler.kafka.clients import check_configs
    from scheduler.settings import load

    update: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    if bootstrap:
        update["bootstrap_servers"] = bootstrap
    extra = parse_props(props)
    if extra:
        update["kafka"] = extra  # merged over the environment's KAFKA_SCHEDULER_KAFKA*
    settings = load(**update)
    check_configs(settings)
    return settings


def cluster_settings(bootstrap: str | None, props: list[str] | None, topic: str | None) -> ServiceSettings:
    """Settings for a command that talks to Kafka, once the cluster has answered (one line if it does not)."""
    from scheduler.kafka.reach import check_reachable

    settings = load_settings(bootstrap, props, scheduled_topic=topic)
    check_reachable(settings)
    return settings
