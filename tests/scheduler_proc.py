"""Real scheduler instances as subprocesses (`kafka-scheduler run`), for integration and chaos tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from scheduler.config import ClientSettings
from scheduler.settings import ServiceSettings
from scheduler.topics import create_topics


def run_cli(*args: str, env: dict[str, str], timeout_s: float = 90) -> subprocess.CompletedProcess[str]:
    """`kafka-scheduler ARGS` as its own process (the real entry point, fd 2 and all), `env` over os.environ."""
    return subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SchedulerProcess:
    """One `kafka-scheduler run` process with its own metrics port and log file."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SchedulerProcess:
        env = {**os.environ, **self.env, "KAFKA_SCHEDULER_HTTP_PORT": str(self.port)}
        env["KAFKA_SCHEDULER_HTTP_HOST"] = "127.0.0.1"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scheduler.cli", "run"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as resp:
                body = resp.read()
                return resp.status, json.loads(body) if path != "/metrics" else body.decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def ready(self) -> bool:
        try:
            return self.get("/readyz")[0] == 200
        except OSError:
            return False

    def wait_ready(self, timeout_s: float = 60.0) -> SchedulerProcess:
        end = time.monotonic() + timeout_s
        while not self.ready():
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"scheduler exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > end:
                raise AssertionError(f"scheduler not ready in {timeout_s}s:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def metric(self, name: str) -> float:
        """Sum of every sample of a metric family on /metrics (0 if absent or not serving yet)."""
        try:
            _status, text = self.get("/metrics")
        except OSError:
            return 0.0
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout_s: float = 40.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class SchedulerStack:
    """Fresh scheduler topics on a real broker plus any number of scheduler instances."""

    bootstrap: str
    scheduled_topic: str
    workdir: Path
    partitions: int = 3
    group: str = field(default_factory=lambda: f"sched-{uuid.uuid4().hex[:8]}")
    extra_env: dict[str, str] = field(default_factory=dict)
    instances: list[SchedulerProcess] = field(default_factory=list)
    _admin: AdminClient | None = None

    @property
    def settings(self) -> ServiceSettings:
        return ServiceSettings(bootstrap_servers=self.bootstrap, scheduled_topic=self.scheduled_topic)

    @property
    def client_settings(self) -> ClientSettings:
        return ClientSettings(bootstrap_servers=self.bootstrap, scheduled_topic=self.scheduled_topic)

    def admin(self) -> AdminClient:
        """One admin client per stack: a temporary one would be destroyed before its futures resolve."""
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap})
        return self._admin

    def create(self) -> SchedulerStack:
        create_topics(self.admin(), self.settings, self.partitions, 1)
        return self

    def create_target(self, name: str, partitions: int = 3, config: dict[str, str] | None = None) -> str:
        futures = self.admin().create_topics([NewTopic(name, partitions, 1, config=config or {})])
        futures[name].result(timeout=30)
        deadline = time.monotonic() + 30
        while name not in self.admin().list_topics(timeout=5).topics and time.monotonic() < deadline:
            time.sleep(0.05)
        return name

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "KAFKA_SCHEDULER_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_SCHEDULER_SCHEDULED_TOPIC": self.scheduled_topic,
            "KAFKA_SCHEDULER_GROUP_ID": self.group,
            "KAFKA_SCHEDULER_SESSION_TIMEOUT_MS": "6000",
            "KAFKA_SCHEDULER_TRANSACTION_TIMEOUT_MS": "10000",
            "KAFKA_SCHEDULER_SHUTDOWN_TIMEOUT_S": "20",
            # One group member per process: tests and chaos signal, pause and fail-point that process, and
            # count on its instance id being its transactional id's (tests/integration/test_workers.py
            # runs units of several).
            "KAFKA_SCHEDULER_WORKERS": "1",
            **self.extra_env,
            **extra,
        }

    def start_instance(self, *, wait: bool = True, **env: str) -> SchedulerProcess:
        n = len(self.instances)
        instance = SchedulerProcess(
            self.env(KAFKA_SCHEDULER_INSTANCE_ID=f"i{n}", **env), self.workdir / f"s{n}.log"
        )
        self.instances.append(instance)
        instance.start()
        return instance.wait_ready() if wait else instance

    def close(self) -> None:
        for instance in self.instances:
            instance.stop(timeout_s=25)
