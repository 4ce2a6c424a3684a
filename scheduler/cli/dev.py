"""`kafka-scheduler dev broker start|stop|status`: a real Apache Kafka broker on loopback, no Docker."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import typer

from scheduler.dev import broker

app = typer.Typer(no_args_is_help=True, help="Development helpers.")
broker_app = typer.Typer(no_args_is_help=True, help="A local Apache Kafka broker (KRaft, single node).")
app.add_typer(broker_app, name="broker")

STATE_HELP = "File recording the running broker (pid, bootstrap, run dir, SASL/SSL addresses, CA file)."


def _state_file(path: Path | None) -> Path:
    return path or Path(os.environ.get("KAFKA_SCHEDULER_RUN_DIR", ".run")) / "broker.json"


@broker_app.command("start")
def start(
    port: Annotated[int | None, typer.Option(help="Listener port (default: a free one).")] = None,
    sasl: Annotated[bool, typer.Option(help="Also open a SASL_PLAINTEXT SCRAM-SHA-256 listener.")] = False,
    ssl: Annotated[
        bool,
        typer.Option(help="Also open an SSL listener (throwaway CA; address and CA file in the state file)."),
    ] = False,
    state: Annotated[Path | None, typer.Option(help=STATE_HELP)] = None,
) -> None:
    """Start the broker (idempotent: an already running one is reused) and print its bootstrap address."""
    state_file = _state_file(state)
    recorded = broker.read_state(state_file)
    if recorded is not None and broker.status(recorded):
        typer.echo(recorded.bootstrap)
        return
    handle = broker.start(port, sasl=sasl, ssl=ssl)  # LocalBrokerError: one line, exit 1
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(handle.to_json())
    typer.echo(handle.bootstrap)


@broker_app.command("stop")
def stop(state: Annotated[Path | None, typer.Option(help=STATE_HELP)] = None) -> None:
    """Stop the broker (SIGTERM, then SIGKILL after 30 s) and delete its data."""
    state_file = _state_file(state)
    handle = broker.read_state(state_file)
    if handle is None:
        typer.echo(f"no local broker recorded in {state_file}; nothing to stop")
        return
    broker.stop(handle)
    shutil.rmtree(handle.run_dir, ignore_errors=True)
    state_file.unlink()
    typer.echo(f"stopped broker pid {handle.pid}")


@broker_app.command("status")
def status(state: Annotated[Path | None, typer.Option(help=STATE_HELP)] = None) -> None:
    """Print the bootstrap address if the broker runs; exit 1 if not."""
    handle = broker.read_state(_state_file(state))
    if handle is not None and broker.status(handle):
        typer.echo(f"running pid {handle.pid} at {handle.bootstrap}")
        return
    typer.echo("not running")
    raise typer.Exit(1)


@app.command("demo")
def demo(
    count: Annotated[int, typer.Option(help="How many schedules to send.")] = 12,
    spread: Annotated[float, typer.Option(help="Seconds over which they fall due.")] = 10.0,
    stop_all: Annotated[bool, typer.Option("--stop", help="Stop everything the demo started.")] = False,
) -> None:
    """Broker, two schedulers, an example consumer and Prometheus; schedules that visibly fire."""
    from scheduler.dev.demo import run_demo, stop_demo

    if stop_all:
        stop_demo()
    else:
        run_demo(count, spread)
