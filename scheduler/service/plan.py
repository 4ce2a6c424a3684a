"""One tick's work as a pure function: consumed commands and the due index in, records to write out.

Commands apply in offset order into an overlay (id -> new state record or tombstone) so a later command for the
same id wins (G5), and a cancel or replace consumed in this tick suppresses an index entry due in this tick.
Whatever is due at `now`, from the index or from the overlay, fires with its tombstone; nothing due after
`now` fires (G3). The loop turns the plan into one transaction and applies it to the index after commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from scheduler.codec import decode_command, encode_state, peek_due_ms
from scheduler.model import Cancel, Rejected, RejectReason, Schedule
from scheduler.service.index import DueIndex

__all__ = ["Fire", "InputRecord", "Reject", "TickPlan", "Validator", "plan_tick"]

# (schedule, encoded state record size) -> None if acceptable, else why not.
Validator = Callable[[Schedule, int], Rejected | None]
# (partition, schedule id, state record) -> a dead-letter reason word, or None to fire.
DeadLetterCheck = Callable[[int, bytes, bytes], str | None]


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One consumed command from `scheduled`."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]] | None


@dataclass(frozen=True, slots=True)
class Reject:
    record: InputRecord
    reason: RejectReason
    message: str


@dataclass(frozen=True, slots=True)
class Fire:
    """A due schedule: its state record is what the index (or this tick's overlay) holds for the id."""

    partition: int
    schedule_id: bytes
    record: bytes
    dead_letter: str | None = None  # a reason word: deliver to the dead-letter topic instead of the target


@dataclass(slots=True)
class TickPlan:
    # (partition, id) -> state record to put, or None for a tombstone; only the last write per id counts.
    state_writes: dict[tuple[int, bytes], bytes | None] = field(default_factory=dict)
    fires: list[Fire] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    scheduled: int = 0
    cancelled: int = 0  # cancels that removed a pending schedule
    cancels: int = 0

    def __bool__(self) -> bool:
        return bool(self.state_writes or self.fires or self.rejects)


def plan_tick(
    records: Iterable[InputRecord],
    indexes: Mapping[int, DueIndex],
    now_ms: int,
    *,
    validate: Validator,
    max_fires: int,
    max_bytes: int = 1 << 62,
    dead_letter: DeadLetterCheck | None = None,
) -> TickPlan:
    """Intake every record (the consumer's batch is already bounded), then fires within both budgets."""
    plan = TickPlan()
    for record in records:
        _intake(plan, record, indexes, validate)
    _select_fires(plan, indexes, now_ms, (max_fires, max_bytes), dead_letter)
    return plan


def _intake(
    plan: TickPlan, record: InputRecord, indexes: Mapping[int, DueIndex], validate: Validator
) -> None:
    command = decode_command(record.key, record.value, record.headers, record.timestamp_ms)
    if isinstance(command, Rejected):
        plan.rejects.append(Reject(record, command.reason, command.message))
        return
    sid = command.id.encode()
    slot = (record.partition, sid)
    if isinstance(command, Cancel):
        plan.cancels += 1
        pending = plan.state_writes[slot] if slot in plan.state_writes else indexes[record.partition].get(sid)
        if pending is not None:
            plan.cancelled += 1
            plan.state_writes[slot] = None
        return
    state = encode_state(command, record.offset)
    refused = validate(command, len(state) + len(sid))
    if refused is not None:
        plan.rejects.append(Reject(record, refused.reason, refused.message))
        return
    plan.scheduled += 1
    plan.state_writes[slot] = state


def _select_fires(
    plan: TickPlan,
    indexes: Mapping[int, DueIndex],
    now_ms: int,
    budget: tuple[int, int],
    dead_letter: DeadLetterCheck | None,
) -> None:
    max_fires, max_bytes = budget
    writes = plan.state_writes
    due: list[tuple[int, bytes, bytes]] = [
        (p, sid, rec) for (p, sid), rec in writes.items() if rec is not None and peek_due_ms(rec) <= now_ms
    ]
    for partition, index in indexes.items():
        room = max_fires - len(due)
        if room <= 0:
            break
        due.extend(
            (partition, sid, rec) for sid, rec in index.due(now_ms, room) if (partition, sid) not in writes
        )
    size = 0
    for partition, sid, rec in due[:max_fires]:
        size += len(rec)  # a fire carries about its state record's bytes; the tombstone adds its key
        if size > max_bytes and plan.fires:
            break
        reason = dead_letter(partition, sid, rec) if dead_letter is not None else None
        plan.fires.append(Fire(partition, sid, rec, reason))
        writes[(partition, sid)] = None
    # Past the budget, a schedule put in this tick stays a put: it fires next tick from the index.
