"""The values that cross the wire: commands on `scheduled`, decode rejections, and the fired record's headers.

Frozen dataclasses, validated once where they are built (the client, the codec); the scheduler trusts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "HEADER_AFTER_MS",
    "HEADER_AWAIT_DONE",
    "HEADER_BACKFILL",
    "HEADER_BACKFILL_FROM",
    "HEADER_BACKFILL_TO",
    "HEADER_CONTROL",
    "HEADER_CRON",
    "HEADER_DELAY_MS",
    "HEADER_DELIVER_AT",
    "HEADER_DUE_AT",
    "HEADER_ENDS_AT",
    "HEADER_EPOCH",
    "HEADER_ETF1_KEY",
    "HEADER_ETF1_TIMESTAMP",
    "HEADER_ETF1_TOPIC",
    "HEADER_EVERY_MS",
    "HEADER_FIRED_AT",
    "HEADER_FIRED_TOPIC",
    "HEADER_FIRE_ID",
    "HEADER_FORWARDED_FROM",
    "HEADER_FORWARDED_TIMESTAMP",
    "HEADER_MAX_RUNS",
    "HEADER_MISSED",
    "HEADER_OCCURRENCE_AT",
    "HEADER_OVERLAP",
    "HEADER_RELOCATED_FROM",
    "HEADER_RUN",
    "HEADER_SCHEDULE_ID",
    "HEADER_SKIPPED",
    "HEADER_STARTS_AT",
    "HEADER_TARGET_KEY",
    "HEADER_TARGET_PARTITION",
    "HEADER_TARGET_TOPIC",
    "HEADER_TIMEZONE",
    "PARKED_MS",
    "Backfill",
    "Cancel",
    "Command",
    "Control",
    "Done",
    "Headers",
    "Missed",
    "Overlap",
    "Pause",
    "Recurrence",
    "RejectReason",
    "Rejected",
    "Relocated",
    "Resume",
    "Schedule",
    "fire_id",
    "occurrence_fire_id",
]

# Header protocol (conventions.md): any Kafka client can schedule with these.
HEADER_TARGET_TOPIC = "scheduler-target-topic"
HEADER_TARGET_KEY = "scheduler-target-key"
HEADER_TARGET_PARTITION = "scheduler-target-partition"
HEADER_DELIVER_AT = "scheduler-deliver-at"
HEADER_DELAY_MS = "scheduler-delay-ms"
HEADER_EPOCH = "scheduler-epoch"  # etf1/kafka-message-scheduler: epoch SECONDS
# Added to every fired record, replaced (never appended) on each hop.
HEADER_SCHEDULE_ID = "scheduler-schedule-id"
HEADER_FIRE_ID = "scheduler-fire-id"
HEADER_DUE_AT = "scheduler-due-at"
HEADER_FIRED_AT = "scheduler-fired-at"
# On the copy in the history topic (KAFKA_SCHEDULER_HISTORY_TOPIC): the target topic the fire went to.
HEADER_FIRED_TOPIC = "scheduler-fired-topic"
# Added, like etf1 does, to fired records of commands that came in with `scheduler-epoch` (etf1's consumers read
# them): the command's record time in epoch SECONDS, its key (the schedule id), the topic it came from.
HEADER_ETF1_TIMESTAMP = "scheduler-timestamp"
HEADER_ETF1_KEY = "scheduler-key"
HEADER_ETF1_TOPIC = "scheduler-topic"
# Written by the scheduler on `scheduled` itself: a command consumed from a partition other than its id's, copied
# to the id's partition ("<partition>/<offset>" of the original, and the original's timestamp, the base of a
# delay), and a pending schedule moved to its id's partition ("<partition>" it was found in), see
# `service.routing`.
HEADER_FORWARDED_FROM = "scheduler-forwarded-from"
HEADER_FORWARDED_TIMESTAMP = "scheduler-forwarded-timestamp"
HEADER_RELOCATED_FROM = "scheduler-relocated-from"

# Recurring schedules (conventions.md): exactly one of cron / every-ms / after-ms instead of a deliver-at.
HEADER_CRON = "scheduler-cron"
HEADER_EVERY_MS = "scheduler-every-ms"
HEADER_AFTER_MS = "scheduler-after-ms"
HEADER_TIMEZONE = "scheduler-timezone"
HEADER_STARTS_AT = "scheduler-starts-at"
HEADER_ENDS_AT = "scheduler-ends-at"
HEADER_MAX_RUNS = "scheduler-max-runs"
HEADER_MISSED = "scheduler-missed"
HEADER_OVERLAP = "scheduler-overlap"
# Control commands for any client (value ignored, key = schedule id): `pause`, `resume`, `done` (with
# scheduler-fire-id: the occurrence's fire id), `backfill` (with scheduler-backfill-from / -to, ms or RFC 3339).
HEADER_CONTROL = "scheduler-control"
HEADER_BACKFILL_FROM = "scheduler-backfill-from"
HEADER_BACKFILL_TO = "scheduler-backfill-to"
# On a recurring schedule's fired records: the occurrence's nominal time (epoch ms), its run number (1-based),
# the schedule's skipped occurrences so far, `1` on occurrences fired by a backfill, and, for `after` and
# overlap `skip`/`buffer_one`, the fire id the scheduler waits to hear is done (the consumer framework reports it).
HEADER_OCCURRENCE_AT = "scheduler-occurrence-at"
HEADER_RUN = "scheduler-run"
HEADER_SKIPPED = "scheduler-skipped"
HEADER_BACKFILL = "scheduler-backfill"
HEADER_AWAIT_DONE = "scheduler-await-done"

# The due time of a state record that waits for something other than the clock (paused, or an `after` schedule
# waiting for its previous occurrence to be reported done): 9999-12-31T23:59:59.999Z, "never" on every screen.
PARKED_MS = 253_402_300_799_999

Headers = tuple[tuple[str, bytes | None], ...]


class Missed(StrEnum):
    """What a recurring schedule does with occurrences it missed (the scheduler was down or behind, or
    `starts_at` is in the past)."""

    SKIP = "skip"  # the next future occurrence only (a late one fires only within the grace)
    LATEST = "latest"  # the most recent missed one, then go on (the default)
    ALL = "all"  # each missed one, oldest first, within the catch-up window


class Overlap(StrEnum):
    """What a `cron`/`every` occurrence does when the previous one is still running (fired, not reported done)."""

    ALLOW = "allow"
    SKIP = "skip"
    BUFFER_ONE = "buffer_one"


class RejectReason(StrEnum):
    """Why a command on `scheduled` was not accepted; the word goes into the reject record's headers."""

    MISSING_KEY = "missing_key"
    INVALID_KEY = "invalid_key"
    DESERIALIZATION_ERROR = "deserialization_error"
    UNKNOWN_SCHEMA = "unknown_schema"
    MISSING_TARGET_TOPIC = "missing_target_topic"
    INVALID_TARGET_TOPIC = "invalid_target_topic"
    UNKNOWN_TARGET_TOPIC = "unknown_target_topic"
    FORBIDDEN_TARGET_TOPIC = "forbidden_target_topic"
    INVALID_DUE = "invalid_due"
    DUE_OUT_OF_RANGE = "due_out_of_range"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    WRONG_PARTITION = "wrong_partition"
    INVALID_RECURRENCE = "invalid_recurrence"  # a bad cron expression, zone, interval, policy or range
    NOT_RECURRING = "not_recurring"  # pause, resume or backfill for an id that is not a recurring schedule


@dataclass(frozen=True, slots=True)
class Recurrence:
    """How a schedule repeats: exactly one of `cron`, `every_ms`, `after_ms`. In a command only the spec counts;
    in a state record the fields after `paused` say where the schedule stands (the scheduler owns them)."""

    cron: str | None = None  # 5 fields, or 6 with seconds first, or an @alias; in `timezone`
    every_ms: int | None = None  # fixed rate: occurrences at starts_at + k * every_ms
    after_ms: int | None = None  # fixed delay after the previous occurrence is reported done
    timezone: str = "UTC"  # IANA name
    starts_at: int | None = None  # epoch ms: no occurrence before
    ends_at: int | None = None  # epoch ms: no occurrence after
    max_runs: int | None = None  # at most this many occurrences fire, then the schedule ends
    missed: str = Missed.LATEST.value
    overlap: str = Overlap.ALLOW.value
    catch_up_ms: int | None = None  # `all`: how far back missed occurrences still fire (None: the setting)
    paused: bool = False
    # state only
    occurrence_ms: int = 0  # the nominal time of the armed occurrence (0 in a command)
    runs: int = 0  # occurrences fired so far
    skipped: int = 0  # occurrences not fired (missed policy, overlap skip)
    running_ms: int | None = None  # the occurrence fired and not yet reported done (after, overlap != allow)
    buffered_ms: int | None = None  # buffer_one: the occurrence held until the running one is done


@dataclass(frozen=True, slots=True)
class Schedule:
    """Deliver `payload` to `target_topic` at `due_ms`; the newest command for `id` wins."""

    id: str
    target_topic: str
    due_ms: int
    payload: bytes | None = None
    target_key: bytes | None = None
    headers: Headers = ()
    target_partition: int | None = None
    created_ms: int = 0
    producer: str | None = None
    recurrence: Recurrence | None = None  # a recurring schedule (due_ms: the armed occurrence, once in state)


@dataclass(frozen=True, slots=True)
class Cancel:
    """Forget schedule `id` if it is still pending."""

    id: str


@dataclass(frozen=True, slots=True)
class Relocated:
    """A pending schedule moved home from the partition it was found in; its version becomes the move's offset."""

    schedule: Schedule

    @property
    def id(self) -> str:
        return self.schedule.id


@dataclass(frozen=True, slots=True)
class Pause:
    """Hold recurring schedule `id`: nothing fires until a Resume."""

    id: str


@dataclass(frozen=True, slots=True)
class Resume:
    """Go on with paused schedule `id` from its next future occurrence (none of the paused ones fire)."""

    id: str


@dataclass(frozen=True, slots=True)
class Done:
    """The occurrence `fire_id` of recurring schedule `id` finished (reported by the consumer framework)."""

    id: str
    fire_id: str
    finished_ms: int


@dataclass(frozen=True, slots=True)
class Backfill:
    """Fire, on purpose and now, the occurrences of recurring schedule `id` nominally in [from_ms, to_ms]."""

    id: str
    from_ms: int
    to_ms: int


# Commands for a recurring schedule that exists: they change its state record, never create one.
Control = Pause | Resume | Done | Backfill
Command = Schedule | Cancel | Relocated | Pause | Resume | Done | Backfill


@dataclass(frozen=True, slots=True)
class Rejected:
    """A command that could not be decoded or accepted: a reason word and a human message, never an exception."""

    reason: RejectReason
    message: str
    schedule_id: str | None = field(default=None)


def fire_id(schedule_id: str, version: int) -> str:
    """Unique per schedule version: the id plus the input offset of the command that created the version."""
    return f"{schedule_id}@{version}"


def occurrence_fire_id(schedule_id: str, version: int, occurrence_ms: int) -> str:
    """Unique per occurrence of a recurring schedule's version: the same on a replay or a failover."""
    return f"{schedule_id}@{version}/{occurrence_ms}"
