"""Consumer metrics: names as conventions.md spells them, read back from an injected registry."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry

from consumers.metrics import ConsumerMetrics


def test_outcome_counter_uses_the_documented_name() -> None:
    registry = CollectorRegistry()
    metrics = ConsumerMetrics(registry)
    metrics.outcome("g", "orders", "success")
    metrics.outcome("g", "orders", "success")
    labels = {"group": "g", "topic": "orders", "outcome": "success"}
    assert registry.get_sample_value("kafka_scheduler_consumer_messages_total", labels) == 2


def test_unknown_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown consumer outcome"):
        ConsumerMetrics(CollectorRegistry()).outcome("g", "t", "exploded")


def test_stats_callback_sets_lag_per_partition() -> None:
    registry = CollectorRegistry()
    metrics = ConsumerMetrics(registry)
    stats = {"topics": {"orders": {"partitions": {"0": {"consumer_lag": 7}, "-1": {"consumer_lag": 3}}}}}
    metrics.stats_callback("g")(json.dumps(stats))
    labels = {"group": "g", "topic": "orders", "partition": "0"}
    assert registry.get_sample_value("kafka_scheduler_consumer_lag_messages", labels) == 7
    unassigned = {**labels, "partition": "-1"}
    assert registry.get_sample_value("kafka_scheduler_consumer_lag_messages", unassigned) is None


def test_all_documented_families_exist() -> None:
    registry = CollectorRegistry()
    ConsumerMetrics(registry)
    names = {m.name for m in registry.collect()}
    for suffix in (
        "consumer_messages",
        "consumer_handler_seconds",
        "consumer_in_flight",
        "consumer_keys_blocked",
        "consumer_lag_messages",
        "consumer_lag_seconds",
        "consumer_oldest_in_flight_seconds",
        "consumer_rebalances",
        "consumer_done_reports",
    ):
        assert "kafka_scheduler_" + suffix in names
