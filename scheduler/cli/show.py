"""What the operator commands share: output format, progress bars on stderr, tables."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

__all__ = ["DryRun", "Output", "check_output", "print_json", "print_table", "progress_bar", "short"]

Output = Annotated[str, typer.Option("--output", "-o", help="table or json.", case_sensitive=False)]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")]


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
