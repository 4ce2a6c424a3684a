"""Every command, with the cluster down or a bad setting, ends in one line on stderr and its documented exit code
(docs/cli.md): no traceback, no librdkafka reconnect lines. The "cluster" is a closed port on loopback."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from scheduler.cli import app
from tests.scheduler_proc import run_cli

runner = CliRunner()
LIBRDKAFKA_MARKS = ("rdkafka#", "%3|", "%4|", "%6|", "FAIL")


def closed_port() -> str:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """A clean KAFKA_SCHEDULER_* environment with short timeouts, run from an empty directory."""
    for name in list(os.environ):
        if name.startswith("KAFKA_SCHEDULER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KAFKA_SCHEDULER_REQUEST_TIMEOUT_S", "1")
    monkeypatch.setenv("KAFKA_SCHEDULER_BOOTSTRAP_SERVERS", closed_port())
    return {"bootstrap": os.environ["KAFKA_SCHEDULER_BOOTSTRAP_SERVERS"]}


def one_line(args: list[str], capfd: pytest.CaptureFixture[str], code: int) -> str:
    """Run `kafka-scheduler ARGS` in-process; the single stderr line, after checking the exit code and fd 2."""
    capfd.readouterr()
    result = runner.invoke(app, args, catch_exceptions=False)
    raw = capfd.readouterr().err  # librdkafka writes to fd 2 directly when no logger is set
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == code, (result.exit_code, result.output)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output + raw
    assert not any(mark in raw for mark in LIBRDKAFKA_MARKS), raw[:2000]
    return lines[0]


DOWN = [
    ["get", "x"],
    ["list"],
    ["stats"],
    ["cancel", "x"],
    ["cancel", "--prefix", "p", "--yes"],
    ["import", "rows.csv"],
    ["dlq", "inspect"],
    ["dlq", "replay"],
    ["topics", "create"],
    ["topics", "verify"],
]


@pytest.mark.parametrize("args", DOWN, ids=" ".join)
def test_a_down_cluster_is_one_line_and_exit_1(
    env: dict[str, str], args: list[str], capfd: pytest.CaptureFixture[str]
) -> None:
    Path("rows.csv").write_text("id,topic,delay\na,t,1m\n", encoding="utf-8")
    line = one_line(args, capfd, 1)
    assert line.startswith(f"error: cannot reach Kafka at {env['bootstrap']} within 1s"), line
    assert "Connection refused" in line and "--bootstrap-servers" in line


BAD_SETTINGS: list[tuple[list[str], dict[str, str], str]] = [
    (["list", "-X", "bogus.prop=1"], {}, 'No such configuration property: "bogus.prop"'),
    (["config", "show", "-X", "bogus.prop=1"], {}, "bogus.prop"),
    (["get", "x", "-X", "linger.ms=soon"], {}, "Invalid value for configuration property"),
    (["config", "show", "-X", "isolation.level=read_uncommitted"], {}, "contradicts the forced"),
    (["run", "-X", "bogus.prop=1"], {}, "bogus.prop"),
    (["list"], {"KAFKA_SCHEDULER_HTTP_PORT": "abc"}, "KAFKA_SCHEDULER_HTTP_PORT='abc'"),
    (
        ["config", "show"],
        {"KAFKA_SCHEDULER_TARGET_ALLOW": "("},
        "KAFKA_SCHEDULER_TARGET_ALLOW='(': not a regular",
    ),
    (["config", "show"], {"KAFKA_SCHEDULER_KAFKA__BOGUS_PROP": "1"}, "bogus.prop"),
    (["list", "--topic", "bad name!"], {}, "'bad name!' is not a legal Kafka topic name"),
    (["stats", "--topic", "x" * 245], {}, ".rejected' is not a legal Kafka topic name"),
    (["run", "--http-port", "99999"], {}, "KAFKA_SCHEDULER_HTTP_PORT=99999"),
]


@pytest.mark.parametrize(("args", "extra", "words"), BAD_SETTINGS, ids=lambda v: str(v)[:40])
def test_a_bad_setting_is_one_line_and_exit_2(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    args: list[str],
    extra: dict[str, str],
    words: str,
) -> None:
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    line = one_line(args, capfd, 2)
    assert line.startswith("bad configuration: ") and words in line, line


@pytest.mark.parametrize(
    "args",
    [
        ["list", "--due-before", "9" * 400 + "s"],
        ["list", "--due-after", "9" * 400],
        ["list", "--due-before", "1e400"],
    ],
    ids=["400-nines-seconds", "400-nines-ms", "float"],
)
def test_absurd_times_are_bad_usage(
    env: dict[str, str], capfd: pytest.CaptureFixture[str], args: list[str]
) -> None:
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "not a time" in result.output


def test_environment_style_librdkafka_keys_work(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SCHEDULER_KAFKA__CLIENT_ID", "foo")
    monkeypatch.setenv("KAFKA_SCHEDULER_PRODUCER__PARTITIONER", "consistent_random")
    result = runner.invoke(app, ["config", "show", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["producer"]["client.id"] == "foo" and doc["consumer"]["client.id"] == "foo"
    assert doc["producer"]["partitioner"] == "consistent_random"
    assert "client_id" not in doc["producer"]


def test_the_scheduler_partitions_like_java_unless_told_otherwise(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["config", "show", "--json"], catch_exceptions=False)
    assert json.loads(result.stdout)["producer"]["partitioner"] == "murmur2_random"


@pytest.mark.parametrize("content", ["", "\n", "not json", "[1, 2]", '{"pid": 1}'], ids=repr)
def test_an_unreadable_broker_state_file_is_one_line(
    env: dict[str, str], capfd: pytest.CaptureFixture[str], tmp_path: Path, content: str
) -> None:
    state = tmp_path / "broker.json"
    state.write_text(content)
    empty = not content.strip()
    if empty:
        status = runner.invoke(
            app, ["dev", "broker", "status", "--state", str(state)], catch_exceptions=False
        )
        assert status.exit_code == 1 and status.stdout == "not running\n"
    else:
        line = one_line(["dev", "broker", "status", "--state", str(state)], capfd, 1)
        assert line.startswith(f"error: {state} is not a broker state file"), line
    stop = runner.invoke(app, ["dev", "broker", "stop", "--state", str(state)], catch_exceptions=False)
    assert "Traceback" not in stop.output
    if empty:
        assert stop.exit_code == 0 and "nothing to stop" in stop.stdout
    else:
        assert stop.exit_code == 1 and "not a broker state file" in stop.stderr
    assert state.read_text() == content  # never overwritten: it may not be ours


def test_an_empty_broker_state_file_counts_as_no_broker(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scheduler.dev import broker

    started: list[Any] = []

    def fake_start(port: int | None, **_kw: Any) -> broker.BrokerHandle:
        started.append(port)
        return broker.BrokerHandle(os.getpid(), "127.0.0.1:1", str(tmp_path))

    monkeypatch.setattr(broker, "start", fake_start)
    state = tmp_path / "empty.json"
    state.write_text("")  # what `mktemp` leaves
    result = runner.invoke(app, ["dev", "broker", "start", "--state", str(state)], catch_exceptions=False)
    assert result.exit_code == 0 and result.stdout.strip() == "127.0.0.1:1" and started == [None]
    assert broker.read_state(state) == broker.BrokerHandle(os.getpid(), "127.0.0.1:1", str(tmp_path))


def test_the_installed_command_too(env: dict[str, str]) -> None:
    """Through the real entry point (fd 2 and all): `list` and `run` with the cluster down, `run` with a bad port."""
    listed = run_cli("list", env={})
    assert listed.returncode == 1 and listed.stderr.count("\n") == 1, listed.stderr[-3000:]
    assert "cannot reach Kafka" in listed.stderr and "Traceback" not in listed.stderr
    run = run_cli("run", env={"KAFKA_SCHEDULER_HTTP_PORT": "abc"})
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr[-3000:]
    assert run.stderr.startswith("bad configuration: KAFKA_SCHEDULER_HTTP_PORT='abc'")
    single = {"KAFKA_SCHEDULER_HTTP_PORT": "0", "KAFKA_SCHEDULER_WORKERS": "1"}
    down = run_cli("run", env=single)  # a service: it logs, then one last line
    last = down.stderr.strip().splitlines()[-1]
    assert down.returncode == 1 and last.startswith(
        f"fatal: cannot reach Kafka at {env['bootstrap']} within 1s"
    )
    assert "Traceback" not in down.stderr and len(down.stderr.splitlines()) <= 5, down.stderr[-3000:]
    # A unit of workers ends on the same line, printed once (each worker's failure is logged once too).
    unit = run_cli("run", "--workers", "2", env={"KAFKA_SCHEDULER_HTTP_PORT": "0"})
    lines = unit.stderr.strip().splitlines()
    assert unit.returncode == 1 and lines[-1].startswith(
        f"fatal: cannot reach Kafka at {env['bootstrap']} within 1s"
    ), unit.stderr[-3000:]
    assert "Traceback" not in unit.stderr
    assert sum(line.startswith("fatal: ") for line in lines) == 1, unit.stderr[-3000:]
