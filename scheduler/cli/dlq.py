"""`kafka-scheduler dlq inspect|replay`: dead letters and rejects, decoded and sent back (scheduler/ops/dlq.py,
scheduler/ops/replay.py). `--topic` is the commands topic, as in every command; `--dlt` the dead-letter topic."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from scheduler.cli.common import Bootstrap, KafkaProps, cluster_settings
from scheduler.cli.failures import EXIT_FAILED, EXIT_PARTIAL
from scheduler.cli.show import DryRun, Output, check_output, print_json, print_table, progress_bar, short
from scheduler.settings import ServiceSettings

if TYPE_CHECKING:
    from scheduler.ops.replay import ReplayResult

__all__ = ["app", "inspect", "replay"]

app = typer.Typer(no_args_is_help=True, help="Inspect and replay dead letters and rejected commands.")

DltTopic = Annotated[
    str | None,
    typer.Option("--dlt", "-t", help="Any dead-letter topic (default: the scheduler's <scheduled>.dlt)."),
]
Rejected = Annotated[
    bool, typer.Option("--rejected", help="Read the scheduler's <scheduled>.rejected topic.")
]
SchedTopic = Annotated[
    str | None,
    typer.Option(
        "--topic",
        "--scheduled-topic",
        help="The commands topic (env KAFKA_SCHEDULER_SCHEDULED_TOPIC); --scheduled-topic is its old name.",
    ),
]
Reason = Annotated[str | None, typer.Option(help="Only records with this reason word.")]


def _dlt_topic(settings: ServiceSettings, topic: str | None, rejected: bool) -> str:
    if topic is not None and rejected:
        raise typer.BadParameter("give --dlt or --rejected, not both")
    return topic or (settings.rejected if rejected else settings.dlt)


@app.command("inspect")
def inspect(
    dlt: DltTopic = None,
    rejected: Rejected = False,
    reason: Reason = None,
    limit: Annotated[int, typer.Option(min=0, help="At most this many (0 = all).")] = 100,
    output: Output = "table",
    bootstrap: Bootstrap = None,
    props: KafkaProps = None,
    topic: SchedTopic = None,
) -> None:
    """Dead letters (or rejects) with their reason headers decoded, oldest first."""
    from itertools import islice

    from scheduler.ops.dlq import dead_letters
    from scheduler.ops.query import iso, text_or_b64

    output = check_output(output)
    settings = cluster_settings(bootstrap, props, topic)
    name = _dlt_topic(settings, dlt, rejected)
    with progress_bar(f"reading {name}") as progress:
        letters = list(dead_letters(settings, name, reason=reason, progress=progress))
    shown = list(islice(letters, limit)) if limit else letters
    if output == "json":
        print_json({"topic": name, "total": len(letters), "items": [x.as_json() for x in shown]})
        return
    rows = [
        [
            f"{x.record.partition}/{x.record.offset}",
            iso(x.record.timestamp_ms),
            short(text_or_b64(x.record.key), 30),
            x.reason,
            short(x.message, 60),
            x.origin_topic or "-",
            x.reasons.get("exception-type", ""),
        ]
        for x in shown
    ]
    title = f"{name}: {len(shown)} of {len(letters)}"
    print_table(
        title, ["partition/offset", "time", "key", "reason", "message", "original topic", "exception"], rows
    )


@app.command("replay")
def replay(
    dlt: DltTopic = None,
    rejected: Rejected = False,
    reason: Reason = None,
    to: Annotated[
        str | None, typer.Option("--to", help="Replay into this topic instead of the original.")
    ] = None,
    journal: Annotated[
        Path,
        typer.Option(
            help="What earlier replays delivered: skipped now, and what this one delivers is added."
        ),
    ] = Path("dlq-replayed.jsonl"),
    include_replayed: Annotated[
        bool, typer.Option(help="Also send what the journal says was delivered already (duplicates).")
    ] = False,
    dry_run: DryRun = False,
    bootstrap: Bootstrap = None,
    props: KafkaProps = None,
    topic: SchedTopic = None,
) -> None:
    """Re-produce dead letters to their original target/source topic (or --to), reason headers dropped, each
    once: a rerun sends only what was not delivered before (--journal). Exit 1 if some records were not
    delivered (they are named), 5 if some could not be routed (they name no original topic: pass --to)."""
    from scheduler.ops.dlq import dead_letters
    from scheduler.ops.replay import open_journal
    from scheduler.ops.replay import replay as do_replay

    settings = cluster_settings(bootstrap, props, topic)
    name = _dlt_topic(settings, dlt, rejected)
    with open_journal(settings, journal) as record, progress_bar(f"replaying {name}") as progress:
        letters = dead_letters(settings, name, reason=reason, progress=progress)
        result = do_replay(settings, letters, record, to=to, dry_run=dry_run, resend=include_replayed)
    _print_replay(result, dry_run, journal)


def _print_replay(result: ReplayResult, dry_run: bool, journal: Path) -> None:
    verb = "would replay" if dry_run else "replayed"
    failed = {id(letter) for letter, _dest, _why in result.failed}
    for letter, dest in result.planned:
        if id(letter) not in failed:
            where = f"{dest.topic}" + (f"/{dest.partition}" if dest.partition is not None else "")
            typer.echo(f"{verb} {letter.where} ({letter.reason}) -> {where}")
    for letter, dest, why in result.failed:
        typer.echo(f"not delivered: {letter.where} ({letter.reason}) -> {dest.topic}: {why}", err=True)
    for letter, why in result.skipped:
        typer.echo(f"skipped {letter.where}: {why}", err=True)
    done = len(result.planned) if dry_run else result.delivered
    typer.echo(
        f"{verb} {done}, not delivered {len(result.failed)}, skipped {len(result.skipped)}, "
        f"replayed before {len(result.replayed_before)} (journal {journal})"
    )
    if result.failed:
        typer.echo(
            f"error: {len(result.failed)} record(s) not delivered: fix the cause and rerun; only those are sent "
            f"again ({journal} lists the delivered ones)",
            err=True,
        )
        raise typer.Exit(EXIT_FAILED)
    if result.skipped:
        raise typer.Exit(EXIT_PARTIAL)
