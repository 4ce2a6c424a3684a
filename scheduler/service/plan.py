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
from scheduler.model import (
    Backfill,
    Cancel,
    Command,
    Control,
    Done,
    Pause,
    Rejected,
    RejectReason,
    Relocated,
    Resume,
    Schedule,
)
from scheduler.service.firing import select_due
from scheduler.service.index import DueIndex
from scheduler.service.occurrences import Occurrence, RecurringRules, Stepped

__all__ = [
    "Advance",
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
Decoded = tuple[Schedule, bytes] | Command | Control | Rejected
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
# (partition, schedule id, due state record, now, room) -> None for a one-time schedule (it fires once and is
# tombstoned), else a recurring schedule's step: at most `room` occurrences and the state record that follows.
Advance = Callable[[int, bytes, bytes, int, int], Stepped | None]


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
    occurrence: Occurrence | None = None  # a recurring schedule's occurrence (None: a one-time fire)


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
    recurring: int = 0  # recurring schedules armed by intake (new or replaced)
    skipped: int = 0  # occurrences that will not fire (missed policy, overlap)
    missed: int = 0  # occurrences reached later than the grace (fired late or skipped)
    ended: int = 0  # recurring schedules that ended (ends_at, max_runs)
    controls: dict[str, int] = field(default_factory=dict)  # pause/resume/done/backfill applied, by word
    stale_done: int = 0  # done reports nothing waited for (duplicates, or the schedule moved on)

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


_CONTROLS = (Pause, Resume, Done, Backfill)


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
    recur: RecurringRules | None = None,
    advance: Advance | None = None,
) -> TickPlan:
    """Relocations first (they must reach home before anything forwarded after them), intake of every record (the
    loop bounds the batch; `decoded` is `decode_batch(records)` when the loop decoded them on arrival), then fires
    within both budgets, in the order of `service.firing` (fresh since `fresh_after_ms` first, then at most
    `backlog_room` of the older backlog): everything due at `now_ms`, and, with a `horizon_ms` after it, what
    falls due by then and `prepares` accepts (the loop commits such a plan no sooner than the latest due time
    among its fires). `recur` arms recurring commands and applies control commands; `advance` steps a due
    recurring record (`service.occurrences`)."""
    plan = TickPlan()
    rules = RecurringRules() if recur is None else recur
    intake_ctx = (indexes, validate, route, rules, now_ms, dead_letter)
    for move in relocate:
        plan.relocations.append(move)
        plan.state_writes[(move.partition, move.schedule_id)] = None
    batch = records if isinstance(records, Sequence) else list(records)
    commands = decode_batch(batch) if decoded is None else decoded
    for record, taken in zip(batch, commands, strict=True):
        if isinstance(taken, tuple):  # the native path's schedule with its state record
            _intake(plan, record, taken[0], taken[1], intake_ctx)
        else:
            _intake(plan, record, taken, None, intake_ctx)
    ahead = None
    if horizon_ms is not None and horizon_ms > now_ms and prepares is not None:
        ahead = (horizon_ms, prepares)
    order = (fresh_after_ms, backlog_room)
    _select_fires(plan, indexes, now_ms, (max_fires, max_bytes), dead_letter, prefetch, order, ahead, advance)
    return plan


_IntakeContext = tuple[
    Mapping[int, DueIndex], Validator, "Route | None", RecurringRules, int, "DeadLetterCheck | None"
]


def _intake(
    plan: TickPlan,
    record: InputRecord,
    command: Command | Control | Rejected,
    state: bytes | None,
    ctx: _IntakeContext,
) -> None:
    """`state` is the schedule's state record when the batch decode already encoded it."""
    indexes, validate, route, rules, now_ms, dead_letter = ctx
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
        moved = Relocated(rules.relocated(command.schedule, now_ms))
        _take_relocated(plan, record, moved, indexes[record.partition], validate)
        return
    if isinstance(command, Cancel):
        plan.cancels += 1
        pending = plan.state_writes[slot] if slot in plan.state_writes else indexes[record.partition].get(sid)
        if pending is not None:
            plan.cancelled += 1
            plan.state_writes[slot] = None
        return
    if isinstance(command, _CONTROLS):
        _control(plan, record, command, indexes[record.partition], rules, now_ms, dead_letter)
    else:
        _take_schedule(plan, record, command, state, validate, rules)


def _take_schedule(
    plan: TickPlan,
    record: InputRecord,
    command: Schedule,
    state: bytes | None,
    validate: Validator,
    rules: RecurringRules,
) -> None:
    """A new or replacing schedule; a recurring one is checked and its first occurrence armed first."""
    if command.recurrence is not None:
        armed = rules.arm(command, record.offset, record.timestamp_ms)
        if isinstance(armed, Rejected):
            plan.rejects.append(Reject(record, armed.reason, armed.message))
            return
        command, state = armed
    if state is None:
        state = encode_state(command, record.offset)
    sid = command.id.encode()
    refused = validate(command, len(state) + len(sid))
    if refused is not None:
        plan.rejects.append(Reject(record, refused.reason, refused.message))
        return
    plan.scheduled += 1
    plan.recurring += command.recurrence is not None
    plan.state_writes[(record.partition, sid)] = state


def _control(
    plan: TickPlan,
    record: InputRecord,
    command: Control,
    index: DueIndex,
    rules: RecurringRules,
    now_ms: int,
    dead_letter: DeadLetterCheck | None,
) -> None:
    """Pause, resume, done or backfill, applied to what this tick already decided for the id, else the index."""
    slot = (record.partition, command.id.encode())
    pending = plan.state_writes[slot] if slot in plan.state_writes else index.get(slot[1])
    applied = rules.control(command, pending, record.offset, now_ms)
    if applied.reject is not None:
        plan.rejects.append(Reject(record, applied.reject.reason, applied.reject.message))
        return
    if applied.ignored:
        plan.stale_done += 1
        return
    word = type(command).__name__.lower()
    plan.controls[word] = plan.controls.get(word, 0) + 1
    if applied.state is not None:
        plan.state_writes[slot] = applied.state
    if applied.backfill and applied.source is not None:
        reason = dead_letter(record.partition, slot[1], applied.source) if dead_letter is not None else None
        for occurrence in applied.backfill:
            plan.fires.append(Fire(record.partition, slot[1], applied.source, reason, occurrence))


def _refusal(
    command: Command | Control, record: InputRecord, state: bytes | None, validate: Validator
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
    advance: Advance | None = None,
) -> None:
    """This tick's own intake that is already due first (it was not known to any earlier tick), then the index
    by `select_due`'s rule; the byte budget cuts the tail (the latest backlog). A recurring record fires its due
    occurrences and is replaced by its next state record, in the same transaction."""
    max_fires, max_bytes = budget
    fired_before = len(plan.fires)
    max_fires = max(0, max_fires - fired_before)  # backfills taken in by intake
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
        stepped = None
        if advance is not None:
            room = max_fires + fired_before - len(plan.fires)
            if room <= 0:
                break
            stepped = advance(partition, sid, rec, now_ms, room)
        reason = dead_letter(partition, sid, rec) if dead_letter is not None else None
        if stepped is None:
            plan.fires.append(Fire(partition, sid, rec, reason))
            writes[(partition, sid)] = None
            continue
        plan.fires.extend(Fire(partition, sid, rec, reason, occurrence) for occurrence in stepped.occurrences)
        size += len(rec) * max(0, len(stepped.occurrences) - 1)
        writes[(partition, sid)] = stepped.state
        plan.skipped += stepped.skipped
        plan.missed += stepped.missed
        plan.ended += stepped.state is None
    # Past the budget, a schedule put in this tick stays a put: it fires next tick from the index.
