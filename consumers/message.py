"""The typed record a handler receives, with the scheduler's metadata parsed from its headers."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from consumers.headers import (
    HEADER_ATTEMPT,
    HEADER_ORIGINAL_OFFSET,
    HEADER_ORIGINAL_PARTITION,
    HEADER_ORIGINAL_TIMESTAMP,
    HEADER_ORIGINAL_TOPIC,
    Origin,
    RawHeaders,
    header,
    logical_headers,
)
from consumers.idempotency import SQLiteStore
from consumers.scheduling import Scheduling
from scheduler.model import HEADER_DUE_AT, HEADER_FIRE_ID, HEADER_FIRED_AT, HEADER_SCHEDULE_ID

__all__ = ["Context", "Message", "build_message"]


@dataclass(eq=False, slots=True)
class Inbox:
    """One record's idempotency key in the app's SQLiteStore; `committed` once its `transaction()` committed."""

    store: SQLiteStore
    key: str
    committed: bool = False


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler may use beyond its record: the scheduler client, to chain a follow-up; the store's database."""

    group: str
    _scheduler: Callable[[], Scheduling] = field(repr=False)
    _inbox: Inbox | None = field(default=None, repr=False)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Effects in the idempotency store's SQLite file, committed with this record's done mark (exactly once).

        `with message.context.transaction() as db: db.execute(...)`. If the record is already done the body does
        not run (`AlreadyDone` propagates; the framework counts `duplicate_skipped`); the body raising rolls back
        both. Needs the app's store to be an `SQLiteStore`. See docs/consumers.md, "Exactly-once effects".
        """
        inbox = self._inbox
        if inbox is None:
            raise RuntimeError("context.transaction() needs the app's idempotency store to be an SQLiteStore")
        with inbox.store.transaction(inbox.key) as db:
            yield db
        inbox.committed = True

    @property
    def scheduler(self) -> Scheduling:
        return self._scheduler()

    def schedule(
        self,
        schedule_id: str,
        *,
        topic: str,
        value: bytes | str | None,
        key: bytes | str | None = None,
        at: datetime | int | None = None,
        delay: timedelta | None = None,
    ) -> None:
        """A follow-up through the scheduler (a chain, no cron); flushed before this record's offset commits."""
        scheduler = self._scheduler()
        scheduler.schedule(schedule_id, topic=topic, value=value, key=key, at=at, delay=delay)
        scheduler.flush(30.0)


@dataclass(frozen=True, slots=True)
class Message:
    """One delivery of a source record; on a retry every field but `attempt` and `record_*` is the original's.

    `headers` are the original record's (its `scheduler-*` included) plus the framework's `consumer-*` bookkeeping;
    `decoded` is what the handler's deserializer returned (None without one).
    """

    key: bytes | None
    value: bytes | None
    headers: RawHeaders
    topic: str
    partition: int
    offset: int
    timestamp: datetime | None
    schedule_id: str | None
    fire_id: str | None
    due_at: datetime | None
    fired_at: datetime | None
    attempt: int
    record_topic: str
    record_offset: int
    context: Context = field(repr=False)
    decoded: object = None

    def header(self, name: str) -> str | None:
        return header(self.headers, name)

    @property
    def origin(self) -> Origin:
        ts = None if self.timestamp is None else int(self.timestamp.timestamp() * 1000)
        return Origin(self.topic, self.partition, self.offset, ts)


def _ms_to_dt(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    except (ValueError, OverflowError):
        return None


def _int(text: str | None, default: int) -> int:
    try:
        return default if text is None else int(text)
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class RawRecord:
    """What the poll loop hands over; decoupled from confluent_kafka for unit tests."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: RawHeaders
    timestamp_ms: int | None

    def fields(self) -> dict[str, object]:
        """Where this record is, for a log line's `extra` (the key as text, cut to 100 characters)."""
        key = None if self.key is None else self.key.decode("utf-8", "replace")[:100]
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset, "key": key}


def build_message(raw: RawRecord, source_topic: str, context: Context) -> Message:
    """Parse the scheduler-* and consumer-* headers once; a retry record reports its original's identity."""
    retried = raw.topic != source_topic
    h = logical_headers(raw.headers, retried)
    partition = _int(header(h, HEADER_ORIGINAL_PARTITION), raw.partition) if retried else raw.partition
    offset = _int(header(h, HEADER_ORIGINAL_OFFSET), raw.offset) if retried else raw.offset
    ts_text = header(h, HEADER_ORIGINAL_TIMESTAMP) if retried else None
    ts_ms = _int(ts_text, raw.timestamp_ms or 0) if retried else raw.timestamp_ms
    return Message(
        key=raw.key,
        value=raw.value,
        headers=h,
        topic=(header(h, HEADER_ORIGINAL_TOPIC) or source_topic) if retried else raw.topic,
        partition=partition,
        offset=offset,
        timestamp=_ms_to_dt(str(ts_ms)) if ts_ms else None,
        schedule_id=header(h, HEADER_SCHEDULE_ID),
        fire_id=header(h, HEADER_FIRE_ID),
        due_at=_ms_to_dt(header(h, HEADER_DUE_AT)),
        fired_at=_ms_to_dt(header(h, HEADER_FIRED_AT)),
        attempt=max(1, _int(header(h, HEADER_ATTEMPT), 1)),
        record_topic=raw.topic,
        record_offset=raw.offset,
        context=context,
    )
