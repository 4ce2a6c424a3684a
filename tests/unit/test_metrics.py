"""Scheduler and client metrics: documented names read back from an injected registry; the collector."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from scheduler.metrics import (
    LATENESS_BUCKETS,
    ClientMetrics,
    PartitionSnapshot,
    SchedulerMetrics,
    observe_many,
)

NOW = 1_700_000_000.0


def make(registry: CollectorRegistry | None = None) -> tuple[CollectorRegistry, SchedulerMetrics]:
    registry = registry or CollectorRegistry()
    return registry, SchedulerMetrics(registry, version="1.2.3", now=lambda: NOW)


def test_observe_many_counts_exactly_as_observe_one_by_one() -> None:
    values = [0.0, 0.0005, *LATENESS_BUCKETS, *(b + 1e-9 for b in LATENESS_BUCKETS), 1e9, 90.0, 90.0]
    one, many = make(), make()
    for value in values:
        one[1].fire_lateness.observe(value)
    observe_many(many[1].fire_lateness, values)
    observe_many(many[1].fire_lateness, [])

    def samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
        return [
            (s.name, s.labels, s.value)
            for metric in registry.collect()
            if metric.name == "kafka_scheduler_fire_lateness_seconds"
            for s in metric.samples
            if not s.name.endswith("_created")
        ]

    assert samples(many[0]) == samples(one[0]) and len(samples(one[0])) > len(LATENESS_BUCKETS)


def test_counters_use_documented_names_and_labels() -> None:
    registry, m = make()
    m.commands.labels("scheduled").inc(3)
    m.fired.labels("ok").inc()
    m.cancelled.inc()
    m.rejected.labels("due_out_of_range").inc()
    m.dead_letters.labels("unknown_target_topic").inc(2)
    m.transactions.labels("aborted").inc()
    m.rebuild_records.inc(10)
    get = registry.get_sample_value
    assert get("kafka_scheduler_commands_total", {"result": "scheduled"}) == 3
    assert get("kafka_scheduler_fired_total", {"result": "ok"}) == 1
    assert get("kafka_scheduler_cancelled_total") == 1
    assert get("kafka_scheduler_rejected_total", {"reason": "due_out_of_range"}) == 1
    assert get("kafka_scheduler_dead_letters_total", {"reason": "unknown_target_topic"}) == 2
    assert get("kafka_scheduler_transactions_total", {"result": "aborted"}) == 1
    assert get("kafka_scheduler_rebuild_records_total") == 10


def test_known_results_start_at_zero_so_rates_exist_before_the_first_event() -> None:
    registry, _ = make()
    for result in ("scheduled", "cancelled", "rejected"):
        assert registry.get_sample_value("kafka_scheduler_commands_total", {"result": result}) == 0
    for result in ("ok", "dead_lettered"):
        assert registry.get_sample_value("kafka_scheduler_fired_total", {"result": result}) == 0
    for result in ("committed", "aborted", "failed"):
        assert registry.get_sample_value("kafka_scheduler_transactions_total", {"result": result}) == 0


def test_gauges_and_build_info() -> None:
    registry, m = make()
    m.overdue.set(4)
    m.assigned_partitions.set(6)
    m.rebuilding_partitions.set(2)
    get = registry.get_sample_value
    assert get("kafka_scheduler_overdue_schedules") == 4
    assert get("kafka_scheduler_assigned_partitions") == 6
    assert get("kafka_scheduler_rebuilding_partitions") == 2
    assert get("kafka_scheduler_build_info", {"version": "1.2.3"}) == 1


def test_fire_lateness_buckets_span_1ms_to_120s() -> None:
    registry, m = make()
    m.fire_lateness.observe(0.0005)
    m.fire_lateness.observe(90.0)
    get = registry.get_sample_value
    assert get("kafka_scheduler_fire_lateness_seconds_bucket", {"le": "0.001"}) == 1
    assert get("kafka_scheduler_fire_lateness_seconds_bucket", {"le": "60.0"}) == 1
    assert get("kafka_scheduler_fire_lateness_seconds_bucket", {"le": "120.0"}) == 2
    assert get("kafka_scheduler_fire_lateness_seconds_count") == 2
    m.transaction_seconds.observe(0.02)
    m.rebuild_seconds.observe(3.0)
    assert get("kafka_scheduler_transaction_seconds_count") == 1
    assert get("kafka_scheduler_rebuild_seconds_sum") == 3.0


def test_two_registries_do_not_share_state() -> None:
    first, a = make()
    second, _ = make()
    a.cancelled.inc()
    assert first.get_sample_value("kafka_scheduler_cancelled_total") == 1
    assert second.get_sample_value("kafka_scheduler_cancelled_total") == 0


def test_collector_exports_pending_next_due_and_windows() -> None:
    registry, m = make()
    snapshots = [
        PartitionSnapshot(
            0, pending=5, next_due_ms=int((NOW + 30) * 1000), due_within={"1m": 1, "1h": 5}, recurring=3
        ),
        PartitionSnapshot(3, pending=2, next_due_ms=int((NOW - 2.5) * 1000), due_within={"1m": 2}),
        PartitionSnapshot(7, pending=0, next_due_ms=None, due_within={}),
    ]
    m.set_pending_source(lambda: snapshots)
    get = registry.get_sample_value
    assert get("kafka_scheduler_pending_schedules", {"partition": "0"}) == 5
    assert get("kafka_scheduler_pending_schedules", {"partition": "7"}) == 0
    assert get("kafka_scheduler_recurring_schedules", {"partition": "0"}) == 3
    assert get("kafka_scheduler_recurring_schedules", {"partition": "3"}) == 0
    assert get("kafka_scheduler_next_due_seconds", {"partition": "0"}) == pytest.approx(30)
    assert get("kafka_scheduler_next_due_seconds", {"partition": "3"}) == pytest.approx(-2.5)
    assert get("kafka_scheduler_next_due_seconds", {"partition": "7"}) is None
    assert get("kafka_scheduler_due_schedules", {"partition": "0", "window": "1h"}) == 5
    assert get("kafka_scheduler_due_schedules", {"partition": "3", "window": "1m"}) == 2


def test_collector_reads_the_source_at_each_scrape() -> None:
    registry, m = make()
    state = {"pending": 1}
    m.set_pending_source(lambda: [PartitionSnapshot(0, state["pending"], None, {})])
    assert registry.get_sample_value("kafka_scheduler_pending_schedules", {"partition": "0"}) == 1
    state["pending"] = 9
    assert registry.get_sample_value("kafka_scheduler_pending_schedules", {"partition": "0"}) == 9


def test_collector_exports_nothing_without_a_source() -> None:
    registry, _ = make()
    assert b"kafka_scheduler_pending_schedules{" not in generate_latest(registry)


def test_a_failing_source_does_not_break_the_scrape(caplog: pytest.LogCaptureFixture) -> None:
    registry, m = make()
    m.cancelled.inc()

    def broken() -> list[PartitionSnapshot]:
        raise RuntimeError("index locked")

    m.set_pending_source(broken)
    with caplog.at_level(logging.ERROR, logger="scheduler.metrics"):
        text = generate_latest(registry).decode()
    assert "kafka_scheduler_cancelled_total 1.0" in text
    assert "kafka_scheduler_pending_schedules{" not in text
    assert "pending-schedules source failed" in caplog.text


def test_client_metrics() -> None:
    registry = CollectorRegistry()
    c = ClientMetrics(registry)
    c.commands_sent.labels("ok").inc()
    c.send_seconds.observe(0.01)
    assert registry.get_sample_value("kafka_scheduler_client_commands_sent_total", {"result": "ok"}) == 1
    assert registry.get_sample_value("kafka_scheduler_client_send_seconds_count") == 1


def test_scheduler_and_client_metrics_share_one_registry() -> None:
    registry = CollectorRegistry()
    SchedulerMetrics(registry)
    ClientMetrics(registry)
    names = {m.name for m in registry.collect()}
    assert "kafka_scheduler_build_info" in names
    assert "kafka_scheduler_client_send_seconds" in names
