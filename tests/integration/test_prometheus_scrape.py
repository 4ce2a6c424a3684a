"""A real Prometheus scrapes a running scheduler and a running consumer app, loads the alert rules, answers queries."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from consumers import App, ConsumerSettings, InMemoryStore
from scheduler.client import SchedulerClient
from tests.scheduler_proc import SchedulerStack

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], deadline_s: float = 60.0) -> T:
    """Poll `probe` until it returns a value; every wait has a deadline."""
    deadline = time.monotonic() + deadline_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except OSError as exc:  # Prometheus not listening yet
            last_error, value = exc, None
        if value is not None:
            return value
        threading.Event().wait(0.2)
    pytest.fail(f"timed out after {deadline_s}s waiting for {what} (last error: {last_error})")


def api(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]


@pytest.fixture(params=[1, 2], ids=["one-process", "unit-of-2-workers"])
def workers(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def scheduler_stack(
    workers: int, kafka_bootstrap: str, unique: Callable[[str], str], tmp_path: Path
) -> Iterator[SchedulerStack]:
    """A single process, and a unit of two workers behind one port (its series carry a worker label)."""
    stack = SchedulerStack(kafka_bootstrap, unique("scheduled"), tmp_path).create()
    stack.start_instance(KAFKA_SCHEDULER_WORKERS=str(workers))
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture
def endpoints(scheduler_stack: SchedulerStack) -> Iterator[tuple[int, int]]:
    """A real `kafka-scheduler run` that has fired 3 schedules, and a consumer App that handled them."""
    target = scheduler_stack.create_target(f"{scheduler_stack.scheduled_topic}-target")
    handled: list[bytes | None] = []
    app = App(
        f"prom-{scheduler_stack.group}",
        bootstrap_servers=scheduler_stack.bootstrap,
        idempotency=InMemoryStore(),
        settings=ConsumerSettings(scheduled_topic=scheduler_stack.scheduled_topic, metrics_port=free_port()),
    )
    app.handler(target)(lambda message: handled.append(message.value))
    with app.running():
        with SchedulerClient(settings=scheduler_stack.client_settings) as client:
            for i in range(3):
                client.schedule(f"p-{i}", topic=target, value=str(i), key=f"k{i}", delay=timedelta(seconds=1))
            client.schedule("later", topic=target, value="later", delay=timedelta(hours=1))
        wait_for("the consumer to handle 3 fires", lambda: True if len(handled) == 3 else None)
        assert app.settings.metrics_port is not None
        yield scheduler_stack.instances[0].port, app.settings.metrics_port


@pytest.fixture
def prometheus(tmp_path: Path, endpoints: tuple[int, int]) -> Iterator[int]:
    exe = shutil.which("prometheus")
    if exe is None:
        if IN_CI:
            pytest.fail("prometheus is not installed (CI must run the scrape test)", pytrace=False)
        pytest.skip("prometheus is not installed")
    shutil.copy(ROOT / "deploy/prometheus/alerts.yml", tmp_path / "alerts.yml")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [
            {"job_name": "kafka-scheduler", "static_configs": [{"targets": [f"127.0.0.1:{endpoints[0]}"]}]},
            {"job_name": "kafka-consumers", "static_configs": [{"targets": [f"127.0.0.1:{endpoints[1]}"]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    cmd = [
        exe,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def test_prometheus_scrapes_scheduler_and_consumer_and_loads_the_rules(
    prometheus: int, endpoints: tuple[int, int], workers: int
) -> None:
    def targets_up() -> list[dict[str, Any]] | None:
        targets = api(prometheus, "targets")["activeTargets"]
        up = [t for t in targets if t["health"] == "up"]
        return up if len(up) == 2 else None

    up = wait_for("both targets to be up", targets_up)
    assert {t["labels"]["job"] for t in up} == {"kafka-scheduler", "kafka-consumers"}

    def query(expr: str) -> list[dict[str, Any]] | None:
        result: list[dict[str, Any]] = api(prometheus, "query", query=expr)["result"]
        return result or None

    (build,) = wait_for("build_info", lambda: query("kafka_scheduler_build_info"))
    assert build["value"][1] == "1"  # one per unit, whatever its workers
    members = wait_for("assigned_partitions", lambda: query("kafka_scheduler_assigned_partitions"))
    assert len(members) == workers and sum(float(m["value"][1]) for m in members) == 3
    (fired,) = wait_for("fired_total", lambda: query('sum(kafka_scheduler_fired_total{result="ok"})'))
    assert fired["value"][1] == "3"
    pending = wait_for("pending", lambda: query("sum(kafka_scheduler_pending_schedules)"))
    assert pending[0]["value"][1] == "1"  # "later" is still waiting
    lateness = wait_for("lateness", lambda: query("sum(kafka_scheduler_fire_lateness_seconds_count)"))
    assert lateness[0]["value"][1] == "3"
    handled = wait_for(
        "consumer outcomes", lambda: query('sum(kafka_scheduler_consumer_messages_total{outcome="success"})')
    )
    assert handled[0]["value"][1] == "3"

    def alert_rules() -> set[str] | None:
        groups = api(prometheus, "rules", type="alert")["groups"]
        names = {rule["name"] for group in groups for rule in group["rules"]}
        return names or None

    names = wait_for("alert rules to load", alert_rules)
    assert {"SchedulerDown", "SchedulerNotFiring", "ConsumerLagSecondsHigh"} <= names
    from tests.unit.test_alert_rules import ALERTS

    assert names == ALERTS, "the real Prometheus loaded every shipped rule"
