"""What the scheduler would refuse at intake and the import can tell before sending: a target that does not
exist, is forbidden (internal, one of the scheduler's own, outside the allow/deny patterns) or has fewer
partitions than the row asks for. A row refused here is never sent, so a rerun does not send it again."""

from __future__ import annotations

import re
from dataclasses import dataclass

from confluent_kafka import KafkaException

from scheduler.errors import ClusterUnreachable, InvalidTopic
from scheduler.kafka.clients import build_admin
from scheduler.model import RejectReason, Schedule
from scheduler.settings import ServiceSettings, forbidden_target

__all__ = ["TargetPolicy"]


@dataclass(frozen=True)
class TargetPolicy:
    """The cluster's topics (name -> partition count) and the scheduler's target rules, from the same settings."""

    partitions: dict[str, int]
    own: frozenset[str]
    deny: re.Pattern[str] | None = None
    allow: re.Pattern[str] | None = None

    @classmethod
    def of(cls, settings: ServiceSettings) -> TargetPolicy:
        """Read the topics of the cluster (ClusterUnreachable if it does not answer)."""
        try:
            metadata = build_admin(settings).list_topics(timeout=settings.request_timeout_s)
        except KafkaException as exc:
            raise ClusterUnreachable(f"listing the topics of {settings.bootstrap_servers}: {exc}") from None
        partitions = {
            name: len(meta.partitions) for name, meta in metadata.topics.items() if meta.error is None
        }
        deny, allow = re.compile(settings.target_deny), re.compile(settings.target_allow)
        return cls(partitions, settings.own_topics, deny, allow)

    def check(self, schedule: Schedule) -> None:
        """InvalidTopic, with the reason word the scheduler would reject the command with."""
        topic = schedule.target_topic
        why = forbidden_target(topic, self.own, self.deny, self.allow)
        if why is not None:
            raise InvalidTopic(f"{why} (forbidden_target_topic)", RejectReason.FORBIDDEN_TARGET_TOPIC)
        count = self.partitions.get(topic)
        if count is None:
            raise InvalidTopic(
                f"target topic {topic} does not exist: create it first (unknown_target_topic)",
                RejectReason.UNKNOWN_TARGET_TOPIC,
            )
        if schedule.target_partition is not None and schedule.target_partition >= count:
            raise InvalidTopic(
                f"partition {schedule.target_partition} but {topic} has {count} (invalid_target_topic)"
            )
