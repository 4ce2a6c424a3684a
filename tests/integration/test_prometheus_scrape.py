"""A real Prometheus scrapes our HTTP server, loads the alert rules and answers queries about our metrics.

TODO: scrape a real scheduler (`kafka-scheduler run` against the session broker) once the service is wired to
HttpServer; today it scrapes an HttpServer serving a SchedulerMetrics registry, which is what the service exposes.
"""

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
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from prometheus_client import CollectorRegistry

from scheduler.http import HealthState, HttpServer
from scheduler.metrics import PartitionSnapshot, SchedulerMetrics

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


@pytest.fixture
def scheduler_endpoint() -> Iterator[int]:
    registry = CollectorRegistry()
    metrics = SchedulerMetrics(registry, version="it-1")
    metrics.fired.labels("ok").inc(7)
    metrics.set_pending_source(lambda: [PartitionSnapshot(0, 3, int(time.time() * 1000) + 60_000, {"5m": 3})])
    health = HealthState()
    health.mark_started()
    server = HttpServer(registry, health)
    server.start()
    yield server.port
    server.stop()


@pytest.fixture
def prometheus(tmp_path: Path, scheduler_endpoint: int) -> Iterator[int]:
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
            {
                "job_name": "kafka-scheduler",
                "static_configs": [{"targets": [f"127.0.0.1:{scheduler_endpoint}"]}],
            }
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


def test_prometheus_scrapes_our_metrics_and_loads_the_rules(prometheus: int, scheduler_endpoint: int) -> None:
    def target_up() -> dict[str, Any] | None:
        targets = api(prometheus, "targets")["activeTargets"]
        ours = [t for t in targets if t["labels"]["job"] == "kafka-scheduler"]
        return ours[0] if ours and ours[0]["health"] == "up" else None

    target = wait_for("the scheduler target to be up", target_up)
    assert target["scrapeUrl"] == f"http://127.0.0.1:{scheduler_endpoint}/metrics"

    def query(expr: str) -> list[dict[str, Any]] | None:
        result: list[dict[str, Any]] = api(prometheus, "query", query=expr)["result"]
        return result or None

    (build,) = wait_for("build_info", lambda: query("kafka_scheduler_build_info"))
    assert build["metric"]["version"] == "it-1"
    assert build["value"][1] == "1"
    (fired,) = wait_for("fired_total", lambda: query('kafka_scheduler_fired_total{result="ok"}'))
    assert fired["value"][1] == "7"
    (pending,) = wait_for("pending", lambda: query("kafka_scheduler_pending_schedules"))
    assert pending["metric"]["partition"] == "0"
    assert pending["value"][1] == "3"

    def alert_rules() -> set[str] | None:
        groups = api(prometheus, "rules", type="alert")["groups"]
        names = {rule["name"] for group in groups for rule in group["rules"]}
        return names or None

    names = wait_for("alert rules to load", alert_rules)
    assert {"SchedulerDown", "SchedulerNotFiring", "ConsumerLagSecondsHigh"} <= names
    assert len(names) == 11
