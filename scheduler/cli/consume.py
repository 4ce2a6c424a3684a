"""`kafka-scheduler consume module:app`: import an App and run it until SIGTERM/SIGINT."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import typer

from consumers.app import App
from scheduler.errors import ConfigError, TopicConfigError
from scheduler.logs import configure_logging_from_env

__all__ = ["consume", "load_app"]


def load_app(target: str) -> App:
    """Resolve `package.module:attribute` to an App; the current directory is importable like `python -m`."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise typer.BadParameter(f"expected module:app, got {target!r}")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise typer.BadParameter(f"cannot import {module_name!r}: {exc}") from exc
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise typer.BadParameter(f"{target!r} is {type(app).__name__}, not a consumers.App")
    return app


def consume(target: str = typer.Argument(..., help="module:app, e.g. examples.reservations:app")) -> None:
    """Run a consumer App (drains in-flight work and commits on SIGTERM/SIGINT)."""
    configure_logging_from_env("INFO")
    app = load_app(target)
    try:
        app.run()
    except TopicConfigError as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(3) from exc
    except ConfigError as exc:
        typer.echo(f"bad configuration: {exc}", err=True)
        raise typer.Exit(2) from exc
