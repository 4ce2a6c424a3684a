"""`kafka-scheduler dlq inspect|replay`: dead letters and rejects, decoded and sent back (scheduler/ops/dlq.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from scheduler.cli.common import Bootstrap, KafkaProps, cluster_settings
from scheduler.cli.failures import EXIT_PARTIAL
from scheduler.cli.show import DryRun, Output, check_output, print_json, print_table, progress_bar, short
from scheduler.settings import ServiceSettings

__all__ = ["app", "inspect", "replay"]

app = typer.Typer(no_args_is_help=True, help="Inspect and replay dead letters and rejected commands.")

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


@app.command("inspect")
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

    output = check_output(output)
    settings = cluster_settings(bootstrap, props, scheduled_topic)
    name = _dlt_topic(settings, topic, rejected)
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

    settings = cluster_settings(bootstrap, props, scheduled_topic)
    name = _dlt_topic(settings, topic, rejected)
    with progress_bar(f"replaying {name}") as progress:
        result = do_replay(
            settings, dead_letters(settings, name, reason=reason, progress=progress), to=to, dry_run=dry_run
        )
    verb = "would replay" if dry_run else "replayed"
    for letter, dest in result.planned:
        where = f"{dest.topic}" + (f"/{dest.partition}" if dest.partition is not None else "")
        typer.echo(f"{verb} {letter.where} ({letter.reason}) -> {where}")
    for letter, why in result.skipped:
        typer.echo(f"skipped {letter.where}: {why}", err=True)
    typer.echo(f"{verb} {len(result.planned)}, skipped {len(result.skipped)}")
    if result.skipped:
        raise typer.Exit(EXIT_PARTIAL)
