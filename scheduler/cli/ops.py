"""`kafka-scheduler get|list|stats|cancel|import`: thin, the logic lives in scheduler/ops/.

Inspection reads the state topic directly (read_committed, from the beginning to the end offsets taken at the
start, last record per key wins): it works with no scheduler running and sees every partition consistently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from scheduler.cli.common import Bootstrap, KafkaProps, ScheduledTopic, cluster_settings
from scheduler.cli.failures import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_PARTIAL
from scheduler.cli.show import DryRun, Output, check_output, print_json, print_table, progress_bar, short
from scheduler.settings import ServiceSettings

if TYPE_CHECKING:
    from scheduler.model import Schedule
    from scheduler.ops.importer import ImportSummary

__all__ = ["cancel", "get", "import_file", "list_schedules", "stats"]


def get(
    schedule_id: Annotated[str, typer.Argument(metavar="ID", help="The schedule id.")],
    bootstrap: Bootstrap = None,
    props: KafkaProps = None,
    topic: ScheduledTopic = None,
    output: Output = "json",
) -> None:
    """Show one pending schedule (exit 4 if it is not pending: never scheduled, fired or cancelled)."""
    from scheduler.ops.query import schedule_json
    from scheduler.ops.state import find

    output = check_output(output)
    settings = cluster_settings(bootstrap, props, topic)
    with progress_bar(f"reading {settings.state}") as progress:
        found, corrupt = find(settings, schedule_id, progress)
    _warn_corrupt(corrupt)
    if found is None:
        typer.echo(f"not pending: {schedule_id}", err=True)
        raise typer.Exit(EXIT_NOT_FOUND)
    view = schedule_json(found)
    if output == "json":
        print_json(view)
    else:
        print_table(
            schedule_id, ["field", "value"], [[k, json.dumps(v, ensure_ascii=False)] for k, v in view.items()]
        )


def _warn_corrupt(corrupt: list[str]) -> None:
    """Records of the state topic that do not decode: what a rebuild would stop at (operations.md)."""
    for line in corrupt:
        typer.echo(f"warning: corrupt state record {line}", err=True)


def _filter(
    due_before: str | None,
    due_after: str | None,
    target: str | None,
    prefix: str | None,
    recurring: bool | None = None,
) -> Any:
    from scheduler.client import now_ms
    from scheduler.ops.query import ListFilter, parse_when_ms

    now = now_ms()
    try:
        return ListFilter(
            due_before_ms=parse_when_ms(due_before, now) if due_before else None,
            due_after_ms=parse_when_ms(due_after, now) if due_after else None,
            target=target,
            prefix=prefix,
            recurring=recurring,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def list_schedules(
    bootstrap: Bootstrap = None,
    props: KafkaProps = None,
    topic: ScheduledTopic = None,
    due_before: Annotated[
        str | None, typer.Option(help="Due before: RFC 3339, epoch ms or relative (1h).")
    ] = None,
    due_after: Annotated[
        str | None, typer.Option(help="Due at or after: RFC 3339, epoch ms or relative.")
    ] = None,
    target: Annotated[str | None, typer.Option(help="Only schedules firing into this topic.")] = None,
    prefix: Annotated[str | None, typer.Option(help="Only ids starting with this prefix.")] = None,
    recurring: Annotated[
        bool | None,
        typer.Option("--recurring/--one-time", help="Only recurring schedules, or only one-time ones."),
    ] = None,
    output: Output = "table",
    limit: Annotated[int, typer.Option(min=0, help="At most this many (0 = all).")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many first (by due time, then id).")] = 0,
) -> None:
    """List pending schedules by due time, filtered and paged."""
    from scheduler.ops.query import ordered, schedule_json, text_or_b64
    from scheduler.ops.state import pending_schedules

    output = check_output(output)
    keep = _filter(due_before, due_after, target, prefix, recurring)
    settings = cluster_settings(bootstrap, props, topic)
    with progress_bar(f"reading {settings.state}") as progress:
        snap = pending_schedules(settings, keep, progress=progress)
    _warn_corrupt(snap.corrupt)
    matching = ordered(item for _p, item in snap.pending.values())
    page = matching[offset : offset + limit] if limit else matching[offset:]
    if output == "json":
        print_json({"total": len(matching), "offset": offset, "items": [schedule_json(p) for p in page]})
        return
    rows = [
        [
            p.schedule.id,
            _due_text(p.schedule),
            p.schedule.target_topic,
            short(text_or_b64(p.schedule.target_key)),
            str(p.partition),
            short(text_or_b64(p.schedule.payload)),
            _repeat_text(p.schedule),
        ]
        for p in page
    ]
    title = f"{len(page)} of {len(matching)} pending (offset {offset})"
    print_table(title, ["id", "due", "target", "key", "partition", "value", "repeats"], rows)


def _due_text(s: Schedule) -> str:
    from scheduler.model import PARKED_MS
    from scheduler.ops.query import iso

    if s.due_ms < PARKED_MS:
        return iso(s.due_ms)
    return "paused" if s.recurrence is not None and s.recurrence.paused else "waiting for done"


def _repeat_text(s: Schedule) -> str:
    """How a recurring schedule repeats, in a few words; '-' for a one-time schedule."""
    r = s.recurrence
    if r is None:
        return "-"
    if r.cron is not None:
        text = f"cron {r.cron!r}" + ("" if r.timezone == "UTC" else f" {r.timezone}")
    elif r.every_ms is not None:
        text = f"every {r.every_ms} ms"
    else:
        text = f"{r.after_ms} ms after done"
    return f"{text}, run {r.runs}" + (f"/{r.max_runs}" if r.max_runs is not None else "")


def stats(
    bootstrap: Bootstrap = None,
    props: KafkaProps = None,
    topic: ScheduledTopic = None,
    output: Output = "table",
) -> None:
    """Pending per partition, next due per partition, and how many fall due in each of the next 24 hours."""
    from scheduler.client import now_ms
    from scheduler.ops.query import HOUR_MS, compute_stats, iso
    from scheduler.ops.reader import partition_count
    from scheduler.ops.state import pending_dues

    output = check_output(output)
    settings = cluster_settings(bootstrap, props, topic)
    with progress_bar(f"reading {settings.state}") as progress:
        partitions = partition_count(settings, settings.state)
        snap = pending_dues(settings, progress)
    result = compute_stats(snap.pending.values(), partitions, now_ms())
    _warn_corrupt(snap.corrupt)
    if output == "json":
        print_json({**result.as_json(), "corrupt": snap.corrupt})
        return
    typer.echo(
        f"pending {result.total}, overdue {result.overdue}, due after 24h {result.later}, "
        f"corrupt state records {len(snap.corrupt)}"
    )
    rows = [
        [str(p), str(n), iso(result.next_due_ms[p]) if p in result.next_due_ms else "-"]
        for p, n in sorted(result.pending.items())
    ]
    print_table("per partition", ["partition", "pending", "next due"], rows)
    hours = [[iso(result.now_ms + i * HOUR_MS), str(n)] for i, n in enumerate(result.per_hour)]
    print_table("due in the next 24 hours", ["hour from", "count"], hours)


def cancel(
    schedule_id: Annotated[str | None, typer.Argument(metavar="[ID]", help="The schedule id.")] = None,
    prefix: Annotated[
        str | None, typer.Option(help="Cancel every pending schedule whose id starts so.")
    ] = None,
    dry_run: DryRun = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    bootstrap: Bootstrap = None,
    props: KafkaProps = None,
    topic: ScheduledTopic = None,
) -> None:
    """Cancel one schedule by id, or every pending one with --prefix (asks first unless --yes)."""
    from scheduler.client import SchedulerClient
    from scheduler.ops.importer import client_settings

    if (schedule_id is None) == (prefix is None):
        raise typer.BadParameter("give exactly one of ID and --prefix")
    if schedule_id is not None and dry_run:
        typer.echo(f"would cancel {schedule_id}")
        return
    from scheduler.ops.reader import partition_count

    settings = cluster_settings(bootstrap, props, topic)
    partition_count(settings, settings.scheduled_topic)  # one line if the commands topic is missing
    ids = [schedule_id] if schedule_id is not None else _pending_with_prefix(settings, prefix or "", dry_run)
    if not ids:
        return
    if prefix is not None and not yes and not typer.confirm(f"cancel {len(ids)} schedule(s)?"):
        typer.echo("nothing cancelled", err=True)
        raise typer.Exit(EXIT_FAILED)
    with SchedulerClient(settings=client_settings(settings, "kafka-scheduler-cli")) as client:
        for sid in ids:
            client.cancel(sid)
    typer.echo(f"cancelled {len(ids)} schedule(s)")


def _pending_with_prefix(settings: ServiceSettings, prefix: str, dry_run: bool) -> list[str]:
    """The pending ids with `prefix`, listed; none to cancel on a dry run."""
    from scheduler.ops.query import ListFilter, iso, ordered
    from scheduler.ops.state import pending_schedules

    with progress_bar(f"reading {settings.state}") as progress:
        snap = pending_schedules(settings, ListFilter(prefix=prefix), progress=progress)
    items = ordered(item for _p, item in snap.pending.values())
    verb = "would cancel" if dry_run else "cancel"
    for item in items:
        typer.echo(f"{verb} {item.schedule.id} (due {iso(item.schedule.due_ms)})")
    if dry_run or not items:
        note = "; nothing changed" if dry_run else ""
        typer.echo(f"{len(items)} pending schedule(s) with prefix {prefix!r}{note}")
        return []
    return [item.schedule.id for item in items]


def import_file(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV or JSONL rows.")
    ],
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: from the suffix).")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(min=0.001, help="At most this many commands per second.")
    ] = None,
    dry_run: DryRun = False,
    resend_done: Annotated[
        bool, typer.Option(help="Also send rows whose id already fired or was cancelled (not idempotent).")
    ] = False,
    output: Output = "table",
    bootstrap: Bootstrap = None,
    props: KafkaProps = None,
    topic: ScheduledTopic = None,
) -> None:
    """Schedule every row of FILE, idempotent by id (exit 5 if some rows were refused, 1 if all were)."""
    from scheduler.ops.importer import ImportOptions, load_existing, run_import
    from scheduler.ops.policy import TargetPolicy
    from scheduler.ops.rows import FORMATS, count_rows, detect_format, read_rows

    output = check_output(output)
    try:
        kind = detect_format(file, fmt.lower() if fmt else None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if kind not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {FORMATS}")
    from scheduler.ops.reader import partition_count

    settings = cluster_settings(bootstrap, props, topic)
    partition_count(settings, settings.scheduled_topic)  # one line if the commands topic is missing
    with progress_bar(f"reading {settings.state}") as progress:
        existing = load_existing(settings, progress)
    targets = TargetPolicy.of(settings)
    total = count_rows(file, kind)
    with progress_bar(f"importing {file.name}") as progress:
        seen = [0]

        def tick() -> None:
            seen[0] += 1
            progress(seen[0], max(total, seen[0]))

        options = ImportOptions(rate=rate, dry_run=dry_run, resend_done=resend_done)
        summary = run_import(
            settings, lambda: read_rows(file, kind), options, existing=existing, targets=targets, on_row=tick
        )
    _print_import(summary, output, dry_run)
    if summary.counts["refused"]:
        raise typer.Exit(EXIT_PARTIAL if summary.accepted else EXIT_FAILED)


def _print_import(summary: ImportSummary, output: str, dry_run: bool) -> None:
    counts = {k: summary.counts[k] for k in ("sent", "unchanged", "done", "superseded", "refused")}
    refusals = [
        {"line": r.line, "id": r.id, "reason": r.reason, "message": r.message} for r in summary.refusals
    ]
    if output == "json":
        print_json(
            {
                "dry_run": dry_run,
                **counts,
                "refused_by_reason": dict(summary.refused_by_reason),
                "refusals": refusals,
            }
        )
        return
    verb = "would send" if dry_run else "sent"
    typer.echo(
        f"{verb} {counts['sent']}, unchanged {counts['unchanged']}, already fired or cancelled {counts['done']}, "
        f"superseded by a later row {counts['superseded']}, refused {counts['refused']}"
    )
    if refusals:
        print_table(
            "refused rows",
            ["line", "id", "reason", "message"],
            [
                [str(r["line"]), str(r["id"]), str(r["reason"]), short(str(r["message"]), 160)]
                for r in refusals
            ],
        )
