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

import contextlib
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from scheduler.errors import SchedulerError, TopicConfigError
from scheduler.kafka.clients import kafka_error
from scheduler.settings import ServiceSettings

__all__ = [
    "STATE_CONFIG",
    "Problem",
    "TopicCheck",
    "check_topics",
    "create_topics",
    "require_valid",
    "topic_specs",
    "verify_topics",
]

WEEK_MS = 7 * 24 * 3600 * 1000
STATE_CONFIG = {
    "cleanup.policy": "compact",
    "delete.retention.ms": str(WEEK_MS),
    "min.cleanable.dirty.ratio": "0.1",
    "segment.ms": str(3600 * 1000),
    "max.compaction.lag.ms": str(24 * 3600 * 1000),
}
LOG_CONFIG = {"cleanup.policy": "delete", "retention.ms": str(WEEK_MS)}
DAY_MS = 24 * 3600 * 1000
MIN_SCHEDULED_RETENTION_MS = DAY_MS  # below this a scheduler down over a weekend night loses commands
# State-topic settings that keep fired and replaced records (and their tombstones) around for longer than a
# rebuild should read them: (setting, largest value that is fine, what the delay costs). Kafka's defaults
# (segment.ms 7 days, max.compaction.lag.ms unbounded, min.compaction.lag.ms 0) fail the first two.
COMPACTION_LIMITS: tuple[tuple[str, float, str], ...] = (
    ("segment.ms", DAY_MS, "only closed segments are compacted"),
    ("max.compaction.lag.ms", WEEK_MS, "a quiet partition is compacted only this late"),
    ("min.compaction.lag.ms", DAY_MS, "records younger than this are never compacted"),
    ("min.cleanable.dirty.ratio", 0.5, "compaction waits until this share of the log is dead records"),
)
MIGRATE = 'migrate to a new set of topics instead (docs/operations.md, "Scaling out")'


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
    admin: AdminClient,
    settings: ServiceSettings,
    partitions: int,
    replication: int,
    timeout_s: float = 60.0,
    *,
    targets: tuple[str, ...] = (),
) -> dict[str, str]:
    """Create what is missing, plus `targets` (plain topics to fire into); returns topic -> "created" | "exists" |
    "exists: <how it differs>" (a target of another size is just "exists").

    SchedulerError naming the topics and the broker's reason if any could not be created (the others are).
    """
    result: dict[str, str] = {}
    failed: dict[str, list[str]] = {}
    specs = topic_specs(settings, partitions, replication)
    specs += [NewTopic(name, partitions, replication, config=dict(LOG_CONFIG)) for name in targets]
    futures = admin.create_topics(specs, operation_timeout=30, request_timeout=timeout_s)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s + 5)
            result[name] = "created"
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is not None and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                result[name] = "exists"
            else:
                failed.setdefault(err.str() if err is not None else str(exc), []).append(name)
        except FutureTimeout:
            failed.setdefault(f"no answer within {timeout_s:.0f}s", []).append(name)
    if failed:
        raise SchedulerError(_creation_failed(admin, failed, result, replication))
    result = _existing_differences(admin, result, partitions, replication)
    for name in targets:
        if result[name].startswith("exists"):
            result[name] = "exists"
    return result


def _creation_failed(admin: AdminClient, failed: dict[str, list[str]], done: dict[str, str], rf: int) -> str:
    reasons = "; ".join(f"{', '.join(sorted(names))}: {why}" for why, names in failed.items())
    hint = ""
    if any("replication factor" in why.lower() for why in failed):
        brokers = len(admin.list_topics(timeout=10).brokers)
        hint = f": pass --replication {min(rf, brokers)} (this cluster has {brokers} broker(s))"
    kept = f" ({', '.join(sorted(done))}: {', '.join(sorted(set(done.values())))})" if done else ""
    return f"cannot create {reasons}{hint}{kept}"


def _existing_differences(
    admin: AdminClient, result: dict[str, str], partitions: int, replication: int
) -> dict[str, str]:
    """An existing topic is left alone; say how it differs from what was asked."""
    existing = [name for name, outcome in result.items() if outcome == "exists"]
    if not existing:
        return result
    topics = admin.list_topics(timeout=30).topics
    for name in existing:
        parts = topics[name].partitions if name in topics else {}
        differs = []
        if len(parts) != partitions:
            differs.append(f"{len(parts)} partitions, not {partitions}")
        replicas = min((len(p.replicas) for p in parts.values()), default=0)
        if parts and replicas != replication:
            differs.append(f"replication factor {replicas}, not {replication}")
        if differs:
            result[name] = "exists: " + "; ".join(differs)
    return result


def _describe_all(admin: AdminClient, topics: list[str]) -> dict[str, Future[Any]]:
    """One DescribeConfigs request for every topic, sent at once: topic -> future of its config."""
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, t) for t in topics])
    return {resource.name: future for resource, future in futures.items()}


def _own_metadata(admin: AdminClient, names: list[str]) -> tuple[dict[str, list[int]], int, list[Problem]]:
    """The scheduler's topics only, described at once with the cluster (a cluster's full metadata is 30 ms for
    900 topics on loopback, megabytes on a large one; DescribeTopics never auto-creates a topic, a metadata
    request naming one may): topic -> each partition's replica count, the broker count, and a problem for each
    topic that does not exist or may not be described, in the order of `names`."""
    futures = admin.describe_topics(TopicCollection(names), request_timeout=30)
    cluster = admin.describe_cluster(request_timeout=30)
    try:
        return _read_metadata(names, futures, cluster)
    finally:
        _settle([*futures.values(), cluster])


def _settle(futures: list[Future[Any]]) -> None:
    """Wait for every request still in flight, whatever it answers: a future left pending when its AdminClient is
    dropped can release the client's last reference in librdkafka's thread, which aborts the process
    (`rd_kafka_destroy() from librdkafka owned thread is prohibited`: seen when `topics verify` returned early for
    a missing state topic with its DescribeConfigs still pending)."""
    for future in futures:
        with contextlib.suppress(Exception):  # only waiting: the caller has its answer or its error already
            future.result(timeout=35)


def _read_metadata(
    names: list[str], futures: dict[str, Future[Any]], cluster: Future[Any]
) -> tuple[dict[str, list[int]], int, list[Problem]]:
    topics: dict[str, list[int]] = {}
    problems = []
    for name in names:
        try:
            topics[name] = [len(p.replicas) for p in futures[name].result(timeout=35).partitions]
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is None or err.code() not in (*_MISSING, KafkaError.TOPIC_AUTHORIZATION_FAILED):
                raise
            if err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                fix = "grant the scheduler's principal Describe on it (docs/security.md)"
                problems.append(Problem(name, f"cannot be described: {err.str()}", fix))
            else:
                problems.append(Problem(name, "topic does not exist", "run `kafka-scheduler topics create`"))
    return topics, len(cluster.result(timeout=35).nodes), problems


_MISSING = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC)


def _config(future: Future[Any]) -> dict[str, str]:
    return {name: entry.value for name, entry in future.result(timeout=30).items()}


@dataclass(frozen=True)
class TopicCheck:
    """What verifying found: every problem (fatal or a warning) and the partition count of `scheduled`."""

    problems: list[Problem]
    partitions: int = 0


def verify_topics(admin: AdminClient, settings: ServiceSettings) -> list[Problem]:
    """Every problem that could lose or resurrect schedules (fatal) or weaken durability (warnings)."""
    return check_topics(admin, settings).problems


def check_topics(admin: AdminClient, settings: ServiceSettings) -> TopicCheck:
    """`verify_topics`, and the partition count the service routes ids by; one round trip (the metadata of the
    scheduler's topics, and one DescribeConfigs for every topic whose config matters, all sent at once: the
    configs before knowing the topics exist, read only if they do)."""
    described = dict.fromkeys(
        [settings.state, settings.scheduled_topic, *filter(None, [settings.history_topic])]
    )
    configs = _describe_all(admin, list(described))
    try:
        topics, brokers, problems = _own_metadata(admin, sorted(settings.own_topics))
    except BaseException:
        _settle(list(configs.values()))
        raise
    if problems:
        _settle(list(configs.values()))
        return TopicCheck(problems)
    inputs = len(topics[settings.scheduled_topic])
    state_parts = len(topics[settings.state])
    if state_parts != inputs:
        problems.append(
            Problem(
                settings.state,
                f"has {state_parts} partitions but {settings.scheduled_topic} has {inputs}: schedules would be "
                "read back from the wrong partition after a rebalance",
                f"recreate {settings.state} with {inputs} partitions (empty it first: it holds pending schedules); "
                f"never add partitions to either topic in place: {MIGRATE}",
            )
        )
    state_config = _config(configs[settings.state])
    problems += _state_config_problems(state_config, settings)
    problems += _compaction_warnings(state_config, settings.state)
    problems += _retention_warnings(_config(configs[settings.scheduled_topic]), settings.scheduled_topic)
    problems += _durability_warnings(settings, topics, brokers)
    if settings.history_topic:
        problems += _history_warnings(settings.history_topic, _config(configs[settings.history_topic]))
    return TopicCheck(problems, inputs)


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


def _compaction_warnings(config: dict[str, str], topic: str) -> list[Problem]:
    """Settings that leave fired and replaced schedules (and tombstones) in the log: every rebuild reads them."""
    warnings = []
    for name, limit, why in COMPACTION_LIMITS:
        try:
            value = float(config.get(name, "0"))
        except ValueError:
            continue
        if value > limit:
            recommended = STATE_CONFIG.get(name, "0")
            warnings.append(
                Problem(
                    topic,
                    f"has {name}={config[name]}: {why}, so fired and replaced schedules and their tombstones stay "
                    "in the log and every rebuild (failover, restart) reads them",
                    f"kafka-configs --alter --entity-type topics --entity-name {topic} --add-config "
                    f"{name}={recommended}",
                    fatal=False,
                )
            )
    return warnings


def _retention_warnings(config: dict[str, str], topic: str) -> list[Problem]:
    """`scheduled` keeps commands only until a scheduler consumes them: a short retention loses them in an outage."""
    retention = int(config.get("retention.ms", str(WEEK_MS)))
    if retention < 0 or retention >= MIN_SCHEDULED_RETENTION_MS:
        return []
    return [
        Problem(
            topic,
            f"has retention.ms={retention} ({retention / 3_600_000:.1f} h): commands no scheduler has consumed are "
            "deleted after that, so schedules sent while the schedulers are down longer are lost",
            f"kafka-configs --alter --entity-type topics --entity-name {topic} --add-config retention.ms={WEEK_MS}",
            fatal=False,
        )
    ]


def _durability_warnings(
    settings: ServiceSettings, topics: dict[str, list[int]], brokers: int
) -> list[Problem]:
    warnings = []
    for name in (settings.scheduled_topic, settings.state):
        replicas = min(topics[name], default=0)
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


def require_valid(admin: AdminClient, settings: ServiceSettings) -> TopicCheck:
    """Raise TopicConfigError listing every fatal problem; the warnings (and the partition count) otherwise."""
    check = check_topics(admin, settings)
    fatal = [p for p in check.problems if p.fatal]
    if fatal:
        raise TopicConfigError("refusing to run:\n" + "\n".join(f"  - {p}" for p in fatal))
    return TopicCheck([p for p in check.problems if not p.fatal], check.partitions)
