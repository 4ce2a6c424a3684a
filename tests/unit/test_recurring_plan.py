"""plan_tick with recurring schedules: arm at intake, fire an occurrence with the next state record in the same
plan (never a tombstone while it goes on), pause/resume/done/backfill, rejects, and the fire budget."""

from __future__ import annotations

import dataclasses

from scheduler.codec import decode_state, encode_schedule, encode_state
from scheduler.model import (
    PARKED_MS,
    Backfill,
    Done,
    Pause,
    Recurrence,
    Rejected,
    RejectReason,
    Resume,
    Schedule,
)
from scheduler.records import occurrence_record
from scheduler.service.index import DueIndex
from scheduler.service.occurrences import RecurringRules
from scheduler.service.plan import Decoded, InputRecord, TickPlan, plan_tick

NOW = 1_700_000_000_000  # 2023-11-14T22:13:20Z
RULES = RecurringRules(min_interval_ms=1000, grace_ms=60_000, catch_up_ms=86_400_000, max_backfill=100)


def validate(s: Schedule, _size: int) -> Rejected | None:
    return None


def every(sid: str, ms: int, **kw: object) -> Schedule:
    return Schedule(sid, "target", NOW, b"v", recurrence=Recurrence(every_ms=ms, **kw))  # type: ignore[arg-type]


def command(offset: int, s: Schedule) -> InputRecord:
    return InputRecord(0, offset, NOW, s.id.encode(), encode_schedule(s), [])


def control(offset: int, sid: str) -> InputRecord:
    """An input record for a control command given decoded (the plan takes what `decode_batch` returns)."""
    return InputRecord(0, offset, NOW, sid.encode(), b"", [])


def armed(s: Schedule, version: int, occurrence: int, **kw: object) -> bytes:
    """The state record of a recurring schedule whose armed occurrence is `occurrence`."""
    assert s.recurrence is not None
    r = dataclasses.replace(s.recurrence, occurrence_ms=occurrence, **kw)  # type: ignore[arg-type]
    return encode_state(dataclasses.replace(s, due_ms=occurrence, recurrence=r), version)


def run(
    records: list[InputRecord],
    index: DueIndex | None = None,
    *,
    decoded: list[Decoded] | None = None,
    max_fires: int = 100,
    now: int = NOW,
) -> TickPlan:
    return plan_tick(
        records,
        {0: index if index is not None else DueIndex()},
        now,
        validate=validate,
        max_fires=max_fires,
        decoded=decoded,
        recur=RULES,
        advance=lambda _p, _sid, rec, at, room: RULES.advance(rec, at, room),
    )


def state_of(plan: TickPlan, sid: str) -> tuple[Schedule, int] | None:
    value = plan.state_writes[(0, sid.encode())]
    return None if value is None else decode_state(value)


def test_a_recurring_command_arms_its_first_occurrence() -> None:
    plan = run([command(7, every("a", 1000, starts_at=NOW + 1000))])
    schedule, version = state_of(plan, "a") or (None, 0)
    assert schedule is not None and version == 7
    assert schedule.due_ms == NOW + 1000 and schedule.recurrence is not None
    assert schedule.recurrence.occurrence_ms == NOW + 1000
    assert plan.fires == [] and plan.recurring == 1


def test_a_due_occurrence_fires_and_the_next_state_replaces_the_record() -> None:
    s = every("a", 1000, starts_at=NOW - 1000)
    index = DueIndex()
    index.put(b"a", armed(s, 3, NOW))
    plan = run([], index)
    assert [(f.schedule_id, f.occurrence.at_ms if f.occurrence else None) for f in plan.fires] == [
        (b"a", NOW)
    ]
    occurrence = plan.fires[0].occurrence
    assert occurrence is not None and occurrence.run == 1 and occurrence.version == 3
    nxt = state_of(plan, "a")
    assert nxt is not None, "a recurring schedule is never tombstoned while it goes on"
    assert nxt[0].due_ms == NOW + 1000 and nxt[1] == 3
    assert nxt[0].recurrence is not None and nxt[0].recurrence.runs == 1


def test_the_fired_record_names_the_occurrence() -> None:
    s = every("a", 1000, starts_at=NOW - 1000)
    index = DueIndex()
    index.put(b"a", armed(s, 3, NOW))
    plan = run([], index)
    fire = plan.fires[0]
    assert fire.occurrence is not None
    schedule, _version = decode_state(fire.record)
    out = occurrence_record(schedule, fire.occurrence, NOW + 2, "scheduled")
    headers = dict(out.headers)
    assert headers["scheduler-fire-id"] == b"a@3/%d" % NOW
    assert headers["scheduler-occurrence-at"] == b"%d" % NOW
    assert headers["scheduler-due-at"] == b"%d" % NOW
    assert headers["scheduler-run"] == b"1"
    assert headers["scheduler-skipped"] == b"0"
    assert "scheduler-await-done" not in headers and "scheduler-backfill" not in headers
    assert out.topic == "target" and out.value == b"v"


def test_max_runs_reached_tombstones_it() -> None:
    s = every("a", 1000, starts_at=NOW - 1000, max_runs=1)
    index = DueIndex()
    index.put(b"a", armed(s, 3, NOW))
    plan = run([], index)
    assert len(plan.fires) == 1 and state_of(plan, "a") is None and plan.ended == 1


def test_pause_parks_it_in_the_same_tick_and_resume_arms_a_future_occurrence() -> None:
    s = every("a", 1000, starts_at=NOW - 10_000)
    index = DueIndex()
    index.put(b"a", armed(s, 3, NOW))
    plan = run([control(9, "a")], index, decoded=[Pause("a")])
    assert plan.fires == [], "a pause consumed in the tick holds the occurrence due in it"
    paused = state_of(plan, "a")
    assert paused is not None and paused[0].due_ms == PARKED_MS and paused[0].recurrence is not None
    assert paused[0].recurrence.paused and paused[1] == 3
    index.put(b"a", plan.state_writes[(0, b"a")] or b"")
    later = NOW + 5500
    plan = run([control(10, "a")], index, decoded=[Resume("a")], now=later)
    resumed = state_of(plan, "a")
    assert resumed is not None and resumed[0].recurrence is not None and not resumed[0].recurrence.paused
    assert resumed[0].due_ms > later, "none of the paused occurrences fires"
    assert plan.fires == []


def test_after_waits_for_its_done_and_a_stale_done_is_ignored() -> None:
    s = Schedule("w", "target", NOW, b"v", recurrence=Recurrence(after_ms=2000))
    index = DueIndex()
    index.put(b"w", armed(s, 4, NOW))
    plan = run([], index)
    fire = plan.fires[0]
    assert fire.occurrence is not None and fire.occurrence.await_done
    waiting = state_of(plan, "w")
    assert waiting is not None and waiting[0].due_ms == PARKED_MS
    index.put(b"w", plan.state_writes[(0, b"w")] or b"")
    stale = run([control(11, "w")], index, decoded=[Done("w", "w@4/123", NOW + 100)])
    assert stale.stale_done == 1 and (0, b"w") not in stale.state_writes
    done = run([control(12, "w")], index, decoded=[Done("w", f"w@4/{NOW}", NOW + 100)], now=NOW + 100)
    rearmed = state_of(done, "w")
    assert rearmed is not None and rearmed[0].due_ms == NOW + 2100


def test_backfill_fires_past_occurrences_without_touching_the_state() -> None:
    s = every("a", 1000, starts_at=NOW - 100_000)
    index = DueIndex()
    index.put(b"a", armed(s, 3, NOW + 1000))
    plan = run([control(20, "a")], index, decoded=[Backfill("a", NOW - 10_000, NOW - 8000)])
    times = [f.occurrence.at_ms for f in plan.fires if f.occurrence is not None]
    assert times == [NOW - 10_000, NOW - 9000, NOW - 8000]
    assert all(
        f.occurrence is not None and f.occurrence.backfill and f.occurrence.version == 20 for f in plan.fires
    )
    assert (0, b"a") not in plan.state_writes


def test_control_commands_for_one_time_or_missing_schedules_are_rejected() -> None:
    index = DueIndex()
    index.put(b"once", encode_state(Schedule("once", "target", NOW + 10_000), 1))
    plan = run([control(1, "once"), control(2, "nobody")], index, decoded=[Pause("once"), Resume("nobody")])
    assert [r.reason for r in plan.rejects] == [RejectReason.NOT_RECURRING, RejectReason.NOT_RECURRING]
    assert "one-time" in plan.rejects[0].message and "nothing is pending" in plan.rejects[1].message


def test_a_bad_spec_is_rejected_with_a_reason() -> None:
    bad = Schedule("c", "target", NOW, b"v", recurrence=Recurrence(cron="61 * * * *"))
    fast = every("f", 10)
    plan = run([command(1, bad), command(2, fast)])
    assert [r.reason for r in plan.rejects] == [RejectReason.INVALID_RECURRENCE] * 2
    assert plan.state_writes == {}


def test_catch_up_under_all_stays_within_the_fire_budget() -> None:
    s = every("a", 1000, starts_at=NOW - 9000, missed="all")
    index = DueIndex()
    index.put(b"a", armed(s, 3, NOW - 9000))
    plan = run([], index, max_fires=4)
    times = [f.occurrence.at_ms for f in plan.fires if f.occurrence is not None]
    assert times == [NOW - 9000, NOW - 8000, NOW - 7000, NOW - 6000]
    nxt = state_of(plan, "a")
    assert nxt is not None and nxt[0].due_ms == NOW - 5000, "the rest fire next tick, oldest first"


def test_a_relocated_after_schedule_waiting_for_its_done_is_armed_again() -> None:
    """A move home gives a new version, so the old occurrence's done could never match: the move counts as it."""
    spec = Recurrence(after_ms=2000, occurrence_ms=PARKED_MS, runs=1, running_ms=NOW - 5000)
    waiting = Schedule("w", "target", PARKED_MS, b"v", created_ms=NOW - 9000, recurrence=spec)
    moved = InputRecord(0, 30, NOW, b"w", encode_schedule(waiting), [("scheduler-relocated-from", b"2")])
    plan = run([moved])
    state = state_of(plan, "w")
    assert state is not None and state[1] == 30 and plan.relocated == 1
    assert state[0].due_ms == NOW + 2000, "armed after_ms from the move"
    assert state[0].recurrence is not None and state[0].recurrence.running_ms is None
