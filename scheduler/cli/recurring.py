"""`kafka-scheduler pause|resume|backfill ID`: commands on `scheduled`, so they keep every guarantee.

`backfill` first reads the schedule (like `get`) to say which occurrences the range holds, and with --dry-run
stops there; the scheduler computes them again when it takes the command, from the state it owns then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from scheduler.cli.common import Bootstrap, KafkaProps, ScheduledTopic, cluster_settings
from scheduler.cli.failures import EXIT_FAILED, EXIT_NOT_FOUND
from scheduler.cli.show import DryRun, progress_bar
from scheduler.settings import ServiceSettings

if TYPE_CHECKING:
    from scheduler.ops.state import Pending

__all__ = ["backfill", "pause", "resume"]

ScheduleId = Annotated[str, typer.Argument(metavar="ID", help="The recurring schedule's id.")]


def _recurring(settings: ServiceSettings, schedule_id: str) -> Pending:
    """The pending recurring schedule, or exit 4 (not pending) / 1 (a one-time schedule)."""
    from scheduler.ops.state import find

    with progress_bar(f"reading {settings.state}") as progress:
        found, _corrupt = find(settings, schedule_id, progress)
    if found is None:
        typer.echo(f"not pending: {schedule_id}", err=True)
        raise typer.Exit(EXIT_NOT_FOUND)
    if found.schedule.recurrence is None:
        typer.echo(
            f"{schedule_id} is a one-time schedule: only recurring schedules have occurrences", err=True
        )
        raise typer.Exit(EXIT_FAILED)
    return found


def _send(settings: ServiceSettings, action: str, schedule_id: str, *args: int) -> None:
    from scheduler.client import SchedulerClient
    from scheduler.ops.importer import client_settings

    with SchedulerClient(settings=client_settings(settings, "kafka-scheduler-cli")) as client:
        getattr(client, action)(schedule_id, *args)


def _control(
    word: str, schedule_id: str, bootstrap: str | None, props: list[str] | None, topic: str | None
) -> None:
    settings = cluster_settings(bootstrap, props, topic)
    _recurring(settings, schedule_id)
    _send(settings, word, schedule_id)
    typer.echo(f"{word} sent for {schedule_id}")


def pause(
    schedule_id: ScheduleId,
    bootstrap: Bootstrap = None,
    props: KafkaProps = None,
    topic: ScheduledTopic = None,
) -> None:
    """Pause a recurring schedule: nothing fires until `resume` (exit 4 if it is not pending)."""
    _control("pause", schedule_id, bootstrap, props, topic)


def resume(
    schedule_id: ScheduleId,
    bootstrap: Bootstrap = None,
    props: KafkaProps = None,
    topic: ScheduledTopic = None,
) -> None:
    """Resume a paused recurring schedule from its next future occurrence (the paused ones never fire)."""
    _control("resume", schedule_id, bootstrap, props, topic)


def backfill(
    schedule_id: ScheduleId,
    start: Annotated[
        str, typer.Option("--from", help="First nominal time: RFC 3339, epoch ms or relative (-7d).")
    ],
    end: Annotated[str, typer.Option("--to", help="Last nominal time (inclusive), same forms.")],
    dry_run: DryRun = False,
    bootstrap: Bootstrap = None,
    props: KafkaProps = None,
    topic: ScheduledTopic = None,
) -> None:
    """Fire, now and on purpose, the occurrences of a recurring schedule nominally in [--from, --to]."""
    from scheduler import recurring
    from scheduler.client import now_ms
    from scheduler.ops.query import iso, parse_when_ms

    now = now_ms()
    try:
        first, last = parse_when_ms(start, now), parse_when_ms(end, now)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if last < first:
        raise typer.BadParameter(f"--to {end!r} is before --from {start!r}")
    settings = cluster_settings(bootstrap, props, topic)
    found = _recurring(settings, schedule_id)
    spec = found.schedule.recurrence
    assert spec is not None
    try:
        times = recurring.backfill(spec, first, last, settings.max_backfill)
    except ValueError as exc:
        typer.echo(f"backfill {schedule_id}: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    for at in times[:10]:
        typer.echo(f"{'would fire' if dry_run else 'fires'} the occurrence of {iso(at)}")
    if len(times) > 10:
        typer.echo(f"... and {len(times) - 10} more")
    if dry_run:
        typer.echo(f"{len(times)} occurrence(s) in the range; nothing sent")
        return
    if not times:
        typer.echo("no occurrence in the range: nothing sent")
        return
    _send(settings, "backfill", schedule_id, first, last)
    typer.echo(f"backfill of {len(times)} occurrence(s) sent for {schedule_id}")
