"""Recurring schedules in a tick: the engine (`scheduler.recurring`, pure) applied to state records.

The planner asks this module three things: what state record a recurring command arms (intake), what a control
command (pause, resume, done, backfill) does to a pending one, and, when a recurring record is due, which
occurrences fire now and what state record replaces it. The replacement is written in the fire's transaction
instead of the tombstone a one-time fire writes, so a recurring schedule is never missing from the state topic
and an occurrence never fires twice (its fire id, `<id>@<version>/<occurrence ms>`, is the same on a replay).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from scheduler import recurring
from scheduler.codec import decode_state, encode_state, restate, step_on_time
from scheduler.errors import CorruptStateRecord
from scheduler.model import (
    Backfill,
    Control,
    Done,
    Pause,
    Recurrence,
    Rejected,
    RejectReason,
    Resume,
    Schedule,
    occurrence_fire_id,
)
from scheduler.records import Occurrence

__all__ = ["Applied", "Occurrence", "RecurringRules", "Stepped"]


class Stepped(NamedTuple):
    """A due recurring record's step: the occurrences to fire now, the state record that replaces it (None: the
    schedule ended), and the counts for metrics."""

    occurrences: Sequence[Occurrence]
    state: bytes | None
    skipped: int
    missed: int


@dataclass(frozen=True, slots=True)
class Applied:
    """What a control command did: the state record to write (None: nothing changes), a reject, the backfill's
    occurrences to fire now (with the pending state record they are built from), or a done to ignore."""

    state: bytes | None = None
    reject: Rejected | None = None
    backfill: Sequence[Occurrence] = ()
    source: bytes | None = None  # the state record a backfill's fires are built from
    ignored: bool = False


@dataclass(frozen=True, slots=True)
class RecurringRules:
    """The settings the engine needs, and the bridge between it and the codec."""

    min_interval_ms: int = 1000
    grace_ms: int = 60_000
    catch_up_ms: int = 86_400_000
    max_backfill: int = 1000

    def arm(self, schedule: Schedule, version: int, created_ms: int) -> tuple[Schedule, bytes] | Rejected:
        """A recurring command's state record: validated, its first occurrence armed (runtime fields reset: a
        replace starts over)."""
        spec = schedule.recurrence
        assert spec is not None
        why = recurring.validate(spec, min_interval_ms=self.min_interval_ms)
        if why is not None:
            return Rejected(RejectReason.INVALID_RECURRENCE, why, schedule.id)
        armed, due = recurring.arm(spec, created_ms)
        schedule = dataclasses.replace(schedule, due_ms=due, recurrence=armed)
        return schedule, encode_state(schedule, version)

    def step(
        self, schedule: Schedule, version: int, now_ms: int, limit: int, record: bytes | None = None
    ) -> Stepped:
        """The occurrences of a due recurring record that fire now (at most `limit`), and its next state.
        `record` is the state record `schedule` was decoded from: with it, an `every` schedule on time takes
        the native path (codec.step_on_time, which agrees with the engine wherever it answers) and the engine's
        next state is written by codec.restate, with no Schedule built in Python."""
        spec = schedule.recurrence
        assert spec is not None
        now_ms = max(now_ms, schedule.due_ms)  # a prepared fire is judged at its due time
        if record is not None and spec.every_ms is not None:
            fast = step_on_time(record, now_ms, self.grace_ms, self.catch_up_ms)
            if fast is not None:
                state, at, run, skipped = fast
                return Stepped([Occurrence(at, run, skipped, version, False, False)], state, 0, 0)
        taken = recurring.step(
            spec,
            schedule.due_ms,
            now_ms,
            grace_ms=self.grace_ms,
            catch_up_ms=self.catch_up_ms,
            limit=max(1, limit),
        )
        waits = spec.after_ms is not None or spec.overlap != "allow"
        fires = [Occurrence(o.at_ms, o.run, o.skipped_so_far, version, False, waits) for o in taken.fires]
        state = None
        if taken.state is not None:
            if record is not None:
                state = restate(record, taken.due_ms, taken.state)
            else:
                state = encode_state(
                    dataclasses.replace(schedule, due_ms=taken.due_ms, recurrence=taken.state), version
                )
        return Stepped(fires, state, taken.skipped, taken.missed)

    def relocated(self, schedule: Schedule, now_ms: int) -> Schedule:
        """A recurring schedule moved home from another partition takes a new version (the move's offset), so
        the done of an occurrence still running would name the old one and never match: the move counts as
        that done (an `after` schedule is armed `after_ms` from now, overlap lets the next one fire)."""
        spec = schedule.recurrence
        if spec is None or spec.running_ms is None:
            return schedule
        moved = recurring.done(
            spec, 0, schedule.id, occurrence_fire_id(schedule.id, 0, spec.running_ms), now_ms
        )
        if moved is None:
            return schedule
        spec, due = moved
        return dataclasses.replace(schedule, due_ms=due, recurrence=spec)

    def advance(self, record: bytes, now_ms: int, room: int) -> Stepped | None:
        """`step` of a state record: None if it is a one-time schedule's (or does not decode). The loop has the
        record decoded already and calls `step`; this is the plain form (tests, tools)."""
        found = _recurring(record)
        return None if found is None else self.step(found[0], found[1], now_ms, room, record)

    def control(self, command: Control, pending: bytes | None, offset: int, now_ms: int) -> Applied:
        """Apply a control command to the pending state record of its id (None: nothing pending)."""
        found = _recurring(pending)
        if found is None or pending is None:
            return _not_recurring(command, pending)
        schedule, version = found
        spec = schedule.recurrence
        assert spec is not None
        if isinstance(command, Backfill):
            return self._backfill(command, spec, pending, offset)
        changed: tuple[Recurrence, int] | None = None
        if isinstance(command, Pause):
            changed = None if spec.paused else recurring.pause(spec)
        elif isinstance(command, Resume):
            changed = recurring.resume(spec, now_ms) if spec.paused else None
        else:
            changed = recurring.done(spec, version, schedule.id, command.fire_id, max(command.finished_ms, 0))
            if changed is None:
                return Applied(ignored=True)
        if changed is None:
            return Applied()  # paused already, or not paused: nothing changes
        spec, due = changed
        return Applied(
            state=encode_state(dataclasses.replace(schedule, due_ms=due, recurrence=spec), version)
        )

    def _backfill(self, command: Backfill, spec: Recurrence, pending: bytes, offset: int) -> Applied:
        if command.to_ms < command.from_ms:
            message = f"backfill from {command.from_ms} to {command.to_ms}: the range ends before it starts"
            return Applied(reject=Rejected(RejectReason.INVALID_RECURRENCE, message, command.id))
        try:
            times = recurring.backfill(spec, command.from_ms, command.to_ms, self.max_backfill)
        except ValueError as exc:
            return Applied(reject=Rejected(RejectReason.INVALID_RECURRENCE, str(exc), command.id))
        occurrences = [Occurrence(at, 0, spec.skipped, offset, True, False) for at in times]
        return Applied(backfill=occurrences, source=pending)


def _not_recurring(command: Control, pending: bytes | None) -> Applied:
    """A control command for an id with no recurring schedule pending: a done is stale (it ended, was cancelled
    or replaced since: nothing waits for it); anything else is refused, saying why."""
    if isinstance(command, Done):
        return Applied(ignored=True)
    word = type(command).__name__.lower()
    what = "nothing is pending" if pending is None else "it is a one-time schedule"
    message = f"{word} for schedule {command.id!r}: {what}; only recurring schedules can be {word}d"
    if isinstance(command, Backfill):
        message = f"backfill for schedule {command.id!r}: {what}; only a recurring schedule has occurrences"
    return Applied(reject=Rejected(RejectReason.NOT_RECURRING, message, command.id))


def _recurring(pending: bytes | None) -> tuple[Schedule, int] | None:
    """The pending state record decoded, if it is a recurring schedule's."""
    if pending is None:
        return None
    try:
        schedule, version = decode_state(pending)
    except CorruptStateRecord:
        return None
    return (schedule, version) if schedule.recurrence is not None else None
