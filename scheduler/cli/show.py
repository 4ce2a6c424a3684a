"""What the operator commands share: output format, progress bars on stderr, tables, error handling."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from scheduler.cli.common import load_settings
from scheduler.errors import SchedulerError
from scheduler.settings import ServiceSettings

__all__ = [
    "EXIT_FAILED",
    "EXIT_NOT_FOUND",
    "EXIT_PARTIAL",
    "DryRun",
    "Output",
    "check_output",
    "errors",
    "print_json",
    "print_table",
    "progress_bar",
    "settings_for",
    "short",
]

EXIT_FAILED = 1
EXIT_NOT_FOUND = 4
EXIT_PARTIAL = 5

Output = Annotated[str, typer.Option("--output", "-o", help="table or json.", case_sensitive=False)]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")]


def settings_for(bootstrap: str | None, props: list[str] | None, topic: str | None) -> ServiceSettings:
    return load_settings(bootstrap, props, scheduled_topic=topic)


def check_output(output: str) -> str:
    if output.lower() not in ("table", "json"):
        raise typer.BadParameter(f"--output must be table or json, got {output!r}")
    return output.lower()


@contextmanager
def progress_bar(what: str) -> Iterator[Callable[[int, int], None]]:
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
def errors() -> Iterator[None]:
    """A library error becomes one line on stderr and exit 1; bad time arguments exit 2."""
    try:
        yield
    except SchedulerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from exc


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console(width=200).print(table)


def short(text: str | None, width: int = 40) -> str:
    if text is None:
        return "∅"
    return text if len(text) <= width else text[: width - 1] + "…"
