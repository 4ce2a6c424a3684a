"""`--workers`: the setting, the cores "auto" means, each worker's ids, the unit's merged /metrics and health."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from scheduler import cpus
from scheduler.cli import app
from scheduler.errors import ConfigError
from scheduler.http import HealthState, HttpServer
from scheduler.metrics import PartitionSnapshot, SchedulerMetrics
from scheduler.service.merge import WORKER_UP, WorkerMetricsCollector, merge_expositions
from scheduler.service.unit import Worker, WorkerUnit, worker_settings
from scheduler.settings import ServiceSettings, load


@pytest.mark.parametrize(
    ("value", "workers"), [("auto", "auto"), (" Auto ", "auto"), ("1", 1), ("8", 8), (3, 3), ("256", 256)]
)
def test_workers_accepts_auto_or_a_count(value: object, workers: object) -> None:
    assert load(workers=value).workers == workers


@pytest.mark.parametrize("value", ["0", "-2", "1.5", "two", "", "257", True])
def test_workers_refuses_anything_else_naming_the_variable(value: object) -> None:
    with pytest.raises(ConfigError, match=r"KAFKA_SCHEDULER_WORKERS=.*expected 'auto' or a whole number"):
        load(workers=value)


def test_workers_comes_from_the_environment_and_defaults_to_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_SCHEDULER_WORKERS", raising=False)
    assert ServiceSettings().workers == "auto"
    monkeypatch.setenv("KAFKA_SCHEDULER_WORKERS", "3")
    assert ServiceSettings().workers == 3 and ServiceSettings().worker_count == 3


def test_auto_is_the_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("scheduler.settings.usable_cpus", lambda: 6)
    assert load(workers="auto").worker_count == 6
    assert load(workers="2").worker_count == 2


def test_a_bad_workers_option_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["run", "--workers", "0"])
    assert result.exit_code == 2
    assert "KAFKA_SCHEDULER_WORKERS='0'" in result.output


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "200000 100000\n"}, 2),
        ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 cores: both workers get CPU time
        ({"cpu.max": "50000 100000\n"}, 1),
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu.max": "garbage\n"}, None),
        ({}, None),
    ],
)
def test_cgroup_quota(tmp_path: Path, files: dict[str, str], quota: int | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpus.cgroup_quota(tmp_path) == quota


def test_usable_cpus_is_affinity_capped_by_the_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3}, raising=False)
    assert cpus.usable_cpus(tmp_path) == 4
    (tmp_path / "cpu.max").write_text("200000 100000")
    assert cpus.usable_cpus(tmp_path) == 2
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda _pid: {3}, raising=False)
    assert cpus.usable_cpus(tmp_path) == 1


def test_each_worker_has_its_own_stable_transactional_id_and_a_loopback_port() -> None:
    unit = load(instance_id="pod-3", group_id="g", workers="4", http_port=9400, txn_log="/var/log/txn.jsonl")
    ids = []
    for k in range(4):
        worker = worker_settings(unit, k)
        assert worker.instance_id == f"pod-3-w{k}"
        assert (worker.workers, worker.http_host, worker.http_port) == (1, "127.0.0.1", 0)
        assert worker.txn_log == Path(f"/var/log/txn-w{k}.jsonl")
        ids.append(worker.transactional_id)
    assert ids == ["g-pod-3-w0", "g-pod-3-w1", "g-pod-3-w2", "g-pod-3-w3"]
    assert worker_settings(unit, 1).transactional_id == worker_settings(unit, 1).transactional_id  # stable
    assert unit.transactional_id not in ids  # never the id of a one-worker instance with the same instance id
    assert worker_settings(load(workers="2", http_port=None), 0).http_port is None


def test_worker_settings_survive_the_pipe_with_secrets() -> None:
    settings = worker_settings(load(workers="2", sasl_password="hunter2", kafka={"client.id": "x"}), 1)
    back = pickle.loads(pickle.dumps(settings))
    assert isinstance(back, ServiceSettings)
    assert back.sasl_password is not None and back.sasl_password.get_secret_value() == "hunter2"
    assert back.model_dump() == settings.model_dump()


def exposition(fired: int, lateness: list[float], partitions: dict[int, int]) -> str:
    registry = CollectorRegistry()
    metrics = SchedulerMetrics(registry, version="9.9")
    metrics.fired.labels("ok").inc(fired)
    for seconds in lateness:
        metrics.fire_lateness.observe(seconds)
    metrics.set_pending_source(
        lambda: [PartitionSnapshot(p, n, None, {"1m": n}) for p, n in partitions.items()]
    )
    return generate_latest(registry).decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def merged_text(texts: dict[str, str | None], skip: set[str] | None = None) -> str:
    registry = CollectorRegistry()
    registry.register(WorkerMetricsCollector(lambda: texts, skip or set()))
    return generate_latest(registry).decode()


def test_merge_keeps_every_series_of_every_worker_under_its_own_name_with_a_worker_label() -> None:
    w0 = exposition(3, [0.01, 0.2], {0: 5, 1: 7})
    w1 = exposition(4, [0.5], {2: 1})
    merged = samples(merged_text({"0": w0, "1": w1}))
    for worker, text in (("0", w0), ("1", w1)):
        for (name, labels), value in samples(text).items():
            assert merged[(name, labels | {("worker", worker)})] == value
    fired = {
        k: v for k, v in merged.items() if k[0] == "kafka_scheduler_fired_total" and ("result", "ok") in k[1]
    }
    assert sum(fired.values()) == 7  # sum by (result) (...) in the dashboard adds workers up
    late = "kafka_scheduler_fire_lateness_seconds_count"
    assert sum(v for (name, _labels), v in merged.items() if name == late) == 3
    pending = {
        dict(labels)["partition"]: v
        for (n, labels), v in merged.items()
        if n == "kafka_scheduler_pending_schedules"
    }
    assert pending == {"0": 5.0, "1": 7.0, "2": 1.0}
    # The same family names as one instance exports (dashboards and alert rules keep working), plus worker_up.
    names = {f.name for f in text_string_to_metric_families(w0)}
    assert {f.name for f in text_string_to_metric_families(merged_text({"0": w0, "1": w1}))} == names | {
        WORKER_UP
    }


def test_merge_leaves_out_what_the_unit_exports_itself_and_a_silent_worker() -> None:
    w0 = exposition(1, [], {})
    text = merged_text(
        {"0": w0, "1": None, "2": "this is { not an exposition"}, skip={"kafka_scheduler_build_info"}
    )
    got = samples(text)
    assert not [k for k in got if k[0] == "kafka_scheduler_build_info"]
    up = {dict(labels)["worker"]: v for (name, labels), v in got.items() if name == WORKER_UP}
    assert up == {"0": 1.0, "1": 0.0, "2": 0.0}
    assert {dict(labels).get("worker") for (name, labels) in got if name != WORKER_UP} == {"0"}


def test_merge_of_nothing_is_only_worker_up() -> None:
    assert [m.name for m in merge_expositions({})] == [WORKER_UP]


class _Running:
    """The part of a Popen the unit's health reads: a process that is still running (or has exited)."""

    def __init__(self, returncode: int | None = None) -> None:
        self.returncode = returncode

    def poll(self) -> int | None:
        return self.returncode


@pytest.fixture
def worker_servers() -> Any:
    servers: list[HttpServer] = []

    def serve(health: HealthState) -> int:
        server = HttpServer(CollectorRegistry(), health)
        server.start()
        servers.append(server)
        return server.port

    yield serve
    for server in servers:
        server.stop()


def test_the_unit_is_ready_only_when_every_worker_is_and_live_only_while_every_worker_runs(
    worker_servers: Any,
) -> None:
    healths = [HealthState(), HealthState()]
    unit = WorkerUnit(load(workers="2"))
    unit.workers = [Worker(k, cast(Any, _Running()), port=worker_servers(h)) for k, h in enumerate(healths)]
    unit.health.mark_started()
    assert unit.health.readiness() == (
        False,
        {"started": True, "not_draining": True, "worker_0_ready": False, "worker_1_ready": False},
    )
    healths[0].mark_started()
    assert unit.health.readiness()[0] is False
    healths[1].mark_started()
    assert unit.health.readiness() == (
        True,
        {"started": True, "not_draining": True, "worker_0_ready": True, "worker_1_ready": True},
    )
    assert unit.health.liveness() == (
        True,
        {"loop_ticking": True, "worker_0_alive": True, "worker_1_alive": True},
    )
    healths[1].set_live_check("handler_not_stuck", lambda: False)
    assert unit.health.liveness()[1]["worker_1_alive"] is False
    healths[1].set_live_check("handler_not_stuck", None)
    cast(Any, unit.workers[0].proc).returncode = -9
    ok, checks = unit.health.liveness()
    assert not ok and checks["worker_0_alive"] is False and checks["worker_1_alive"] is True
    unit.stop()
    assert unit.health.readiness()[1]["not_draining"] is False


def test_a_starting_worker_is_alive_but_not_ready() -> None:
    unit = WorkerUnit(load(workers="2"))
    unit.workers = [Worker(0, cast(Any, _Running()))]  # no port reported yet
    unit.health.mark_started()
    assert unit.health.liveness() == (True, {"loop_ticking": True, "worker_0_alive": True})
    assert unit.health.readiness()[1]["worker_0_ready"] is False
