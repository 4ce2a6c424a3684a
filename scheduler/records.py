"""What the scheduler writes besides state: fired records, reject records, dead letters, and their headers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from scheduler.model import (
    HEADER_AWAIT_DONE,
    HEADER_BACKFILL,
    HEADER_DUE_AT,
    HEADER_EPOCH,
    HEADER_ETF1_KEY,
    HEADER_ETF1_TIMESTAMP,
    HEADER_ETF1_TOPIC,
    HEADER_FIRE_ID,
    HEADER_FIRED_AT,
    HEADER_FIRED_TOPIC,
    HEADER_OCCURRENCE_AT,
    HEADER_RUN,
    HEADER_SCHEDULE_ID,
    HEADER_SKIPPED,
    Schedule,
    fire_id,
)

__all__ = [
    "Occurrence",
    "OutRecord",
    "dead_letter_record",
    "fired_record",
    "fired_records",
    "fit_reject",
    "history_record",
    "is_etf1",
    "occurrence_record",
    "record_size",
    "reject_headers",
]

SCHEDULER_HEADERS = frozenset(
    {
        HEADER_SCHEDULE_ID,
        HEADER_FIRE_ID,
        HEADER_DUE_AT,
        HEADER_FIRED_AT,
        HEADER_OCCURRENCE_AT,
        HEADER_RUN,
        HEADER_SKIPPED,
        HEADER_BACKFILL,
        HEADER_AWAIT_DONE,
    }
)
ETF1_HEADERS = frozenset({HEADER_ETF1_TIMESTAMP, HEADER_ETF1_KEY, HEADER_ETF1_TOPIC})
_ETF1_OURS = SCHEDULER_HEADERS | ETF1_HEADERS
REASON_PREFIX = "scheduler-dlt-"
REJECT_PREFIX = "scheduler-reject-"
MAX_MESSAGE = 1024

Headers = list[tuple[str, bytes | None]]


class Occurrence(NamedTuple):
    """One occurrence a fire carries: its nominal time, run number, the schedule's skipped count so far, the
    version its fire id names (the schedule's, or a backfill command's offset), and whether the scheduler waits
    for a done report of it."""

    at_ms: int
    run: int
    skipped: int
    version: int
    backfill: bool = False
    await_done: bool = False


class OutRecord(NamedTuple):
    """One record of a transaction (a tuple: built per fire, so it must be cheap to build)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    partition: int | None = None


def _replace(
    headers: Sequence[tuple[str, bytes | None]], drop: frozenset[str] | str, extra: Headers
) -> Headers:
    """The user's headers without ours (replaced, never appended on each hop), then ours."""
    if isinstance(drop, str):
        kept = [(k, v) for k, v in headers if not k.startswith(drop)]
    else:
        kept = [(k, v) for k, v in headers if k not in drop]
    return kept + extra


def is_etf1(schedule: Schedule) -> bool:
    """Came in with etf1's headers: the codec keeps `scheduler-epoch` (and etf1's target headers), as etf1 does."""
    return any(name == HEADER_EPOCH for name, _ in schedule.headers)


def fired_record(schedule: Schedule, version: int, fired_at_ms: int, source_topic: str = "") -> OutRecord:
    """The payload for the target; `source_topic` (the commands' topic) goes into etf1's `scheduler-topic`."""
    return fired_records([(schedule, version)], fired_at_ms, source_topic)[0]


def fired_records(
    decoded: Iterable[tuple[Schedule, int]], fired_at_ms: int, source_topic: str = ""
) -> list[OutRecord]:
    """`fired_record` of each (schedule, version) of one tick: the headers every fire shares are built once."""
    fired_at = (HEADER_FIRED_AT, b"%d" % fired_at_ms)  # tuples are immutable: one object in every record
    etf1_topic = (HEADER_ETF1_TOPIC, source_topic.encode())
    out = []
    for schedule, version in decoded:
        sid = schedule.id.encode()
        ours: Headers = [
            (HEADER_SCHEDULE_ID, sid),
            (HEADER_FIRE_ID, b"%s@%d" % (sid, version)),  # model.fire_id, encoded
            (HEADER_DUE_AT, b"%d" % schedule.due_ms),
            fired_at,
        ]
        headers = schedule.headers
        if headers:
            if is_etf1(schedule):
                ours += [
                    (HEADER_ETF1_TIMESTAMP, b"%d" % (schedule.created_ms // 1000)),
                    (HEADER_ETF1_KEY, sid),
                    etf1_topic,
                ]
                ours = _replace(headers, _ETF1_OURS, ours)
            else:
                ours = _replace(headers, SCHEDULER_HEADERS, ours)
        out.append(
            OutRecord(
                schedule.target_topic, schedule.target_key, schedule.payload, ours, schedule.target_partition
            )
        )
    return out


def occurrence_record(
    schedule: Schedule, occurrence: Occurrence, fired_at_ms: int, source_topic: str = ""
) -> OutRecord:
    """A recurring schedule's occurrence: the one-time fired record with the occurrence's fire id
    (`<id>@<version>/<occurrence ms>`), its due and nominal time, run number and skipped count, and what the
    scheduler waits to hear is done."""
    # The headers built in one list, as fired_record's followed by the occurrence's (its fire id and due
    # replacing the one-time ones): the user's (without ours), the schedule id, fired-at, etf1's three for an
    # etf1 schedule, then the fire id, due, occurrence time, run, skipped (and backfill, await-done).
    at = occurrence.at_ms
    sid = schedule.id.encode()
    fid = b"%s@%d/%d" % (sid, occurrence.version, at)  # model.occurrence_fire_id, encoded
    user = schedule.headers
    if not user:
        headers: Headers = [(HEADER_SCHEDULE_ID, sid), (HEADER_FIRED_AT, b"%d" % fired_at_ms)]
    elif is_etf1(schedule):
        headers = [(k, v) for k, v in user if k not in _ETF1_OURS]
        headers += [
            (HEADER_SCHEDULE_ID, sid),
            (HEADER_FIRED_AT, b"%d" % fired_at_ms),
            (HEADER_ETF1_TIMESTAMP, b"%d" % (schedule.created_ms // 1000)),
            (HEADER_ETF1_KEY, sid),
            (HEADER_ETF1_TOPIC, source_topic.encode()),
        ]
    else:
        headers = [(k, v) for k, v in user if k not in SCHEDULER_HEADERS]
        headers += [(HEADER_SCHEDULE_ID, sid), (HEADER_FIRED_AT, b"%d" % fired_at_ms)]
    headers += [
        (HEADER_FIRE_ID, fid),
        (HEADER_DUE_AT, b"%d" % at),
        (HEADER_OCCURRENCE_AT, b"%d" % at),
        (HEADER_RUN, b"%d" % occurrence.run),
        (HEADER_SKIPPED, b"%d" % occurrence.skipped),
    ]
    if occurrence.backfill:
        headers.append((HEADER_BACKFILL, b"1"))
    if occurrence.await_done:
        headers.append((HEADER_AWAIT_DONE, fid))
    return OutRecord(
        schedule.target_topic, schedule.target_key, schedule.payload, headers, schedule.target_partition
    )


def history_record(topic: str, fired: OutRecord) -> OutRecord:
    """The audit copy of a fire (as etf1 keeps): its key, value and headers, plus the topic it went to."""
    headers = [(k, v) for k, v in fired.headers if k != HEADER_FIRED_TOPIC]
    headers.append((HEADER_FIRED_TOPIC, fired.topic.encode()))
    return OutRecord(topic, fired.key, fired.value, headers)


def _text(value: object) -> bytes:
    return str(value)[:MAX_MESSAGE].encode()


def dead_letter_record(
    topic: str, schedule: Schedule, version: int, reason: str, message: str, failed_at_ms: int
) -> OutRecord:
    """A schedule that could not be delivered: key and payload unchanged, the target and reason in headers."""
    ours: Headers = [
        (REASON_PREFIX + "reason", reason.encode()),
        (REASON_PREFIX + "message", _text(message)),
        (REASON_PREFIX + "target-topic", schedule.target_topic.encode()),
        (REASON_PREFIX + "failed-at", str(failed_at_ms).encode()),
        (HEADER_SCHEDULE_ID, schedule.id.encode()),
        (HEADER_FIRE_ID, fire_id(schedule.id, version).encode()),
        (HEADER_DUE_AT, str(schedule.due_ms).encode()),
    ]
    headers = _replace(schedule.headers, SCHEDULER_HEADERS, [])
    return OutRecord(topic, schedule.target_key, schedule.payload, _replace(headers, REASON_PREFIX, ours))


def reject_headers(
    original: Sequence[tuple[str, bytes | None]] | None,
    *,
    reason: str,
    message: str,
    source: tuple[str, int, int, int],
    rejected_at_ms: int,
) -> Headers:
    """The command's own headers unchanged, plus why and where it came from."""
    topic, partition, offset, timestamp = source
    ours: Headers = [
        (REJECT_PREFIX + "reason", reason.encode()),
        (REJECT_PREFIX + "message", _text(message)),
        (REJECT_PREFIX + "topic", topic.encode()),
        (REJECT_PREFIX + "partition", str(partition).encode()),
        (REJECT_PREFIX + "offset", str(offset).encode()),
        (REJECT_PREFIX + "timestamp", str(timestamp).encode()),
        (REJECT_PREFIX + "rejected-at", str(rejected_at_ms).encode()),
    ]
    return _replace(list(original or ()), REJECT_PREFIX, ours)


# librdkafka counts a record's key, value and serialized headers against message.max.bytes; each header adds
# varint lengths, each record a varint-framed header of its own. Generous upper bounds keep a "fitting" record
# from being refused by the producer (synchronously: MSG_SIZE_TOO_LARGE) or the broker.
HEADER_FRAMING = 10
RECORD_FRAMING = 64
_DROPPED_NOTE_MAX = (REJECT_PREFIX + "dropped", b"value=0000000000,headers=0000000000,key=0000000000")


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> int:
    """An upper bound of the bytes a record takes against message.max.bytes, framing included."""
    body = len(key or b"") + len(value or b"")
    return RECORD_FRAMING + body + sum(len(k) + len(v or b"") + HEADER_FRAMING for k, v in headers)


def fit_reject(
    key: bytes | None, value: bytes | None, headers: Headers, limit: int
) -> tuple[bytes | None, bytes | None, Headers]:
    """A reject that fits `limit` bytes: drop the command's value, then its own headers, then cut the key.

    A reject that cannot be written aborts every transaction of its partition: the partition would stop for
    good. What is dropped is said in `scheduler-reject-dropped` (`value=<bytes>,headers=<n>,key=<bytes>`); the
    command itself is still in `scheduled` at the partition and offset the reject names.
    """
    if record_size(key, value, headers) <= limit:
        return key, value, headers
    dropped = [f"value={len(value or b'')}"]
    note = _DROPPED_NOTE_MAX
    value = b""
    ours = [(k, v) for k, v in headers if k.startswith(REJECT_PREFIX)]
    if record_size(key, value, [*headers, note]) > limit:
        dropped.append(f"headers={len(headers) - len(ours)}")
        headers = ours
    if record_size(key, value, [*headers, note]) > limit and key is not None:
        dropped.append(f"key={len(key)}")
        key = key[:MAX_MESSAGE]
    return key, value, [*headers, (REJECT_PREFIX + "dropped", ",".join(dropped).encode())]
