"""Scheduler and client metrics on an injected registry (never the global one); names per conventions.md.

State that lives in the due index (pending count, next due time, upcoming due counts) is read at scrape time
by a collector, so the hot path never updates per-partition gauges.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "COMMAND_RESULTS",
    "DUE_WINDOWS",
    "FIRE_RESULTS",
    "LATENESS_BUCKETS",
    "OCCURRENCE_RESULTS",
    "PREFIX",
    "TRANSACTION_RESULTS",
    "ClientMetrics",
    "PartitionSnapshot",
    "PendingCollector",
    "SchedulerMetrics",
    "observe_many",
]

log = logging.getLogger(__name__)

PREFIX = "kafka_scheduler_"
COMMAND_RESULTS = (
    "scheduled",
    "cancelled",
    "rejected",
    "forwarded",
    "relocated",
    "recurring",
    "pause",
    "resume",
    "done",
    "backfill",
    "stale_done",
)
# Occurrences of recurring schedules: fired (on time or late), skipped (never fired: missed policy or overlap),
# missed (reached later than the grace: fired late or skipped), backfilled (fired by a backfill command).
OCCURRENCE_RESULTS = ("fired", "skipped", "missed", "backfilled")
FIRE_RESULTS = ("ok", "dead_lettered")
TRANSACTION_RESULTS = ("committed", "aborted", "fenced", "failed", "indeterminate")
# Window label -> seconds; the labels are the keys of PartitionSnapshot.due_within.
DUE_WINDOWS: Mapping[str, int] = {"1m": 60, "5m": 300, "1h": 3600, "6h": 21600, "24h": 86400}
LATENESS_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
TRANSACTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REBUILD_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
SEND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class PartitionSnapshot:
    """What the due index knows about one owned partition, taken at scrape time."""

    partition: int
    pending: int
    next_due_ms: int | None
    due_within: Mapping[str, int]  # window label ("1m", "5m", "1h", "6h", "24h") -> pending due within it
    recurring: int = 0  # of `pending`, the recurring schedules


PendingSource = Callable[[], list[PartitionSnapshot]]


class PendingCollector(Collector):
    """Exports pending_schedules, recurring_schedules, next_due_seconds and due_schedules from a snapshot source
    at scrape time."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._source: PendingSource | None = None
        self._now = now

    def set_source(self, source: PendingSource | None) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        source = self._source
        if source is None:
            return []
        try:
            snapshots = source()
        except Exception:
            # A scrape must never fail because the index is busy or broken: export nothing and say why.
            log.exception("pending-schedules source failed; exporting no pending metrics this scrape")
            return []
        pending = GaugeMetricFamily(
            PREFIX + "pending_schedules",
            "Schedules waiting to fire, per owned partition.",
            labels=["partition"],
        )
        recurring = GaugeMetricFamily(
            PREFIX + "recurring_schedules",
            "Recurring schedules pending (each counts once, however many occurrences are left), per partition.",
            labels=["partition"],
        )
        next_due = GaugeMetricFamily(
            PREFIX + "next_due_seconds",
            "Seconds until the earliest pending schedule is due (negative: overdue), per partition.",
            labels=["partition"],
        )
        due = GaugeMetricFamily(
            PREFIX + "due_schedules",
            "Pending schedules due within a window from now, per partition.",
            labels=["partition", "window"],
        )
        now = self._now()
        for snap in snapshots:
            label = str(snap.partition)
            pending.add_metric([label], snap.pending)
            recurring.add_metric([label], snap.recurring)
            if snap.next_due_ms is not None:
                next_due.add_metric([label], snap.next_due_ms / 1000.0 - now)
            for window, count in snap.due_within.items():
                due.add_metric([label, window], count)
        return [pending, recurring, next_due, due]

    def describe(self) -> Iterable[Metric]:
        # Returning the families without calling the source keeps registration free of side effects.
        return [
            GaugeMetricFamily(PREFIX + "pending_schedules", "", labels=["partition"]),
            GaugeMetricFamily(PREFIX + "recurring_schedules", "", labels=["partition"]),
            GaugeMetricFamily(PREFIX + "next_due_seconds", "", labels=["partition"]),
            GaugeMetricFamily(PREFIX + "due_schedules", "", labels=["partition", "window"]),
        ]


def package_version() -> str:
    try:
        return metadata.version("kafka-scheduler")
    except metadata.PackageNotFoundError:
        return "unknown"


class SchedulerMetrics:
    """Every scheduler-service metric; labels are bounded (result, reason, partition), never an id or key."""

    def __init__(
        self, registry: CollectorRegistry, version: str | None = None, now: Callable[[], float] = time.time
    ) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(PREFIX + name, doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(PREFIX + name, doc, labels, registry=registry)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(PREFIX + name, doc, buckets=buckets, registry=registry)

        self.commands = counter("commands", "Commands consumed from `scheduled`, by result.", ("result",))
        self.fired = counter("fired", "Schedules fired at their due time, by result.", ("result",))
        self.cancelled = counter("cancelled", "Pending schedules removed by a cancel command.")
        self.rejected = counter("rejected", "Commands written to the rejected topic, by reason.", ("reason",))
        self.dead_letters = counter(
            "dead_letters", "Schedules dead-lettered at fire time, by reason.", ("reason",)
        )
        self.overdue = gauge("overdue_schedules", "Pending schedules whose due time has passed.")
        self.prepared = counter(
            "prepared_fires",
            "Fires produced into a transaction ahead of their due time and committed at it (prepare_ahead_ms).",
        )
        self.fire_lateness = histogram(
            "fire_lateness_seconds", "Fired-at minus due-at of each fired schedule.", LATENESS_BUCKETS
        )
        self.transaction_seconds = histogram(
            "transaction_seconds",
            "Wall time from begin to commit or abort of one tick's transaction.",
            TRANSACTION_BUCKETS,
        )
        self.transactions = counter("transactions", "Tick transactions, by result.", ("result",))
        self.rebuild_seconds = histogram(
            "rebuild_seconds", "Time to replay one partition's state up to its watermark.", REBUILD_BUCKETS
        )
        self.rebuild_records = counter(
            "rebuild_records", "State records replayed while rebuilding partitions."
        )
        self.rebuilding_partitions = gauge(
            "rebuilding_partitions", "Assigned partitions still replaying state."
        )
        self.assigned_partitions = gauge(
            "assigned_partitions", "Partitions of `scheduled` this instance owns."
        )
        self.fenced_departed = counter(
            "fenced_departed",
            "Transactional ids of departed owners fenced on assignment (their open transaction aborted at once).",
        )
        self.occurrences = counter(
            "occurrences",
            "Occurrences of recurring schedules, by result: fired, skipped (missed policy or overlap), missed "
            "(reached later than KAFKA_SCHEDULER_MISSED_GRACE_MS), backfilled.",
            ("result",),
        )
        self.recurring_ended = counter(
            "recurring_ended", "Recurring schedules that ended (ends_at passed or max_runs reached)."
        )
        self.build_info = gauge("build_info", "Always 1; the version label says what runs.", ("version",))
        self.build_info.labels(version or package_version()).set(1)
        # Pre-create known label values so rate() sees a 0 before the first event, not a missing series.
        for result in COMMAND_RESULTS:
            self.commands.labels(result)
        for result in FIRE_RESULTS:
            self.fired.labels(result)
        for result in TRANSACTION_RESULTS:
            self.transactions.labels(result)
        for result in OCCURRENCE_RESULTS:
            self.occurrences.labels(result)
        self._pending = PendingCollector(now)
        registry.register(self._pending)

    def set_pending_source(self, source: PendingSource | None) -> None:
        """Install fn() -> list[PartitionSnapshot], called at every scrape: keep it cheap and thread-safe."""
        self._pending.set_source(source)


class ClientMetrics:
    """Metrics of the producer-side SchedulerClient."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.commands_sent = Counter(
            PREFIX + "client_commands_sent",
            "Commands the client sent to `scheduled`, by delivery result.",
            ["result"],
            registry=registry,
        )
        self.send_seconds = Histogram(
            PREFIX + "client_send_seconds",
            "Time from send to delivery report of one command.",
            buckets=SEND_BUCKETS,
            registry=registry,
        )


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """`histogram.observe(v)` for each value, with one increment per bucket touched instead of two per value (a
    tick observes the lateness of every fire). Falls back to observe() on a labelled or changed Histogram."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(value)
        return
    # observe() counts a value in the first bucket whose upper bound is >= it; the last bound is +Inf
    for i, count in Tally(bisect.bisect_left(bounds, value) for value in values).items():
        buckets[min(i, len(buckets) - 1)].inc(count)
    total.inc(sum(values))
