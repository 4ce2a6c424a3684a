"""scheduler.dev.broker fails early with a message that says what to do; none of these start a JVM."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from scheduler.dev import broker
from scheduler.errors import LocalBrokerError


def _no_process(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"no process may be started here: {args}")


def test_port_taken_is_refused_before_any_jvm_starts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(broker, "check_java", lambda: "/usr/bin/java")
    monkeypatch.setattr(broker, "ensure_jars", lambda: tmp_path / "libs")
    monkeypatch.setattr(subprocess, "Popen", _no_process)
    monkeypatch.setattr(subprocess, "run", _no_process)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with pytest.raises(LocalBrokerError, match=rf"port {port}\b.*taken"):
            broker.start(port=port, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_java_missing_says_install_java_17(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalBrokerError, match=r"(?i)install .*17"):
        broker.check_java()


def test_java_too_old_mentions_17(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalBrokerError, match=r"Java 17 or newer") as caught:
        broker.check_java()
    assert "11.0.2" in str(caught.value)


def test_java_17_is_accepted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'openjdk version \"17.0.15\" 2025-04-15' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert broker.check_java() == str(fake)


def test_mvn_missing_with_empty_cache_names_maven(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cache, bin_dir = tmp_path / "cache", tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("KAFKA_SCHEDULER_CACHE", str(cache))
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(LocalBrokerError, match="Maven"):
        broker.ensure_jars()
    assert not (cache / f"kafka-{broker.KAFKA_VERSION}" / ".complete").exists()


def test_cached_jars_need_no_maven(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = tmp_path / f"kafka-{broker.KAFKA_VERSION}"
    home.mkdir()
    (home / ".complete").write_text("kafka_2.13.jar")
    monkeypatch.setenv("KAFKA_SCHEDULER_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    assert broker.ensure_jars() == home / "libs"
