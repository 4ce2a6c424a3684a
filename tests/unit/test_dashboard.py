"""The Grafana dashboard queries only metrics the code exports, covers the documented panels, and parses."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from consumers.metrics import ConsumerMetrics
from scheduler.metrics import ClientMetrics, PartitionSnapshot, SchedulerMetrics

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "kafka-scheduler.json"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
METRIC_TOKEN = re.compile(r"\bkafka_scheduler_[A-Za-z0-9_]+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
# What the dashboard must show (the brief's panel list), as metric families.
MUST_SHOW = {
    "kafka_scheduler_fired_total",
    "kafka_scheduler_fire_lateness_seconds_bucket",
    "kafka_scheduler_pending_schedules",
    "kafka_scheduler_due_schedules",
    "kafka_scheduler_overdue_schedules",
    "kafka_scheduler_rejected_total",
    "kafka_scheduler_dead_letters_total",
    "kafka_scheduler_rebuild_records_total",
    "kafka_scheduler_rebuilding_partitions",
    "kafka_scheduler_transaction_seconds_bucket",
    "kafka_scheduler_transactions_total",
    "kafka_scheduler_consumer_messages_total",
    "kafka_scheduler_consumer_lag_messages",
    "kafka_scheduler_consumer_lag_seconds",
    "kafka_scheduler_consumer_in_flight",
    "kafka_scheduler_consumer_keys_blocked",
}


def exported_series_names() -> set[str]:
    """Every series name the services can export, as Prometheus stores them (counter -> _total, ...)."""
    registry = CollectorRegistry()
    SchedulerMetrics(registry).set_pending_source(lambda: [PartitionSnapshot(0, 1, 0, {"1m": 1})])
    ClientMetrics(registry)
    ConsumerMetrics(registry)
    names: set[str] = set()
    for family in registry.collect():
        assert family.type in SUFFIXES, f"{family.name}: unexpected metric type {family.type}"
        names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in doc["panels"]:
        yield panel
        yield from panel.get("panels", [])


def exprs(doc: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in panels(doc) for t in p.get("targets", []) if "expr" in t]
    for var in doc.get("templating", {}).get("list", []):
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if var.get("type") == "query" and isinstance(query, str):
            found.append(query)
    return found


def test_every_queried_metric_is_exported() -> None:
    exported = exported_series_names()
    used = {token for expr in exprs(dashboard()) for token in METRIC_TOKEN.findall(expr)}
    assert used, "no kafka_scheduler_ metrics found in the dashboard"
    assert used <= exported, f"dashboard queries metrics nobody exports: {sorted(used - exported)}"


def test_the_name_check_can_fail() -> None:
    exported = exported_series_names()
    assert "kafka_scheduler_fired_total" in exported
    assert "kafka_scheduler_fired" not in exported  # a counter is stored with _total
    assert "kafka_scheduler_fire_lateness_seconds_bucket" in exported
    assert "kafka_scheduler_overdue_schedules_total" not in exported


def test_dashboard_shows_the_documented_panels() -> None:
    used = {token for expr in exprs(dashboard()) for token in METRIC_TOKEN.findall(expr)}
    assert used >= MUST_SHOW, f"missing panels for {sorted(MUST_SHOW - used)}"
    kinds = {p["type"] for p in panels(dashboard())}
    assert "heatmap" in kinds, "fire lateness needs a heatmap from the histogram buckets"


def test_panels_have_unique_ids_and_refids() -> None:
    doc = dashboard()
    ids = [p["id"] for p in panels(doc)]
    assert len(ids) == len(set(ids))
    for panel in panels(doc):
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]
    assert doc["uid"] == "kafka-scheduler"


def test_provisioning_points_at_the_dashboards_and_datasource() -> None:
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (ds,) = datasource["datasources"]
    assert ds["type"] == "prometheus"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "kafka-scheduler.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_every_expr_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each expr (Grafana variables replaced) as a recording rule."""
    exe = shutil.which("promtool")
    if exe is None:
        if IN_CI:
            pytest.fail("promtool is not installed (CI must check the dashboard queries)", pytrace=False)
        pytest.skip("promtool is not installed")
    substitutions = {"$__rate_interval": "5m", "$instance": ".*", "$group": ".*"}
    rules = []
    for i, raw in enumerate(exprs(dashboard())):
        if raw.startswith("label_values("):
            continue  # a Grafana function, not PromQL
        expr = raw
        for var, value in substitutions.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"unsubstituted Grafana variable in {raw}"
        rules.append({"record": f"dashboard:expr_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    cmd = [exe, "check", "rules", str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
