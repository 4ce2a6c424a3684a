"""`kafka-scheduler consume module:app`: import an App and run it until SIGTERM/SIGINT.

Exit codes (docs/cli.md): 0 stopped cleanly; 1 failed (broker unreachable, a fatal Kafka error, or work still
unfinished at the shutdown deadline); 2 bad configuration; 3 refused by a topic precondition.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from scheduler.cli.common import Bootstrap, KafkaProps, parse_props
from scheduler.errors import ConfigError, SchedulerError, TopicConfigError

if TYPE_CHECKING:
    from consumers.app import App

__all__ = ["consume", "load_app"]

EXIT_FAILED, EXIT_CONFIG, EXIT_REFUSED = 1, 2, 3


def load_app(target: str) -> App:
    """Resolve `package.module:attribute` to an App; the current directory is importable like `python -m`."""
    # imported here: every other command (`run` too) starts without the consumer framework
    from consumers.app import App

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise typer.BadParameter(f"expected module:app, got {target!r}")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise typer.BadParameter(f"cannot import {module_name!r}: {exc}") from exc
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise typer.BadParameter(f"{target!r} is {type(app).__name__}, not a consumers.App")
    return app


def apply_overrides(app: App, bootstrap: str | None, props: list[str] | None) -> None:
    """-b replaces the bootstrap servers, -X adds librdkafka settings for every client the app creates."""
    update: dict[str, object] = {}
    if bootstrap:
        update["bootstrap_servers"] = bootstrap
    extra = parse_props(props)
    if extra:
        update["kafka"] = {**app.settings.kafka, **extra}
    if update:
        app.settings = app.settings.model_copy(update=update)


def consume(
    target: Annotated[str, typer.Argument(help="module:app, e.g. examples.reservations:app")],
    bootstrap: Bootstrap = None,
    props: KafkaProps = None,
    json_logs: Annotated[
        bool | None,
        typer.Option("--json-logs/--text-logs", help="Log format (env KAFKA_SCHEDULER_LOG_JSON)."),
    ] = None,
) -> None:
    """Run a consumer App; on SIGTERM/SIGINT drain in-flight work and commit within shutdown_timeout_s."""
    from confluent_kafka import KafkaException

    from scheduler.logs import configure_logging

    try:
        app = load_app(target)
        apply_overrides(app, bootstrap, props)
        settings = app.settings
        configure_logging(
            json=settings.log_json if json_logs is None else json_logs, level=settings.log_level
        )
        app.run()
    except TopicConfigError as exc:
        _fail(f"refused: {exc}", EXIT_REFUSED)
    except ConfigError as exc:
        _fail(f"bad configuration: {exc}", EXIT_CONFIG)
    except (SchedulerError, KafkaException) as exc:  # the message says why; no traceback
        _fail(f"error: {exc}", EXIT_FAILED)


def _fail(line: str, code: int) -> None:
    typer.echo(line, err=True)
    raise typer.Exit(code)
