"""`kafka-scheduler get|list|stats|cancel|import|dlq`: thin, the logic lives in scheduler/ops/.

Inspection reads the state topic directly (read_committed, from the beginning to the end offsets taken at the
start, last record per key wins): it works with no scheduler running and sees every partition consistently.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from scheduler.cli.common import Bootstrap, KafkaProps, ScheduledTopic, load_settings
from scheduler.errors import SchedulerError
from scheduler.service.settings import ServiceSettings

__all__ = ["cancel", "dlq_app", "get", "import_file", "list_schedules", "stats"]

EXIT_FAILED = 1
EXIT_NOT_FOUND = 4
EXIT_PARTIAL = 5
dlq_app = typer.Typer(no_args_is_help=True, help="Inspect and replay dead letters and rejected commands.")

Output = Annotated[str, typer.Option("--output", "-o", help="table or json.", case_sensitive=False)]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")]


def _settings(bootstrap: str | None, props: list[str] | None, topic: str | None) -> ServiceSettings:
    return load_settings(bootstrap, props, scheduled_topic=topic)


def _check_output(output: str) -> str:
    if output.lower() not in ("table", "json"):
        raise typer.BadParameter(f"--output must be table or json, got {output!r}")
    return output.lower()


@contextmanager
def _progress(what: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr (records read / total); silent when stderr is not a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(what, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextmanager
def _errors() -> Iterator[None]:
    """A library error becomes one line on stderr and exit 1; bad time arguments exit 2."""
    try:
        yield
    except SchedulerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from exc


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console(width=200).print(table)


def _short(text: str | None, width: int = 40) -> str:
    if text is None:
        return "∅"
    return text if len(text) <= width else text[: width - 1] + "…"


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

    output = _check_output(output)
    settings = _settings(bootstrap, props, topic)
    with _errors(), _progress(f"reading {settings.state}") as progress:
        found, corrupt = find(settings, schedule_id, progress)
    for line in corrupt:
        typer.echo(f"warning: corrupt state record {line}", err=True)
    if found is None:
        typer.echo(f"not pending: {schedule_id}", err=True)
        raise typer.Exit(EXIT_NOT_FOUND)
    view = schedule_json(found)
    if output == "json":
        _print_json(view)
    else:
        _print_table(
            schedule_id, ["field", "value"], [[k, json.dumps(v, ensure_ascii=False)] for k, v in view.items()]
        )


def _filter(due_before: str | None, due_after: str | None, target: str | None, prefix: str | None) -> Any:
    from scheduler.client import now_ms
    from scheduler.ops.query import ListFilter, parse_when_ms

    now = now_ms()
    try:
        return ListFilter(
            due_before_ms=parse_when_ms(due_before, now) if due_before else None,
            due_after_ms=parse_when_ms(due_after, now) if due_after else None,
            target=target,
            prefix=prefix,
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
    output: Output = "table",
    limit: Annotated[int, typer.Option(min=0, help="At most this many (0 = all).")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many first (by due time, then id).")] = 0,
) -> None:
    """List pending schedules by due time, filtered and paged."""
    from scheduler.ops.query import iso, ordered, schedule_json, text_or_b64
    from scheduler.ops.state import pending_schedules

    output = _check_output(output)
    keep = _filter(due_before, due_after, target, prefix)
    settings = _settings(bootstrap, props, topic)
    with _errors(), _progress(f"reading {settings.state}") as progress:
        snap = pending_schedules(settings, keep, progress=progress)
    for line in snap.corrupt:
        typer.echo(f"warning: corrupt state record {line}", err=True)
    matching = ordered(item for _p, item in snap.pending.values())
    page = matching[offset : offset + limit] if limit else matching[offset:]
    if output == "json":
        _print_json({"total": len(matching), "offset": offset, "items": [schedule_json(p) for p in page]})
        return
    rows = [
        [
            p.schedule.id,
            iso(p.schedule.due_ms),
            p.schedule.target_topic,
            _short(text_or_b64(p.schedule.target_key)),
            str(p.partition),
            _short(text_or_b64(p.schedule.payload)),
        ]
        for p in page
    ]
    title = f"{len(page)} of {len(matching)} pending (offset {offset})"
    _print_table(title, ["id", "due", "target", "key", "partition", "value"], rows)


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

    output = _check_output(output)
    settings = _settings(bootstrap, props, topic)
    with _errors(), _progress(f"reading {settings.state}") as progress:
        partitions = partition_count(settings, settings.state)
        snap = pending_dues(settings, progress)
    result = compute_stats(snap.pending.values(), partitions, now_ms())
    if output == "json":
        _print_json(result.as_json())
        return
    typer.echo(f"pending {result.total}, overdue {result.overdue}, due after 24h {result.later}")
    rows = [
        [str(p), str(n), iso(result.next_due_ms[p]) if p in result.next_due_ms else "-"]
        for p, n in sorted(result.pending.items())
    ]
    _print_table("per partition", ["partition", "pending", "next due"], rows)
    hours = [[iso(result.now_ms + i * HOUR_MS), str(n)] for i, n in enumerate(result.per_hour)]
    _print_table("due in the next 24 hours", ["hour from", "count"], hours)


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
    from scheduler.ops.query import ListFilter, iso, ordered
    from scheduler.ops.state import pending_schedules

    if (schedule_id is None) == (prefix is None):
        raise typer.BadParameter("give exactly one of ID and --prefix")
    settings = _settings(bootstrap, props, topic)
    ids = [schedule_id] if schedule_id is not None else []
    with _errors():
        if prefix is not None:
            with _progress(f"reading {settings.state}") as progress:
                snap = pending_schedules(settings, ListFilter(prefix=prefix), progress=progress)
            items = ordered(item for _p, item in snap.pending.values())
            for item in items:
                typer.echo(
                    f"{'would cancel' if dry_run else 'cancel'} {item.schedule.id} (due {iso(item.schedule.due_ms)})"
                )
            ids = [item.schedule.id for item in items]
            if dry_run or not ids:
                typer.echo(
                    f"{len(ids)} pending schedule(s) with prefix {prefix!r}{'; nothing changed' if dry_run else ''}"
                )
                return
            if not yes and not typer.confirm(f"cancel {len(ids)} schedule(s)?"):
                typer.echo("nothing cancelled", err=True)
                raise typer.Exit(EXIT_FAILED)
        elif dry_run:
            typer.echo(f"would cancel {schedule_id}")
            return
        with SchedulerClient(settings=client_settings(settings, "kafka-scheduler-cli")) as client:
            for sid in ids:
                client.cancel(sid)
    typer.echo(f"cancelled {len(ids)} schedule(s)")


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
    """Schedule every row of FILE, idempotent by id (exit 5 if some rows were refused)."""
    from scheduler.ops.importer import ImportOptions, load_existing, run_import
    from scheduler.ops.rows import FORMATS, count_rows, detect_format, read_rows

    output = _check_output(output)
    try:
        kind = detect_format(file, fmt.lower() if fmt else None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if kind not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {FORMATS}")
    settings = _settings(bootstrap, props, topic)
    with _errors():
        with _progress(f"reading {settings.state}") as progress:
            existing = load_existing(settings, progress)
        topics = _topics(settings)
        total = count_rows(file, kind)
        with _progress(f"importing {file.name}") as progress:
            seen = [0]

            def tick() -> None:
                seen[0] += 1
                progress(seen[0], max(total, seen[0]))

            options = ImportOptions(rate=rate, dry_run=dry_run, resend_done=resend_done)
            summary = run_import(
                settings, read_rows(file, kind), options, existing=existing, topics=topics, on_row=tick
            )
    _print_import(summary, output, dry_run)
    if summary.counts["refused"]:
        raise typer.Exit(EXIT_PARTIAL)


def _topics(settings: ServiceSettings) -> frozenset[str]:
    from scheduler.kafka.clients import build_admin

    return frozenset(build_admin(settings).list_topics(timeout=15).topics)


def _print_import(summary: Any, output: str, dry_run: bool) -> None:
    counts = {k: summary.counts[k] for k in ("sent", "unchanged", "done", "refused")}
    refusals = [
        {"line": r.line, "id": r.id, "reason": r.reason, "message": r.message} for r in summary.refusals
    ]
    if output == "json":
        _print_json(
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
        f"refused {counts['refused']}"
    )
    if refusals:
        _print_table(
            "refused rows",
            ["line", "id", "reason", "message"],
            [[str(r["line"]), str(r["id"]), str(r["reason"]), str(r["message"])] for r in refusals],
        )


DltTopic = Annotated[
    str | None,
    typer.Option("--topic", "-t", help="Any dead-letter topic (default: the scheduler's <scheduled>.dlt)."),
]
Rejected = Annotated[
    bool, typer.Option("--rejected", help="Read the scheduler's <scheduled>.rejected topic.")
]
SchedTopic = Annotated[
    str | None,
    typer.Option("--scheduled-topic", help="The commands topic (env KAFKA_SCHEDULER_SCHEDULED_TOPIC)."),
]
Reason = Annotated[str | None, typer.Option(help="Only records with this reason word.")]


def _dlt_topic(settings: ServiceSettings, topic: str | None, rejected: bool) -> str:
    if topic is not None and rejected:
        raise typer.BadParameter("give --topic or --rejected, not both")
    return topic or (settings.rejected if rejected else settings.dlt)


@dlq_app.command("inspect")
def inspect(
    topic: DltTopic = None,
    rejected: Rejected = False,
    reason: Reason = None,
    limit: Annotated[int, typer.Option(min=0, help="At most this many (0 = all).")] = 100,
    output: Output = "table",
    bootstrap: Bootstrap = None,
    props: KafkaProps = None,
    scheduled_topic: SchedTopic = None,
) -> None:
    """Dead letters (or rejects) with their reason headers decoded, oldest first."""
    from itertools import islice

    from scheduler.ops.dlq import dead_letters
    from scheduler.ops.query import iso, text_or_b64

    output = _check_output(output)
    settings = _settings(bootstrap, props, scheduled_topic)
    name = _dlt_topic(settings, topic, rejected)
    with _errors(), _progress(f"reading {name}") as progress:
        letters = list(dead_letters(settings, name, reason=reason, progress=progress))
    shown = list(islice(letters, limit)) if limit else letters
    if output == "json":
        _print_json({"topic": name, "total": len(letters), "items": [x.as_json() for x in shown]})
        return
    rows = [
        [
            f"{x.partition}/{x.offset}",
            iso(x.timestamp_ms),
            _short(text_or_b64(x.key), 30),
            x.reason,
            _short(x.message, 60),
            x.origin_topic or "-",
            x.reasons.get("exception-type", ""),
        ]
        for x in shown
    ]
    title = f"{name}: {len(shown)} of {len(letters)}"
    _print_table(
        title, ["partition/offset", "time", "key", "reason", "message", "original topic", "exception"], rows
    )


@dlq_app.command("replay")
def replay(
    topic: DltTopic = None,
    rejected: Rejected = False,
    reason: Reason = None,
    to: Annotated[
        str | None, typer.Option("--to", help="Replay into this topic instead of the original.")
    ] = None,
    dry_run: DryRun = False,
    bootstrap: Bootstrap = None,
    props: KafkaProps = None,
    scheduled_topic: SchedTopic = None,
) -> None:
    """Re-produce dead letters to their original target/source topic (or --to), reason headers dropped.

    Exit 5 if some records could not be routed (they name no original topic: pass --to).
    """
    from scheduler.ops.dlq import dead_letters
    from scheduler.ops.dlq import replay as do_replay

    settings = _settings(bootstrap, props, scheduled_topic)
    name = _dlt_topic(settings, topic, rejected)
    with _errors(), _progress(f"replaying {name}") as progress:
        result = do_replay(
            settings, dead_letters(settings, name, reason=reason, progress=progress), to=to, dry_run=dry_run
        )
    verb = "would replay" if dry_run else "replayed"
    for letter, dest in result.planned:
        where = f"{dest.topic}" + (f"/{dest.partition}" if dest.partition is not None else "")
        typer.echo(f"{verb} {letter.topic}/{letter.partition}@{letter.offset} ({letter.reason}) -> {where}")
    for letter, why in result.skipped:
        typer.echo(f"skipped {letter.topic}/{letter.partition}@{letter.offset}: {why}", err=True)
    typer.echo(f"{verb} {len(result.planned)}, skipped {len(result.skipped)}")
    if result.skipped:
        raise typer.Exit(EXIT_PARTIAL)
