"""A unit's /metrics: every worker's series under one name each, told apart by a `worker` label.

Labels, not sums: histograms and per-partition gauges stay exact, `sum by (...)` in the dashboard and alert rules
adds the workers up as it adds partitions up, and a worker that does not answer shows as
`kafka_scheduler_worker_up{worker="K"} 0` rather than as counters that go backwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from scheduler.metrics import PREFIX

__all__ = ["WORKER_UP", "WorkerMetricsCollector", "merge_expositions"]

log = logging.getLogger(__name__)

WORKER_UP = PREFIX + "worker_up"
# worker label -> its /metrics text, or None if it did not answer
Scrape = Callable[[], Mapping[str, str | None]]


def merge_expositions(texts: Mapping[str, str | None], skip: Collection[str] = ()) -> list[Metric]:
    """Families of every worker's exposition, each sample labelled worker=K; families named in `skip` are left
    out (the unit exports them itself), and a text that does not parse counts as a worker that did not answer."""
    families: dict[str, Metric] = {}
    up = GaugeMetricFamily(WORKER_UP, "1 if the worker answered this scrape, else 0.", labels=["worker"])
    for worker, text in texts.items():
        parsed = _parse(worker, text)
        up.add_metric([worker], 0.0 if parsed is None else 1.0)
        for family in parsed or ():
            if family.name in skip:
                continue
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            merged.samples.extend(s._replace(labels={**s.labels, "worker": worker}) for s in family.samples)
    return [*families.values(), up]


def _parse(worker: str, text: str | None) -> list[Metric] | None:
    if text is None:
        return None
    try:
        return list(text_string_to_metric_families(text))
    except ValueError as exc:
        log.warning(
            "worker %s sent metrics that do not parse (%s); leaving them out of this scrape", worker, exc
        )
        return None


class WorkerMetricsCollector(Collector):
    """Scrapes the workers at the unit's scrape time, so the unit's /metrics is as fresh as a worker's own."""

    def __init__(self, scrape: Scrape, skip: Collection[str] = ()) -> None:
        self._scrape = scrape
        self._skip = frozenset(skip)

    def collect(self) -> Iterable[Metric]:
        return merge_expositions(self._scrape(), self._skip)

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not scrape the workers
