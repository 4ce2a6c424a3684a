"""`dlq replay`: send dead letters back, once each, so a rerun after a partial failure resends only what failed.

Kafka cannot remove a record from a dead-letter topic, so `replay` keeps a journal of what was delivered: one
JSON line per record, written when the broker confirms it, keyed by the cluster and the dead letter's topic,
partition, offset and timestamp (the timestamp tells a re-created topic's offset 0 from the old one's). A rerun
skips what the journal lists and sends the rest; `include_replayed` sends everything again. A record confirmed
by the broker whose line the process could not write (killed in between) is sent again by a rerun: consumers
still deduplicate by fire id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from scheduler.errors import ClusterUnreachable, SchedulerError
from scheduler.kafka.clients import DEFAULT_PARTITIONER, LIBRDKAFKA_LOG, build_admin, create, kafka_error
from scheduler.ops.dlq import DeadLetter, Destination, Router
from scheduler.settings import ServiceSettings

__all__ = ["Journal", "ReplayResult", "open_journal", "replay"]

FLUSH_TIMEOUT_S = 60.0


@dataclass
class ReplayResult:
    planned: list[tuple[DeadLetter, Destination]] = field(default_factory=list)
    skipped: list[tuple[DeadLetter, str]] = field(default_factory=list)  # no destination: pass --to
    replayed_before: list[DeadLetter] = field(default_factory=list)  # in the journal: not sent again
    failed: list[tuple[DeadLetter, Destination, str]] = field(default_factory=list)

    @property
    def delivered(self) -> int:
        return len(self.planned) - len(self.failed)


class Journal:
    """The dead letters already delivered by earlier replays (of this cluster), appended as they are confirmed."""

    def __init__(self, path: Path, cluster: str) -> None:
        self.path, self._cluster = path, cluster
        self._done: set[str] = set()
        self._out: IO[str] | None = None
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.exists() else []
        except OSError as exc:
            raise SchedulerError(
                f"cannot read the replay journal {path}: {exc.strerror}: pass --journal"
            ) from None
        for line in lines:
            try:
                self._done.add(str(json.loads(line)["record"]))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash

    def open(self) -> IO[str]:
        """Open for appending now, so a journal that cannot be written stops the replay before it sends."""
        if self._out is not None:
            return self._out
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._out = self.path.open("a", encoding="utf-8")
            return self._out
        except OSError as exc:
            raise SchedulerError(
                f"cannot write the replay journal {self.path}: {exc.strerror}: pass --journal"
            ) from None

    def key(self, letter: DeadLetter) -> str:
        rec = letter.record
        return f"{self._cluster}/{rec.topic}/{rec.partition}@{rec.offset}/{rec.timestamp_ms}"

    def __contains__(self, letter: DeadLetter) -> bool:
        return self.key(letter) in self._done

    def add(self, letter: DeadLetter, dest: Destination) -> None:
        out = self.open()
        line = {"record": self.key(letter), "to": dest.topic, "partition": dest.partition, "at": time.time()}
        out.write(json.dumps(line) + "\n")
        out.flush()
        self._done.add(self.key(letter))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._out is not None:
            self._out.close()


def open_journal(settings: ServiceSettings, path: Path) -> Journal:
    """The journal at `path`, for the cluster `settings` name (its cluster id: a journal may serve several)."""
    try:
        metadata = build_admin(settings).list_topics(topic=settings.dlt, timeout=settings.request_timeout_s)
    except KafkaException as exc:
        raise ClusterUnreachable(f"asking {settings.bootstrap_servers} for its cluster id: {exc}") from None
    return Journal(path, metadata.cluster_id or settings.bootstrap_servers)


def replay(
    settings: ServiceSettings,
    letters: Iterable[DeadLetter],
    journal: Journal | None,
    *,
    to: str | None = None,
    dry_run: bool = False,
    resend: bool = False,
) -> ReplayResult:
    """Re-produce each letter's key, value and user headers (reason headers dropped) to its destination,
    except what `journal` lists (unless `resend`); every record the broker confirms is added to `journal`,
    every other one is in `failed` with the reason."""
    router = Router(settings, to)
    result = ReplayResult()
    if journal is not None and not dry_run:
        journal.open()
    sender = None if dry_run else _Sender(settings, result, journal)
    for letter in letters:
        if journal is not None and not resend and letter in journal:
            result.replayed_before.append(letter)
            continue
        try:
            dest = router.route(letter)
        except ValueError as exc:
            result.skipped.append((letter, str(exc)))
            continue
        result.planned.append((letter, dest))
        if sender is not None:
            sender.send(letter, dest)
    if sender is not None:
        sender.finish()
    return result


class _Sender:
    """Produces, and on each delivery report journals the record or names why it failed."""

    def __init__(self, settings: ServiceSettings, result: ReplayResult, journal: Journal | None) -> None:
        self._producer = _producer(settings)
        self._result, self._journal = result, journal
        self._open: dict[int, tuple[DeadLetter, Destination]] = {}

    def _report(self, letter: DeadLetter, dest: Destination) -> Callable[[KafkaError | None, Message], None]:
        self._open[id(letter)] = (letter, dest)

        def report(err: KafkaError | None, _msg: Message) -> None:
            self._open.pop(id(letter), None)
            if err is not None:
                self._result.failed.append((letter, dest, err.str()))
            elif self._journal is not None:
                self._journal.add(letter, dest)

        return report

    def send(self, letter: DeadLetter, dest: Destination) -> None:
        extra: dict[str, Any] = {} if dest.partition is None else {"partition": dest.partition}
        rec = letter.record
        while True:
            try:
                self._producer.produce(
                    dest.topic,
                    rec.value,
                    rec.key,
                    headers=list(letter.user_headers),
                    on_delivery=self._report(letter, dest),
                    **extra,
                )
                break
            except BufferError:
                self._producer.poll(0.1)
            except (
                KafkaException
            ) as exc:  # refused locally: too large for message.max.bytes, no such partition
                self._open.pop(id(letter), None)
                err = kafka_error(exc)
                self._result.failed.append((letter, dest, err.str() if err is not None else str(exc)))
                break
        self._producer.poll(0)

    def finish(self) -> None:
        self._producer.flush(FLUSH_TIMEOUT_S)
        for letter, dest in self._open.values():
            self._result.failed.append((letter, dest, f"not confirmed within {FLUSH_TIMEOUT_S:.0f}s"))
        self._open.clear()


def _producer(settings: ServiceSettings) -> Producer:
    """Like the scheduler's producer (same partitioner for keyed records), idempotent, acks=all."""
    conf: dict[str, Any] = {
        **LIBRDKAFKA_LOG,
        "partitioner": DEFAULT_PARTITIONER,
        **settings.base_kafka(),
        **settings.producer,
        "enable.idempotence": True,
        "acks": "all",
        "allow.auto.create.topics": False,
    }
    return create(Producer, conf)
