"""One tick's work as a pure function: consumed commands and the due index in, records to write out.

Commands apply in offset order into an overlay (id -> new state record or tombstone) so a later command for the
same id wins (G5), and a cancel or replace consumed in this tick suppresses an index entry due in this tick.
Whatever is due at `now`, from the index or from the overlay, fires with its tombstone; nothing due after
`now` fires (G3). A command for an id whose partition is another is forwarded there (or rejected), and state
records found in the wrong partition move home (`service.routing`). The loop turns the plan into one transaction
and applies it to the index after commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from scheduler.codec import ROUTING_HEADERS, decode_command, decode_state, encode_state, intake, peek_due_ms
from scheduler.errors import CorruptStateRecord
from scheduler.model import Cancel, Command, Rejected, RejectReason, Relocated, Schedule
from scheduler.service.firing import select_due
from scheduler.service.index import DueIndex

__all__ = [
    "Decoded",
    "Fire",
    "Forward",
    "InputRecord",
    "Reject",
    "Relocation",
    "Route",
    "TickPlan",
    "Validator",
    "command_due_ms",
    "decode_batch",
    "plan_tick",
]

# A consumed command decoded: the native path's (schedule, state record), or what `decode_command` returns.
Decoded = tuple[Schedule, bytes] | Command | Rejected
# (schedule, encoded state record size) -> None if acceptable, else why not.
Validator = Callable[[Schedule, int], Rejected | None]
# (partition, schedule id, state record) -> a dead-letter reason word, or None to fire.
DeadLetterCheck = Callable[[int, bytes, bytes], str | None]
# Called once with every (partition, id, state record) that may fire this tick, before any DeadLetterCheck: the
# loop decodes them in one native call.
Prefetch = Callable[[Sequence[tuple[int, bytes, bytes]]], None]
# (partition, schedule id, state record) -> may this fire, not yet due, be produced ahead and committed at its due
# time? (False for a LogAppendTime target, or one the loop cannot vouch for.)
PrepareCheck = Callable[[int, bytes, bytes], bool]


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


class Fire(NamedTuple):
    """A due schedule: its state record is what the index (or this tick's overlay) holds for the id (a tuple:
    one per fire, cheap to build)."""

    partition: int
    schedule_id: bytes
    record: bytes
    dead_letter: str | None = None  # a reason word: deliver to the dead-letter topic instead of the target


@dataclass(frozen=True, slots=True)
class Forward:
    """A command consumed outside its id's partition, to be copied to `partition` of `scheduled`."""

    record: InputRecord
    partition: int


@dataclass(frozen=True, slots=True)
class Relocation:
    """A state record found in `partition` that belongs in `home`: tombstoned here, sent home on `scheduled` as
    the Avro command that recreates it (which a scheduler from before routing also takes, as a replace)."""

    partition: int
    schedule_id: bytes
    command: bytes
    home: int


@dataclass(frozen=True, slots=True)
class Route:
    """Where ids live, and what to do with a command that arrived elsewhere."""

    home: Callable[[bytes], int]
    forward: bool = True  # False: reject it (wrong_partition)
    fits: Callable[[InputRecord], bool] = lambda _record: True  # can its copy be written to `scheduled`?


@dataclass(slots=True)
class TickPlan:
    # (partition, id) -> state record to put, or None for a tombstone; only the last write per id counts.
    state_writes: dict[tuple[int, bytes], bytes | None] = field(default_factory=dict)
    fires: list[Fire] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    forwards: list[Forward] = field(default_factory=list)
    relocations: list[Relocation] = field(default_factory=list)
    scheduled: int = 0
    cancelled: int = 0  # cancels that removed a pending schedule
    cancels: int = 0
    relocated: int = 0  # relocated schedules taken in (a newer one already here wins)

    def __bool__(self) -> bool:
        return bool(self.state_writes or self.fires or self.rejects or self.forwards or self.relocations)


def decode_batch(records: Sequence[InputRecord]) -> list[Decoded]:
    """Each consumed command decoded once: the native batch call, Python's `decode_command` where it declines."""
    return [
        decode_command(r.key, r.value, r.headers, r.timestamp_ms) if taken is None else taken
        for r, taken in zip(records, intake(records), strict=True)
    ]


def command_due_ms(decoded: Decoded) -> int | None:
    """When a decoded command's schedule is due (None for a cancel or a reject): the loop wakes for it."""
    if isinstance(decoded, tuple):
        return decoded[0].due_ms
    if isinstance(decoded, Schedule):
        return decoded.due_ms
    if isinstance(decoded, Relocated):
        return decoded.schedule.due_ms
    return None


def plan_tick(
    records: Iterable[InputRecord],
    indexes: Mapping[int, DueIndex],
    now_ms: int,
    *,
    validate: Validator,
    max_fires: int,
    max_bytes: int = 1 << 62,
    dead_letter: DeadLetterCheck | None = None,
    route: Route | None = None,
    relocate: Sequence[Relocation] = (),
    prefetch: Prefetch | None = None,
    decoded: Sequence[Decoded] | None = None,
    fresh_after_ms: int | None = None,
    backlog_room: int | None = None,
    horizon_ms: int | None = None,
    prepares: PrepareCheck | None = None,
) -> TickPlan:
    """Relocations first (they must reach home before anything forwarded after them), intake of every record (the
    loop bounds the batch; `decoded` is `decode_batch(records)` when the loop decoded them on arrival), then fires
    within both budgets, in the order of `service.firing` (fresh since `fresh_after_ms` first, then at most
    `backlog_room` of the older backlog): everything due at `now_ms`, and, with a `horizon_ms` after it, what
    falls due by then and `prepares` accepts (the loop commits such a plan no sooner than the latest due time
    among its fires)."""
    plan = TickPlan()
    for move in relocate:
        plan.relocations.append(move)
        plan.state_writes[(move.partition, move.schedule_id)] = None
    batch = records if isinstance(records, Sequence) else list(records)
    commands = decode_batch(batch) if decoded is None else decoded
    for record, taken in zip(batch, commands, strict=True):
        if isinstance(taken, tuple):  # the native path's schedule with its state record
            _intake(plan, record, taken[0], taken[1], indexes, validate, route)
        else:
            _intake(plan, record, taken, None, indexes, validate, route)
    ahead = None
    if horizon_ms is not None and horizon_ms > now_ms and prepares is not None:
        ahead = (horizon_ms, prepares)
    order = (fresh_after_ms, backlog_room)
    _select_fires(plan, indexes, now_ms, (max_fires, max_bytes), dead_letter, prefetch, order, ahead)
    return plan


def _intake(
    plan: TickPlan,
    record: InputRecord,
    command: Command | Rejected,
    state: bytes | None,
    indexes: Mapping[int, DueIndex],
    validate: Validator,
    route: Route | None,
) -> None:
    """`state` is the schedule's state record when the batch decode already encoded it."""
    if isinstance(command, Rejected):
        plan.rejects.append(Reject(record, command.reason, command.message))
        return
    sid = command.id.encode()
    if route is not None:
        home = route.home(sid)
        if home != record.partition:
            _misrouted(plan, record, home, route, _refusal(command, record, state, validate))
            return
    slot = (record.partition, sid)
    if isinstance(command, Relocated):
        _take_relocated(plan, record, command, indexes[record.partition], validate)
        return
    if isinstance(command, Cancel):
        plan.cancels += 1
        pending = plan.state_writes[slot] if slot in plan.state_writes else indexes[record.partition].get(sid)
        if pending is not None:
            plan.cancelled += 1
            plan.state_writes[slot] = None
        return
    if not isinstance(command, Schedule):  # a control command: the recurring intake is the coordinator's
        plan.rejects.append(Reject(record, RejectReason.NOT_RECURRING, f"{command.id!r} is not recurring"))
        return
    if state is None:
        state = encode_state(command, record.offset)
    refused = validate(command, len(state) + len(sid))
    if refused is not None:
        plan.rejects.append(Reject(record, refused.reason, refused.message))
        return
    plan.scheduled += 1
    plan.state_writes[slot] = state


def _refusal(
    command: Command, record: InputRecord, state: bytes | None, validate: Validator
) -> Callable[[], Rejected | None]:
    """Why a schedule would be refused at home, asked only if it cannot go there."""

    def refusal() -> Rejected | None:
        if not isinstance(command, Schedule):
            return None
        size = len(state if state is not None else encode_state(command, record.offset))
        return validate(command, size + len(record.key or b""))

    return refusal


def _misrouted(
    plan: TickPlan,
    record: InputRecord,
    home: int,
    route: Route,
    refusal: Callable[[], Rejected | None],
) -> None:
    """Forward it home; if it cannot go (too large to copy, or reject mode), refuse it for its own fault first
    (too large to store, unknown target...), else as being in the wrong partition."""
    copied = any(name in ROUTING_HEADERS for name, _ in record.headers or ())
    if route.forward and route.fits(record) and not copied:
        plan.forwards.append(Forward(record, home))
        return
    refused = refusal()
    if refused is not None:
        plan.rejects.append(Reject(record, refused.reason, refused.message))
        return
    why = ", too large to be forwarded there" if route.forward else " (KAFKA_SCHEDULER_MISROUTED=reject)"
    if copied:  # never forwarded twice: two instances that disagree would pass it back and forth for good
        why = (
            ", a copy the scheduler already routed: scheduler instances disagree on the partition count of "
            "the commands topic (partitions added?); stop them all and start them again"
        )
    message = (
        f"schedule id {record.key!r} lives in partition {home}, this command came in partition "
        f"{record.partition}{why}: produce commands with partitioner=murmur2_random (the Java client's "
        "default; kcat -X partitioner=murmur2_random), or use SchedulerClient"
    )
    plan.rejects.append(Reject(record, RejectReason.WRONG_PARTITION, message))


def _take_relocated(
    plan: TickPlan, record: InputRecord, moved: Relocated, index: DueIndex, validate: Validator
) -> None:
    """A schedule moved home from another partition, versioned by this offset (so fire ids stay unique here),
    checked as any command is; one created later that is already here wins."""
    slot = (record.partition, moved.id.encode())
    state = encode_state(moved.schedule, record.offset)
    refused = validate(moved.schedule, len(state) + len(slot[1]))
    if refused is not None:
        plan.rejects.append(Reject(record, refused.reason, refused.message))
        return
    pending = plan.state_writes[slot] if slot in plan.state_writes else index.get(slot[1])
    if pending is not None:
        try:
            if decode_state(pending)[0].created_ms >= moved.schedule.created_ms:
                return
        except CorruptStateRecord as exc:  # keep what is here (a newer scheduler's?); this one is replayable
            message = f"a schedule with this id is already here and does not decode ({exc}): kept it"
            plan.rejects.append(Reject(record, RejectReason.DESERIALIZATION_ERROR, message))
            return
    plan.relocated += 1
    plan.state_writes[slot] = state


def _select_fires(
    plan: TickPlan,
    indexes: Mapping[int, DueIndex],
    now_ms: int,
    budget: tuple[int, int],
    dead_letter: DeadLetterCheck | None,
    prefetch: Prefetch | None = None,
    order: tuple[int | None, int | None] = (None, None),
    ahead: tuple[int, PrepareCheck] | None = None,
) -> None:
    """This tick's own intake that is already due first (it was not known to any earlier tick), then the index
    by `select_due`'s rule; the byte budget cuts the tail (the latest backlog)."""
    max_fires, max_bytes = budget
    writes = plan.state_writes
    until = now_ms if ahead is None else ahead[0]
    due: list[tuple[int, bytes, bytes]] = [
        (p, sid, rec) for (p, sid), rec in writes.items() if rec is not None and peek_due_ms(rec) <= until
    ]
    del due[max_fires:]
    fresh_after_ms, backlog_room = order
    due.extend(select_due(indexes, until, max_fires - len(due), fresh_after_ms, writes, backlog_room))
    if prefetch is not None and due:
        prefetch(due)
    size = 0
    for partition, sid, rec in due:
        if ahead is not None and peek_due_ms(rec) > now_ms and not ahead[1](partition, sid, rec):
            continue  # not due yet and not to be prepared: it fires in a later tick
        size += len(rec)  # a fire carries about its state record's bytes; the tombstone adds its key
        if size > max_bytes and plan.fires:
            break
        reason = dead_letter(partition, sid, rec) if dead_letter is not None else None
        plan.fires.append(Fire(partition, sid, rec, reason))
        writes[(partition, sid)] = None
    # Past the budget, a schedule put in this tick stays a put: it fires next tick from the index.
