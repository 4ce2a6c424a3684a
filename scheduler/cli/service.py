"""`kafka-scheduler run` and `kafka-scheduler topics create|verify`."""

from __future__ import annotations

from typing import Annotated

import typer

from scheduler.cli.common import Bootstrap, KafkaProps, ScheduledTopic, load_settings
from scheduler.cli.failures import EXIT_FAILED, EXIT_REFUSED

__all__ = ["run", "topics_app"]

topics_app = typer.Typer(no_args_is_help=True, help="Create or verify the scheduler's topics.")


def run(
    bootstrap: Bootstrap = None,
    props: KafkaProps = None,
    topic: ScheduledTopic = None,
    group: Annotated[str | None, typer.Option(help="Consumer group (env KAFKA_SCHEDULER_GROUP_ID).")] = None,
    http_port: Annotated[int | None, typer.Option(help="Metrics/health port; 0 picks a free one.")] = None,
    json_logs: Annotated[bool | None, typer.Option("--json-logs/--text-logs", help="Log format.")] = None,
    workers: Annotated[
        str | None,
        typer.Option(
            help="Group members in this unit, one process each: a number, or auto for the cores this process "
            "may use (env KAFKA_SCHEDULER_WORKERS; default auto)."
        ),
    ] = None,
) -> None:
    """Run a scheduler instance (exit 0 after SIGTERM; 1 on a fatal Kafka error or a worker's exit; 3 if topics
    are unsafe)."""
    from scheduler.logs import configure_logging

    settings = load_settings(
        bootstrap,
        props,
        scheduled_topic=topic,
        group_id=group,
        http_port=http_port,
        log_json=json_logs,
        workers=workers,
    )
    configure_logging(json=settings.log_json, level=settings.log_level)
    count = settings.worker_count
    if count == 1:
        from scheduler.service.app import SchedulerService

        service = SchedulerService(settings)
        service.install_signal_handlers()
        service.run()  # its errors end in one line and an exit code (scheduler/cli/failures.py)
        return
    from scheduler.service.unit import WorkerUnit

    unit = WorkerUnit(settings, count)
    unit.install_signal_handlers()
    code = unit.run()
    if code:
        if unit.failure:
            typer.echo(unit.failure, err=True)  # the last line, as a single instance's failure is
        raise typer.Exit(code)


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
    """Create `scheduled`, its state, rejected and dead-letter topics, and any --target (existing ones are left
    alone; exit 1 if one of the scheduler's differs from what was asked)."""
    from scheduler.codec import is_legal_topic
    from scheduler.kafka.reach import check_reachable
    from scheduler.topics import MIGRATE, create_topics

    settings = load_settings(bootstrap, props, scheduled_topic=topic)
    targets = tuple(target or ())
    for name in targets:
        if not is_legal_topic(name):
            raise typer.BadParameter(f"{name!r} is not a legal topic name (1-249 of a-z A-Z 0-9 . _ -)")
    results = create_topics(check_reachable(settings), settings, partitions, replication, targets=targets)
    for name, result in results.items():
        outcome, _sep, differs = result.partition(": ")
        typer.echo(f"{outcome:8} {name}" + (f" ({differs})" if differs else ""))
    if any(": " in result for result in results.values()):
        typer.echo(
            f"error: existing topics differ from what was asked and were left alone; to change partitions, {MIGRATE}",
            err=True,
        )
        raise typer.Exit(EXIT_FAILED)


@topics_app.command("verify")
def verify(bootstrap: Bootstrap = None, props: KafkaProps = None, topic: ScheduledTopic = None) -> None:
    """List every problem with the scheduler's topics and its fix; exit 3 if any could lose schedules."""
    from scheduler.kafka.reach import check_reachable
    from scheduler.topics import verify_topics

    settings = load_settings(bootstrap, props, scheduled_topic=topic)
    problems = verify_topics(check_reachable(settings), settings)
    for problem in problems:
        typer.echo(f"{'ERROR' if problem.fatal else 'warning'}: {problem}")
    if any(p.fatal for p in problems):
        raise typer.Exit(EXIT_REFUSED)
    typer.echo("ok: topics are safe for the scheduler")
