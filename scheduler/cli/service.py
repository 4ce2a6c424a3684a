"""`kafka-scheduler run` and `kafka-scheduler topics create|verify`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from scheduler.cli.common import Bootstrap, KafkaProps, ScheduledTopic, load_settings
from scheduler.errors import KafkaFatalError, TopicConfigError

__all__ = ["run", "topics_app"]

topics_app = typer.Typer(no_args_is_help=True, help="Create or verify the scheduler's topics.")
EXIT_REFUSED = 3


def run(
    bootstrap: Bootstrap = None,
    props: KafkaProps = None,
    topic: ScheduledTopic = None,
    group: Annotated[str | None, typer.Option(help="Consumer group (env KAFKA_SCHEDULER_GROUP_ID).")] = None,
    http_port: Annotated[int | None, typer.Option(help="Metrics/health port; 0 picks a free one.")] = None,
    json_logs: Annotated[bool | None, typer.Option("--json-logs/--text-logs", help="Log format.")] = None,
) -> None:
    """Run a scheduler instance (exit 0 after SIGTERM; 1 on a fatal Kafka error; 3 if topics are unsafe)."""
    from scheduler.logs import configure_logging
    from scheduler.service.app import SchedulerService

    settings = load_settings(
        bootstrap, props, scheduled_topic=topic, group_id=group, http_port=http_port, log_json=json_logs
    )
    configure_logging(json=settings.log_json, level=settings.log_level)
    service = SchedulerService(settings)
    service.install_signal_handlers()
    try:
        service.run()
    except TopicConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_REFUSED) from exc
    except KafkaFatalError as exc:
        typer.echo(f"fatal: {exc}", err=True)
        sys.stderr.flush()
        raise typer.Exit(1) from exc


@topics_app.command("create")
def create(
    bootstrap: Bootstrap = None,
    props: KafkaProps = None,
    topic: ScheduledTopic = None,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of every scheduler topic.")] = 12,
    replication: Annotated[int, typer.Option(min=1, help="Replication factor (3 in production).")] = 1,
    target: Annotated[
        list[str] | None, typer.Option(help="Also create this target topic to fire into (repeatable).")
    ] = None,
) -> None:
    """Create `scheduled`, its state, rejected and dead-letter topics (existing ones are left alone)."""
    from scheduler.codec import is_legal_topic
    from scheduler.kafka.clients import build_admin
    from scheduler.topics import create_topics

    settings = load_settings(bootstrap, props, scheduled_topic=topic)
    targets = tuple(target or ())
    for name in targets:
        if not is_legal_topic(name):
            raise typer.BadParameter(f"{name!r} is not a legal topic name (1-249 of a-z A-Z 0-9 . _ -)")
    created = create_topics(build_admin(settings), settings, partitions, replication, targets)
    for name, result in created.items():
        typer.echo(f"{result:8} {name}")


@topics_app.command("verify")
def verify(bootstrap: Bootstrap = None, props: KafkaProps = None, topic: ScheduledTopic = None) -> None:
    """List every problem with the scheduler's topics and its fix; exit 3 if any could lose schedules."""
    from scheduler.kafka.clients import build_admin
    from scheduler.topics import verify_topics

    settings = load_settings(bootstrap, props, scheduled_topic=topic)
    problems = verify_topics(build_admin(settings), settings)
    for problem in problems:
        typer.echo(f"{'ERROR' if problem.fatal else 'warning'}: {problem}")
    if any(p.fatal for p in problems):
        raise typer.Exit(EXIT_REFUSED)
    typer.echo("ok: topics are safe for the scheduler")
