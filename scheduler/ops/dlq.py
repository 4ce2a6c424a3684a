"""Dead letters and rejects: decode their reason headers, and replay them to where they were going.

Three producers of dead letters, told apart by their header prefix:
- `scheduler-dlt-*` on `<scheduled>.dlt`: a schedule that could not be delivered; replay goes to the target topic
  named in `scheduler-dlt-target-topic`, with the original key, payload and headers (the fire's
  `scheduler-schedule-id`/`-fire-id`/`-due-at` stay, so consumers still deduplicate by fire id);
- `scheduler-reject-*` on `<scheduled>.rejected`: a command the scheduler refused; replay sends it back to
  `scheduled` (into the partition murmur2 gives its key) once the cause is fixed, e.g. the target topic created;
- `consumer-dlt-*` on `<topic>.<group>.dlt`: a record a consumer group gave up on; replay goes to the source topic
  and partition it came from (every group reading that topic sees it again: use --to for the group's own topic).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from scheduler.errors import DeliveryError
from scheduler.logs import LIBRDKAFKA_LOG
from scheduler.ops.query import iso, text_or_b64
from scheduler.ops.reader import Progress, TopicRecord, partition_count, read_topic
from scheduler.partitioner import partition_for
from scheduler.settings import ServiceSettings

__all__ = ["DeadLetter", "Destination", "ReplayResult", "dead_letters", "decode", "replay"]

PREFIXES = {
    "scheduler-dlt-": "scheduler-dlt",
    "scheduler-reject-": "scheduler-rejected",
    "consumer-dlt-": "consumer-dlt",
}
_ORIGIN = {"scheduler-dlt": "target-topic", "scheduler-rejected": "topic", "consumer-dlt": "original-topic"}


@dataclass(frozen=True)
class Destination:
    topic: str
    partition: int | None  # None: the producer's partitioner decides from the key


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter or rejected topic with its reason headers decoded (prefix stripped)."""

    record: TopicRecord
    kind: str  # scheduler-dlt | scheduler-rejected | consumer-dlt | unknown
    reasons: dict[str, str]
    user_headers: tuple[tuple[str, bytes | None], ...]

    @property
    def reason(self) -> str:
        return self.reasons.get("reason", "")

    @property
    def message(self) -> str:
        return self.reasons.get("message") or self.reasons.get("exception-message") or ""

    @property
    def where(self) -> str:
        return f"{self.record.topic}/{self.record.partition}@{self.record.offset}"

    @property
    def origin_topic(self) -> str | None:
        return self.reasons.get(_ORIGIN.get(self.kind, ""))

    def as_json(self) -> dict[str, Any]:
        return {
            "topic": self.record.topic,
            "partition": self.record.partition,
            "offset": self.record.offset,
            "timestamp": iso(self.record.timestamp_ms),
            "kind": self.kind,
            "key": text_or_b64(self.record.key),
            "reason": self.reason,
            "reasons": self.reasons,
            "headers": {name: text_or_b64(value) for name, value in self.user_headers},
            "value": text_or_b64(self.record.value),
        }


def decode(rec: TopicRecord) -> DeadLetter:
    """Split the headers into reason headers (by component prefix) and the user's own."""
    kind, reasons, user = "unknown", {}, []
    for name, raw in rec.headers:
        prefix = next((p for p in PREFIXES if name.startswith(p)), None)
        if prefix is None:
            user.append((name, raw))
            continue
        kind = PREFIXES[prefix]
        reasons[name[len(prefix) :]] = raw.decode("utf-8", "replace") if raw is not None else ""
    return DeadLetter(rec, kind, reasons, tuple(user))


def dead_letters(
    settings: ServiceSettings, topic: str, *, reason: str | None = None, progress: Progress | None = None
) -> Iterator[DeadLetter]:
    """Every record of `topic` (read_committed, to the end offsets at the start), optionally one reason only."""
    for rec in read_topic(settings, topic, progress=progress):
        letter = decode(rec)
        if reason is None or letter.reason == reason:
            yield letter


class Router:
    """Where a dead letter goes back to; partition counts are looked up once per topic."""

    def __init__(self, settings: ServiceSettings, to: str | None) -> None:
        self._settings, self._to = settings, to
        self._counts: dict[str, int] = {}

    def _count(self, topic: str) -> int:
        if topic not in self._counts:
            self._counts[topic] = partition_count(self._settings, topic)
        return self._counts[topic]

    def route(self, letter: DeadLetter) -> Destination:
        """ValueError if the letter does not say where it was going and no --to was given."""
        if self._to is not None:
            return Destination(self._to, None)
        origin = letter.origin_topic
        if not origin:
            raise ValueError(
                f"{letter.kind} record names no original topic ({letter.reason}): pass --to TOPIC"
            )
        if letter.kind == "scheduler-rejected":
            if letter.record.key is None:
                raise ValueError("a rejected command without a key cannot be replayed: it has no schedule id")
            return Destination(origin, partition_for(letter.record.key, self._count(origin)))
        if letter.kind == "consumer-dlt":
            original = letter.reasons.get("original-partition", "")
            if original.isdigit() and int(original) < self._count(origin):
                return Destination(origin, int(original))
        return Destination(origin, None)


@dataclass
class ReplayResult:
    planned: list[tuple[DeadLetter, Destination]]
    skipped: list[tuple[DeadLetter, str]]
    failed: int = 0


def replay(
    settings: ServiceSettings,
    letters: Iterable[DeadLetter],
    *,
    to: str | None = None,
    dry_run: bool = False,
    on_letter: Callable[[], None] | None = None,
) -> ReplayResult:
    """Re-produce each letter's key, value and user headers (reason headers dropped) to its destination."""
    router = Router(settings, to)
    result = ReplayResult([], [])
    producer = None if dry_run else _producer(settings)
    errors: list[str] = []

    def report(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err.str())

    for letter in letters:
        if on_letter is not None:
            on_letter()
        try:
            dest = router.route(letter)
        except ValueError as exc:
            result.skipped.append((letter, str(exc)))
            continue
        result.planned.append((letter, dest))
        if producer is not None:
            extra: dict[str, Any] = {} if dest.partition is None else {"partition": dest.partition}
            producer.produce(
                dest.topic,
                letter.record.value,
                letter.record.key,
                headers=list(letter.user_headers),
                on_delivery=report,
                **extra,
            )
            producer.poll(0)
    if producer is not None:
        remaining = producer.flush(60)
        result.failed = len(errors) + remaining
        if result.failed:
            first = errors[0] if errors else "not delivered within 60s"
            raise DeliveryError(
                f"{result.failed} replayed record(s) were not delivered (first: {first}): rerun"
            )
    return result


def _producer(settings: ServiceSettings) -> Producer:
    """Like the scheduler's producer (same partitioner for keyed records), idempotent, acks=all."""
    conf: dict[str, Any] = {
        **LIBRDKAFKA_LOG,
        "log_level": 3,  # errors only: a command's output is what the operator reads
        **settings.base_kafka(),
        **settings.producer,
        "enable.idempotence": True,
        "acks": "all",
        "allow.auto.create.topics": False,
    }
    return Producer(conf)
