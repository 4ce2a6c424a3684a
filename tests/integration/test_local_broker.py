"""The local broker script itself: these tests start their own brokers (two JVM starts in this file)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.dev import broker
from scheduler.errors import LocalBrokerError
from tests.conftest import IN_CI, wait_until

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _java_and_jars() -> Iterator[None]:
    """As the session fixture does: skip with a reason off CI when Java/jars are unavailable, fail on CI."""
    try:
        broker.check_java()
        broker.ensure_jars()
    except LocalBrokerError as exc:
        if IN_CI:
            pytest.fail(f"local broker prerequisites missing (CI must not skip): {exc}", pytrace=False)
        pytest.skip(f"local broker prerequisites missing: {exc}")
    yield


def _process_group(pgid: int) -> list[int]:
    """Pids (not zombies) whose process group is `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def _metadata_brokers(bootstrap: str) -> int:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    return len(admin.list_topics(timeout=10).brokers)


def test_start_status_stop_leaves_no_process(tmp_path: Path) -> None:
    handle = broker.start(run_dir=tmp_path / "run")
    try:
        assert broker.status(handle) is True
        assert _process_group(handle.pid), "the JVM runs in its own process group"
        assert handle.bootstrap.startswith("127.0.0.1:")
        assert _metadata_brokers(handle.bootstrap) == 1
        assert (tmp_path / "run" / "broker.json").exists()
    finally:
        broker.stop(handle)
    assert broker.status(handle) is False
    wait_until(lambda: not _process_group(handle.pid), 10, f"process group {handle.pid} to be empty")


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    exe = REPO / ".venv" / "bin" / "kafka-scheduler"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from scheduler.cli import main; main()"]
    proc = subprocess.run(
        [*cmd, "dev", "broker", *args], capture_output=True, text=True, timeout=150, env=env, check=False
    )
    if check:
        assert proc.returncode == 0, f"{args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_cli_start_is_idempotent_and_stop_ends_it(tmp_path: Path) -> None:
    state = tmp_path / "broker.json"
    try:
        first = _cli("start", "--state", str(state)).stdout.strip().splitlines()[-1]
        handle = broker.BrokerHandle.from_json(state.read_text())
        assert first == handle.bootstrap
        second = _cli("start", "--state", str(state)).stdout.strip().splitlines()[-1]
        assert second == first, "a second start must reuse the running broker"
        assert broker.BrokerHandle.from_json(state.read_text()).pid == handle.pid
        assert _metadata_brokers(first) == 1
        assert handle.bootstrap in _cli("status", "--state", str(state)).stdout

        stopped = _cli("stop", "--state", str(state))
        assert str(handle.pid) in stopped.stdout
        assert not state.exists()
        assert not Path(handle.run_dir).exists()
        assert _cli("status", "--state", str(state), check=False).returncode == 1
        wait_until(lambda: not _process_group(handle.pid), 10, f"process group {handle.pid} to be empty")
    finally:
        if state.exists():  # a failed assertion must not leave a JVM behind
            leftover = broker.BrokerHandle.from_json(state.read_text())
            broker.stop(leftover)
            shutil.rmtree(leftover.run_dir, ignore_errors=True)


def test_a_cluster_id_starting_with_a_dash_still_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    """A random base64url id starts with '-' about once in 64 starts; the storage tool must not read it as a flag."""
    real = broker.base64.urlsafe_b64encode
    monkeypatch.setattr(broker.base64, "urlsafe_b64encode", lambda raw: b"-" + real(raw)[1:])
    handle = broker.start()
    try:
        assert broker.status(handle)
    finally:
        broker.stop(handle)
