"""The values that cross the wire: commands on `scheduled`, decode rejections, and the fired record's headers.

Frozen dataclasses, validated once where they are built (the client, the codec); the scheduler trusts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "HEADER_DELAY_MS",
    "HEADER_DELIVER_AT",
    "HEADER_DUE_AT",
    "HEADER_EPOCH",
    "HEADER_ETF1_KEY",
    "HEADER_ETF1_TIMESTAMP",
    "HEADER_ETF1_TOPIC",
    "HEADER_FIRED_AT",
    "HEADER_FIRED_TOPIC",
    "HEADER_FIRE_ID",
    "HEADER_FORWARDED_FROM",
    "HEADER_FORWARDED_TIMESTAMP",
    "HEADER_RELOCATED_FROM",
    "HEADER_SCHEDULE_ID",
    "HEADER_TARGET_KEY",
    "HEADER_TARGET_PARTITION",
    "HEADER_TARGET_TOPIC",
    "Cancel",
    "Command",
    "Headers",
    "RejectReason",
    "Rejected",
    "Relocated",
    "Schedule",
    "fire_id",
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

Headers = tuple[tuple[str, bytes | None], ...]


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


Command = Schedule | Cancel | Relocated


@dataclass(frozen=True, slots=True)
class Rejected:
    """A command that could not be decoded or accepted: a reason word and a human message, never an exception."""

    reason: RejectReason
    message: str
    schedule_id: str | None = field(default=None)


def fire_id(schedule_id: str, version: int) -> str:
    """Unique per schedule version: the id plus the input offset of the command that created the version."""
    return f"{schedule_id}@{version}"
