"""Options every command shares: -b/--bootstrap-servers and kcat-style -X key=value."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from scheduler.settings import ServiceSettings

__all__ = ["Bootstrap", "KafkaProps", "ScheduledTopic", "load_settings"]

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
        if not sep or not key:
            raise typer.BadParameter(f"-X expects key=value, got {item!r}")
        out[key.strip()] = value
    return out


def load_settings(bootstrap: str | None, props: list[str] | None, **overrides: Any) -> ServiceSettings:
    """Environment and .env first, then what the command line says."""
    settings = ServiceSettings()
    update: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    if bootstrap:
        update["bootstrap_servers"] = bootstrap
    extra = parse_props(props)
    if extra:
        update["kafka"] = {**settings.kafka, **extra}
    return settings.model_copy(update=update)
