"""Header names the consumer framework reads and writes, and the pure builders for retry and dead-letter records.

Values are UTF-8 text, replaced never appended (conventions.md, "Reason headers"). A retry travels as a new
schedule, so the scheduler gives it `scheduler-*` headers of its own; the original's travel as
`consumer-original-scheduler-*` and are put back (`logical_headers`) before anyone looks: the handler, the dead
letter and the idempotency key see the original record's identity on every attempt.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from consumers.retry import DltReason
from scheduler.model import HEADER_AWAIT_DONE, HEADER_CONTROL, HEADER_FIRE_ID

__all__ = [
    "HEADER_ATTEMPT",
    "HEADER_IDEMPOTENCY_KEY",
    "HEADER_MESSAGE_ID",
    "HEADER_ORIGINAL_OFFSET",
    "HEADER_ORIGINAL_PARTITION",
    "HEADER_ORIGINAL_TIMESTAMP",
    "HEADER_ORIGINAL_TOPIC",
    "Failure",
    "Origin",
    "RawHeaders",
    "dlt_headers",
    "done_report",
    "header",
    "idempotency_key",
    "logical_headers",
    "retry_headers",
]

RawHeaders = tuple[tuple[str, bytes | None], ...]

HEADER_ATTEMPT = "consumer-attempt"
HEADER_ORIGINAL_TOPIC = "consumer-original-topic"
HEADER_ORIGINAL_PARTITION = "consumer-original-partition"
HEADER_ORIGINAL_OFFSET = "consumer-original-offset"
HEADER_ORIGINAL_TIMESTAMP = "consumer-original-timestamp"
HEADER_IDEMPOTENCY_KEY = "consumer-idempotency-key"
HEADER_MESSAGE_ID = "message-id"
DLT_PREFIX = "consumer-dlt-"
ORIGINAL_PREFIX = "consumer-original-"
SCHEDULER_PREFIX = "scheduler-"
CARRIED_PREFIX = ORIGINAL_PREFIX + SCHEDULER_PREFIX  # the original's scheduler-* headers on a retry
MAX_EXCEPTION_MESSAGE_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Origin:
    """The source record a delivery stands for: itself on the first attempt, the original on a retry."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None


def header(headers: RawHeaders, name: str) -> str | None:
    """The last value of header `name` as text, or None."""
    found: str | None = None
    for key, value in headers:
        if key == name and value is not None:
            found = value.decode("utf-8", "replace")
    return found


def idempotency_key(headers: RawHeaders, origin: Origin, group: str) -> str:
    """`<group>|<base>`, the same for a record and all its retries (the base is carried, never re-prefixed).

    The base: the carried key on a retry, else the fire id, a message id, or topic/partition/offset. Retries written
    by earlier versions carry an already prefixed key (`g|…`, `g|g|…`): the prefixes are dropped.
    """
    base = header(headers, HEADER_IDEMPOTENCY_KEY)
    if base:
        while base.startswith(f"{group}|"):
            base = base[len(group) + 1 :]
    else:
        base = _own_key(headers, origin)
    return f"{group}|{base}"


def _own_key(headers: RawHeaders, origin: Origin) -> str:
    fire = header(headers, HEADER_FIRE_ID)
    if fire:
        return f"fire:{fire}"
    message_id = header(headers, HEADER_MESSAGE_ID)
    if message_id:
        return f"msg:{message_id}"
    return f"tpo:{origin.topic}/{origin.partition}/{origin.offset}"


def logical_headers(headers: RawHeaders, retried: bool) -> RawHeaders:
    """The headers as the original record had them: on a retry, its carried scheduler-* replace the retry's own."""
    if not retried:
        return headers
    out: list[tuple[str, bytes | None]] = []
    for name, value in headers:
        if name.startswith(CARRIED_PREFIX):
            out.append((name[len(ORIGINAL_PREFIX) :], value))
        elif not name.startswith(SCHEDULER_PREFIX):
            out.append((name, value))
    return tuple(out)


def _without(headers: RawHeaders, prefixes: Iterable[str]) -> list[tuple[str, bytes | None]]:
    drop = tuple(prefixes)
    return [(k, v) for k, v in headers if not k.startswith(drop)]


def _text(pairs: Iterable[tuple[str, object]]) -> list[tuple[str, bytes | None]]:
    return [(k, str(v).encode()) for k, v in pairs if v is not None]


def retry_headers(headers: RawHeaders, origin: Origin, next_attempt: int, key: str) -> RawHeaders:
    """User headers + attempt, origin and the key's base; the original's scheduler-* ride as consumer-original-*.

    `headers` are the logical ones (`logical_headers`); the scheduler gives the retry scheduler-* of its own.
    """
    kept = _without(headers, (SCHEDULER_PREFIX, "consumer-"))
    carried = [(ORIGINAL_PREFIX + k, v) for k, v in headers if k.startswith(SCHEDULER_PREFIX)]
    ours = _text(
        [
            (HEADER_ATTEMPT, next_attempt),
            (HEADER_ORIGINAL_TOPIC, origin.topic),
            (HEADER_ORIGINAL_PARTITION, origin.partition),
            (HEADER_ORIGINAL_OFFSET, origin.offset),
            (HEADER_ORIGINAL_TIMESTAMP, origin.timestamp_ms),
            (HEADER_IDEMPOTENCY_KEY, key),
        ]
    )
    return tuple(kept + carried + ours)


def exception_type(exc: BaseException) -> str:
    """The user's class as raised (never a framework wrapper), module-qualified."""
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def truncate_utf8(text: str, limit: int = MAX_EXCEPTION_MESSAGE_BYTES) -> str:
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong, for the dead-letter headers."""

    reason: DltReason
    exc: BaseException
    group: str
    attempts: int
    failed_at_ms: int


def dlt_headers(headers: RawHeaders, origin: Origin, failure: Failure) -> RawHeaders:
    """The record's headers (retry bookkeeping dropped) + `consumer-dlt-*` reason headers."""
    kept = _without(headers, (DLT_PREFIX, HEADER_ATTEMPT, ORIGINAL_PREFIX))
    ours = _text(
        [
            (DLT_PREFIX + "reason", failure.reason.value),
            (DLT_PREFIX + "exception-type", exception_type(failure.exc)),
            (DLT_PREFIX + "exception-message", truncate_utf8(str(failure.exc))),
            (DLT_PREFIX + "original-topic", origin.topic),
            (DLT_PREFIX + "original-partition", origin.partition),
            (DLT_PREFIX + "original-offset", origin.offset),
            (DLT_PREFIX + "original-timestamp", origin.timestamp_ms),
            (DLT_PREFIX + "group", failure.group),
            (DLT_PREFIX + "attempts", failure.attempts),
            (DLT_PREFIX + "failed-at", failure.failed_at_ms),
        ]
    )
    return tuple(kept + ours)


def done_report(headers: RawHeaders) -> tuple[bytes, RawHeaders] | None:
    """The done command (key, headers) for a record carrying `scheduler-await-done`, or None without one.

    The header protocol's control command: key = the schedule id (the fire id `<id>@<version>/<occurrence>` up to
    its last `@`), `scheduler-control: done` and the fire id; the record's timestamp is the finish time. A value
    that is not a fire id (no `@`, or nothing before it) is no report: the scheduler could not match it anyway.
    """
    fire = header(headers, HEADER_AWAIT_DONE)
    if not fire:
        return None
    schedule_id, at, _occurrence = fire.rpartition("@")
    if not at or not schedule_id:
        return None
    return schedule_id.encode(), ((HEADER_CONTROL, b"done"), (HEADER_FIRE_ID, fire.encode()))
