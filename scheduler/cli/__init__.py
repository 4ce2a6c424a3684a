"""The `kafka-scheduler` command: thin, it parses, builds objects and calls the library.

Exit codes: 0 done; 1 failed (the message says why); 2 bad usage or bad configuration; 3 refused by a
precondition (topic config); 4 not found (`get`: the id is not pending); 5 partly done (`import` refused rows,
`dlq replay` skipped records). Every failure is one line on stderr (scheduler/cli/failures.py).
"""

from __future__ import annotations

import os

import typer

from scheduler.cli import config, consume, dev, dlq, ops, recurring, service
from scheduler.cli.failures import CliGroup, quiet_librdkafka

__all__ = ["app", "main"]

app = typer.Typer(
    cls=CliGroup, no_args_is_help=True, add_completion=False, help="Kafka-based messages to the future."
)
app.add_typer(dev.app, name="dev")
app.command("consume")(consume.consume)
app.add_typer(service.topics_app, name="topics")
app.command("run")(service.run)
app.command("get")(ops.get)
app.command("list")(ops.list_schedules)
app.command("stats")(ops.stats)
app.command("cancel")(ops.cancel)
app.command("import")(ops.import_file)
app.command("pause")(recurring.pause)
app.command("resume")(recurring.resume)
app.command("backfill")(recurring.backfill)
app.add_typer(dlq.app, name="dlq")
app.add_typer(config.app, name="config")
SERVICES = ("run", "consume")  # they log librdkafka themselves (warnings up, rate-limited)


@app.callback()
def _root(ctx: typer.Context) -> None:
    """Every command logs (librdkafka's lines included) one line per event, JSON on request; `run` and `consume`
    set their own level, the operator commands keep librdkafka quiet (their one-line error says what failed)."""
    from scheduler.logs import configure_logging_from_env

    configure_logging_from_env()
    if ctx.invoked_subcommand not in SERVICES:
        ctx.call_on_close(quiet_librdkafka(os.environ.get("KAFKA_SCHEDULER_LOG_LEVEL", "INFO")))


@app.command()
def version() -> None:
    """Print the installed version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("kafka-scheduler"))


def main() -> None:
    app()
