"""Everything about an App beyond its first-class arguments, grouped so the constructor stays small."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

__all__ = ["ConsumerSettings"]


@dataclass(frozen=True)
class ConsumerSettings:
    """Topic templates take `{topic}` and `{group}`; librdkafka settings in `kafka` pass through verbatim."""

    scheduled_topic: str = "scheduled"
    retry_topic: str = "{topic}.{group}.retry"
    dlt_topic: str = "{topic}.{group}.dlt"
    blocked_topic: str = "{topic}.{group}.blocked"
    create_topics: bool = True
    commit_interval_s: float = 1.0
    poll_batch: int = 500
    max_pending_per_partition: int = 10_000
    max_queued_per_key: int = 1_000
    shutdown_timeout_s: float = 30.0
    revoke_timeout_s: float = 10.0
    handler_timeout_s: float = 300.0
    liveness_timeout_s: float = 30.0
    metrics_host: str = "0.0.0.0"
    metrics_port: int | None = None
    registry: CollectorRegistry | None = None
    kafka: Mapping[str, str] = field(default_factory=dict)

    def retry_for(self, topic: str, group: str) -> str:
        return self.retry_topic.format(topic=topic, group=group)

    def dlt_for(self, topic: str, group: str) -> str:
        return self.dlt_topic.format(topic=topic, group=group)

    def blocked_for(self, topic: str, group: str) -> str:
        return self.blocked_topic.format(topic=topic, group=group)
