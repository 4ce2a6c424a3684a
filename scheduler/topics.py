"""The scheduler's topics: what they must look like, creating them, and verifying them before the service runs.

State topic settings (and why):
- cleanup.policy=compact, exactly: a delete policy would drop schedules due after retention.ms.
- delete.retention.ms=7 days: tombstones must outlive the slowest rebuild, or fired schedules resurrect.
- min.cleanable.dirty.ratio=0.1, segment.ms=1 hour: fired and replaced versions are removed soon, so a rebuild
  reads little more than what is still pending.
- max.compaction.lag.ms=1 day: a quiet partition is still compacted.
- same partition count as `scheduled`: the state of id X lives in the partition X's commands came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata, ConfigResource, NewTopic

from scheduler.errors import TopicConfigError
from scheduler.settings import ServiceSettings

__all__ = ["STATE_CONFIG", "Problem", "create_topics", "topic_specs", "verify_topics"]

WEEK_MS = 7 * 24 * 3600 * 1000
STATE_CONFIG = {
    "cleanup.policy": "compact",
    "delete.retention.ms": str(WEEK_MS),
    "min.cleanable.dirty.ratio": "0.1",
    "segment.ms": str(3600 * 1000),
    "max.compaction.lag.ms": str(24 * 3600 * 1000),
}
LOG_CONFIG = {"cleanup.policy": "delete", "retention.ms": str(WEEK_MS)}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a topic, and what the operator should do about it."""

    topic: str
    problem: str
    fix: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.topic}: {self.problem}; fix: {self.fix}"


def topic_specs(settings: ServiceSettings, partitions: int, replication: int) -> list[NewTopic]:
    """The history topic (when configured) is an audit log like the others: delete, 7 days until changed."""
    logs = [settings.rejected, settings.dlt, *filter(None, [settings.history_topic])]
    return [
        NewTopic(settings.scheduled_topic, partitions, replication, config=dict(LOG_CONFIG)),
        NewTopic(settings.state, partitions, replication, config=dict(STATE_CONFIG)),
        *(NewTopic(name, partitions, replication, config=dict(LOG_CONFIG)) for name in logs),
    ]


def create_topics(
    admin: AdminClient, settings: ServiceSettings, partitions: int, replication: int
) -> dict[str, str]:
    """Create what is missing; returns topic -> "created" | "exists"."""
    result: dict[str, str] = {}
    futures = admin.create_topics(topic_specs(settings, partitions, replication), operation_timeout=30)
    for name, future in futures.items():
        try:
            future.result(timeout=60)
            result[name] = "created"
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
            result[name] = "exists"
    return result


def _describe(admin: AdminClient, topic: str) -> dict[str, str]:
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
    (config,) = [f.result(timeout=30) for f in futures.values()]
    return {name: entry.value for name, entry in config.items()}


def verify_topics(admin: AdminClient, settings: ServiceSettings) -> list[Problem]:
    """Every problem that could lose or resurrect schedules (fatal) or weaken durability (warnings)."""
    metadata = admin.list_topics(timeout=30)
    create_hint = "run `kafka-scheduler topics create`"
    problems = [
        Problem(name, "topic does not exist", create_hint)
        for name in sorted(settings.own_topics)
        if name not in metadata.topics
    ]
    if problems:
        return problems
    inputs = len(metadata.topics[settings.scheduled_topic].partitions)
    state_parts = len(metadata.topics[settings.state].partitions)
    if state_parts != inputs:
        problems.append(
            Problem(
                settings.state,
                f"has {state_parts} partitions but {settings.scheduled_topic} has {inputs}: schedules would be "
                "read back from the wrong partition after a rebalance",
                f"recreate {settings.state} with {inputs} partitions (empty it first: it holds pending schedules) "
                "or add partitions to both topics together",
            )
        )
    problems += _state_config_problems(_describe(admin, settings.state), settings)
    problems += _durability_warnings(settings, metadata)
    if settings.history_topic:
        problems += _history_warnings(settings.history_topic, _describe(admin, settings.history_topic))
    return problems


def _history_warnings(topic: str, config: dict[str, str]) -> list[Problem]:
    """Compaction keeps one fire per key: the audit log would lose fires (warn; it does not lose schedules)."""
    policy = config.get("cleanup.policy", "")
    if policy == "delete":
        return []
    fix = (
        f"kafka-configs --alter --entity-type topics --entity-name {topic} --add-config cleanup.policy=delete"
    )
    problem = f"has cleanup.policy={policy}: the history would keep only the last fire per key"
    return [Problem(topic, problem, fix, fatal=False)]


def _state_config_problems(config: dict[str, str], settings: ServiceSettings) -> list[Problem]:
    topic, problems = settings.state, []
    policy = config.get("cleanup.policy", "")
    if policy != "compact":
        problems.append(
            Problem(
                topic,
                f"has cleanup.policy={policy}: schedules due after retention.ms would silently vanish",
                f"kafka-configs --alter --entity-type topics --entity-name {topic} "
                "--add-config cleanup.policy=compact",
            )
        )
    retention = int(config.get("delete.retention.ms", "0"))
    if retention < settings.min_delete_retention_ms:
        problems.append(
            Problem(
                topic,
                f"has delete.retention.ms={retention}: tombstones could vanish during a rebuild and fired "
                "schedules would fire again",
                f"set delete.retention.ms to at least {settings.min_delete_retention_ms} "
                f"(recommended {WEEK_MS})",
            )
        )
    return problems


def _durability_warnings(settings: ServiceSettings, metadata: ClusterMetadata) -> list[Problem]:
    topics = metadata.topics
    brokers = len(metadata.brokers)
    warnings = []
    for name in (settings.scheduled_topic, settings.state):
        partitions = topics[name].partitions
        replicas = min((len(p.replicas) for p in partitions.values()), default=0)
        if replicas < 3:
            note = " (a single-node development broker)" if brokers == 1 else ""
            warnings.append(
                Problem(
                    name,
                    f"replication factor {replicas} < 3{note}: a broker loss can lose schedules",
                    "in production use replication.factor=3 and min.insync.replicas=2",
                    fatal=False,
                )
            )
    return warnings


def require_valid(admin: AdminClient, settings: ServiceSettings) -> list[Problem]:
    """Raise TopicConfigError listing every fatal problem; return the warnings."""
    problems = verify_topics(admin, settings)
    fatal = [p for p in problems if p.fatal]
    if fatal:
        raise TopicConfigError("refusing to run:\n" + "\n".join(f"  - {p}" for p in fatal))
    return [p for p in problems if not p.fatal]
