"""Consumer framework metrics on an injected registry (never the global one); names per conventions.md."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["OUTCOMES", "REBALANCE_EVENTS", "ConsumerMetrics"]

PREFIX = "kafka_scheduler_"
OUTCOMES = ("success", "retry_scheduled", "dead_lettered", "duplicate_skipped", "failed")
REBALANCE_EVENTS = ("assigned", "revoked", "lost")
HANDLER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ConsumerMetrics:
    """Every consumer metric; labels are bounded (group, topic, partition, outcome, event), never a key."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(PREFIX + name, doc, labels, registry=registry)

        def gauge(name: str, doc: str, *labels: str) -> Gauge:
            return Gauge(PREFIX + name, doc, labels, registry=registry)

        self.messages = counter(
            "consumer_messages",
            "Records handled by the consumer framework, by outcome.",
            "group",
            "topic",
            "outcome",
        )
        self.handler_seconds = Histogram(
            PREFIX + "consumer_handler_seconds",
            "Wall time of one handler call.",
            ["group", "topic"],
            buckets=HANDLER_BUCKETS,
            registry=registry,
        )
        self.in_flight = gauge(
            "consumer_in_flight", "Records fetched and not yet finished (queued or running).", "group"
        )
        self.keys_blocked = gauge(
            "consumer_keys_blocked", "Keys waiting behind a retrying record (block-key ordering).", "group"
        )
        self.lag_messages = gauge(
            "consumer_lag_messages",
            "Consumer lag in records, from librdkafka statistics.",
            "group",
            "topic",
            "partition",
        )
        self.lag_seconds = gauge(
            "consumer_lag_seconds",
            "Age (by record timestamp) of the oldest fetched, unfinished record per partition; 0 when none.",
            "group",
            "topic",
            "partition",
        )
        self.oldest_in_flight_seconds = gauge(
            "consumer_oldest_in_flight_seconds",
            "How long the oldest unfinished record has been in flight.",
            "group",
        )
        self.handler_timeouts = counter(
            "consumer_handler_timeouts",
            "Handler calls given up on past handler_timeout_s (then retried or dead-lettered).",
            "group",
            "topic",
        )
        self.abandoned_threads = gauge(
            "consumer_abandoned_threads",
            "Worker threads left behind in a sync handler past its time limit, still running.",
            "group",
        )
        self.done_reports = counter(
            "consumer_done_reports",
            "Done reports sent to the scheduler for records carrying scheduler-await-done, by the outcome that "
            "ended them (success, dead_lettered, duplicate_skipped).",
            "group",
            "topic",
            "outcome",
        )
        self.rebalances = counter(
            "consumer_rebalances",
            "Rebalance callbacks, by event (assigned, revoked, lost).",
            "group",
            "event",
        )

    def outcome(self, group: str, topic: str, outcome: str) -> None:
        """Count one finished record; `outcome` is one of OUTCOMES."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown consumer outcome {outcome!r}; expected one of {OUTCOMES}")
        self.messages.labels(group, topic, outcome).inc()

    def rebalance(self, group: str, event: str) -> None:
        self.rebalances.labels(group, event).inc()

    def stats_callback(self, group: str) -> Callable[[str], None]:
        """A librdkafka `stats_cb`: sets consumer_lag_messages from the statistics JSON."""

        def on_stats(raw: str) -> None:
            for topic, partition, lag in parse_lag(raw):
                self.lag_messages.labels(group, topic, str(partition)).set(lag)

        return on_stats


def parse_lag(raw: str) -> Iterable[tuple[str, int, int]]:
    """(topic, partition, consumer_lag) for every assigned partition in a librdkafka statistics document."""
    doc = json.loads(raw)
    for topic, tstats in doc.get("topics", {}).items():
        for pid, pstats in tstats.get("partitions", {}).items():
            partition = int(pid)
            lag = int(pstats.get("consumer_lag", -1))
            if partition >= 0 and lag >= 0:
                yield topic, partition, lag
