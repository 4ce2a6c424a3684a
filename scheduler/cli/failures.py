"""Every failure a command meets ends in one line on stderr and the exit code docs/cli.md documents.

Commands raise the library's errors; the root group turns them into that line, so no bad input, unreachable
cluster or refused setting ends in a traceback. An exception outside this tree is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import typer
from confluent_kafka import KafkaException
from typer.core import TyperGroup

from scheduler.errors import ConfigError, KafkaFatalError, SchedulerError, TopicConfigError
from scheduler.kafka.clients import kafka_error

__all__ = [
    "EXIT_FAILED",
    "EXIT_NOT_FOUND",
    "EXIT_PARTIAL",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "CliGroup",
    "exit_for",
    "quiet_librdkafka",
]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_NOT_FOUND = 4
EXIT_PARTIAL = 5


def exit_for(exc: SchedulerError | KafkaException) -> tuple[int, str]:
    """(exit code, the line to print) for an error a command let through."""
    if isinstance(exc, KafkaException):
        err = kafka_error(exc)
        return EXIT_FAILED, f"error: Kafka: {err.str() if err is not None else exc}"
    if isinstance(exc, TopicConfigError):
        return EXIT_REFUSED, f"refused: {exc}"
    if isinstance(exc, ConfigError):
        return EXIT_USAGE, f"bad configuration: {exc}"
    if isinstance(exc, KafkaFatalError):
        return EXIT_FAILED, f"fatal: {exc}"
    return EXIT_FAILED, f"error: {exc}"


class CliGroup(TyperGroup):
    """The root command: a library error from any subcommand becomes one line and its exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (SchedulerError, KafkaException) as exc:
            code, line = exit_for(exc)
            typer.echo(line, err=True)
            raise typer.Exit(code) from None


def quiet_librdkafka(level: str) -> Callable[[], None]:
    """Operator commands print one line when the cluster is down, not librdkafka's reconnect attempts (shown at
    KAFKA_SCHEDULER_LOG_LEVEL=DEBUG; `run` logs them itself, warnings up, rate-limited). Returns the undo."""
    logger = logging.getLogger("librdkafka")
    before = logger.level
    if level.upper() == "DEBUG":
        from scheduler.logs import configure_logging

        configure_logging(level="DEBUG")
    else:
        logger.setLevel(logging.CRITICAL)
    return lambda: logger.setLevel(before)
