"""`kafka-scheduler config show`: the settings `run` would use, and the librdkafka configuration of each client,
with every secret masked (SASL and TLS passwords, private keys, OAuth secrets)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import typer
from pydantic import SecretStr

from scheduler.cli.common import Bootstrap, KafkaProps, ScheduledTopic, load_settings

__all__ = ["app", "mask"]

app = typer.Typer(no_args_is_help=True, help="Show the effective configuration.")
MASK = "********"
# librdkafka properties whose values are secrets (sasl.password, ssl.key.password, ssl.keystore.password,
# ssl.key.pem, ssl_key.pem-style inline keys, sasl.oauthbearer.client.secret, sasl.oauthbearer.config, ...).
SECRET_KEY = re.compile(
    r"password|secret|\.pem$|(^|\.)key$|sasl\.oauthbearer\.config|sasl\.jaas", re.IGNORECASE
)


def mask(conf: dict[str, Any]) -> dict[str, Any]:
    """A copy of `conf` with secret values replaced; nested dicts are masked too."""
    out: dict[str, Any] = {}
    for key, value in conf.items():
        if isinstance(value, dict):
            out[key] = mask(value)
        elif isinstance(value, SecretStr) or (value is not None and SECRET_KEY.search(str(key))):
            out[key] = MASK
        else:
            out[key] = value
    return out


@app.command("show")
def show(
    bootstrap: Bootstrap = None,
    props: KafkaProps = None,
    topic: ScheduledTopic = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document instead of text.")] = False,
) -> None:
    """Print the scheduler's effective settings (environment, .env, secrets dir, -X) and each client's
    librdkafka configuration, with the forced settings applied and secrets masked."""
    from scheduler.kafka.clients import consumer_config, producer_config

    settings = load_settings(bootstrap, props, scheduled_topic=topic)
    doc: dict[str, Any] = {
        "settings": mask(settings.model_dump()),
        "topics": {
            "scheduled": settings.scheduled_topic,
            "state": settings.state,
            "rejected": settings.rejected,
            "dead_letters": settings.dlt,
        },
        "transactional_id": settings.transactional_id,
        "consumer": mask(consumer_config(settings)),
        "producer": mask(producer_config(settings)),
    }
    if as_json:
        typer.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))
        return
    for section, values in doc.items():
        if not isinstance(values, dict):
            typer.echo(f"{section}: {values}")
            continue
        typer.echo(f"{section}:")
        for key in sorted(values):
            typer.echo(f"  {key} = {values[key]}")
