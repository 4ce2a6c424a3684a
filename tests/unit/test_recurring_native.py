"""The native on-time step (codec.step_on_time) and restate agree with the engine (scheduler.recurring.step)
wherever they answer; occurrence_record builds exactly the headers the one-time fired record plus the
occurrence's replacements gave."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import recurring
from scheduler.codec import decode_state, encode_state, restate, step_on_time
from scheduler.model import (
    HEADER_AWAIT_DONE,
    HEADER_BACKFILL,
    HEADER_DUE_AT,
    HEADER_EPOCH,
    HEADER_FIRE_ID,
    HEADER_OCCURRENCE_AT,
    HEADER_RUN,
    HEADER_SKIPPED,
    PARKED_MS,
    Recurrence,
    Schedule,
)
from scheduler.records import (
    Headers,
    Occurrence,
    OutRecord,
    fired_records,
    occurrence_record,
)
from scheduler.service.occurrences import RecurringRules

NOW = 1_700_000_000_000
GRACE = 60_000
CATCH_UP = 86_400_000
HOUR = 3_600_000


def state(r: Recurrence, version: int = 7, headers: Headers | None = None) -> tuple[Schedule, bytes]:
    s = Schedule(
        "sid", "target", recurring._due(r), b"v", b"k", tuple(headers or ()), None, NOW - HOUR, "p", r
    )
    return s, encode_state(s, version)


def engine(r: Recurrence, now: int, grace: int = GRACE, catch_up: int = CATCH_UP) -> recurring.Step:
    return recurring.step(r, recurring._due(r), now, grace_ms=grace, catch_up_ms=catch_up, limit=100)


def agrees(r: Recurrence, now: int, grace: int = GRACE, catch_up: int = CATCH_UP) -> bool:
    """Assert the native step agrees with the engine if it answers; whether it answered."""
    s, record = state(r)
    fast = step_on_time(record, now, grace, catch_up)
    if fast is None:
        return False
    taken = engine(r, now, grace, catch_up)
    nxt, at, run, skipped = fast
    assert [tuple(o) for o in taken.fires] == [(at, run, skipped)]
    assert taken.skipped == 0 and taken.missed == 0
    if taken.state is None:
        assert nxt is None
    else:
        assert nxt is not None
        assert decode_state(nxt) == (dataclasses.replace(s, due_ms=taken.due_ms, recurrence=taken.state), 7)
    return True


opt_ms = st.none() | st.integers(NOW - 10 * HOUR, NOW + 10 * HOUR)
recurrences = st.builds(
    Recurrence,
    cron=st.none() | st.just("*/5 * * * *"),
    every_ms=st.none() | st.sampled_from([1000, 5000, 60_000, HOUR]) | st.integers(-5, 10**7),
    after_ms=st.none() | st.just(5000),
    starts_at=opt_ms,
    ends_at=opt_ms,
    max_runs=st.none() | st.integers(0, 5),
    missed=st.sampled_from(["latest", "skip", "all", "bogus"]),
    overlap=st.sampled_from(["allow", "allow", "skip", "buffer_one"]),
    catch_up_ms=st.none() | st.integers(0, 2 * HOUR),
    paused=st.booleans(),
    occurrence_ms=st.integers(NOW - 2 * HOUR, NOW + HOUR) | st.just(PARKED_MS),
    runs=st.integers(0, 5),
    skipped=st.integers(0, 5),
    running_ms=st.none() | st.just(NOW - 1000),
    buffered_ms=st.none() | st.just(NOW),
)


@settings(max_examples=600, deadline=None)
@given(r=recurrences, ahead=st.integers(-1000, 3 * HOUR), grace=st.integers(0, 2 * HOUR))
def test_native_step_agrees_with_the_engine_wherever_it_answers(
    r: Recurrence, ahead: int, grace: int
) -> None:
    if r.cron is not None and r.every_ms is not None:
        r = dataclasses.replace(r, cron=None)
    if r.every_ms is not None and r.every_ms <= 0 and r.cron is None and r.after_ms is None:
        _s, record = state(r)  # a bad interval: the engine's arithmetic is undefined, the native one declines
        assert step_on_time(record, r.occurrence_ms + ahead, grace, CATCH_UP) is None
        return
    if r.every_ms is None and r.cron is None and r.after_ms is None:
        r = dataclasses.replace(r, every_ms=HOUR)
    now = min(r.occurrence_ms, PARKED_MS - 10 * HOUR) + ahead
    agrees(r, now, grace)


@settings(max_examples=300, deadline=None)
@given(
    every=st.sampled_from([1000, 60_000, HOUR]),
    late=st.integers(0, 59_999),
    runs=st.integers(0, 100),
    missed=st.sampled_from(["latest", "skip", "all"]),
)
def test_an_every_schedule_on_time_takes_the_native_path(
    every: int, late: int, runs: int, missed: str
) -> None:
    late = late % every
    r = Recurrence(every_ms=every, starts_at=NOW - 10 * every, occurrence_ms=NOW, runs=runs, missed=missed)
    assert agrees(r, NOW + late)


def on_time(**kw: object) -> Recurrence:
    return Recurrence(every_ms=1000, occurrence_ms=NOW, **kw)  # type: ignore[arg-type]


def test_edge_cases() -> None:
    # ends_at exactly at the next occurrence: it still comes; one ms before: this fire is the last
    fast = step_on_time(state(on_time(ends_at=NOW + 1000))[1], NOW, GRACE, CATCH_UP)
    assert fast is not None and fast[0] is not None and agrees(on_time(ends_at=NOW + 1000), NOW)
    assert decode_state(fast[0])[0].due_ms == NOW + 1000
    fast = step_on_time(state(on_time(ends_at=NOW + 999))[1], NOW, GRACE, CATCH_UP)
    assert fast == (None, NOW, 1, 0) and agrees(on_time(ends_at=NOW + 999), NOW)
    # max_runs: the last run ends it (a tombstone); one already reached is the engine's
    assert step_on_time(state(on_time(max_runs=3, runs=2))[1], NOW, GRACE, CATCH_UP) == (None, NOW, 3, 0)
    assert agrees(on_time(max_runs=3, runs=2), NOW)
    assert step_on_time(state(on_time(max_runs=3, runs=3))[1], NOW, GRACE, CATCH_UP) is None
    # the engine decides: paused, running, buffered, overlap not allow, not due, two due, late, out of catch-up
    declined = [
        (on_time(paused=True), NOW),
        (on_time(running_ms=NOW - 1000, overlap="skip"), NOW),
        (on_time(running_ms=NOW - 1000), NOW),
        (on_time(buffered_ms=NOW - 500, overlap="buffer_one"), NOW),
        (on_time(overlap="skip"), NOW),
        (on_time(), NOW - 1),
        (on_time(), NOW + 1000),
        (on_time(), NOW + 999),  # still on time: answered (checked below)
        (Recurrence(every_ms=HOUR, occurrence_ms=NOW), NOW + GRACE + 1),
        (Recurrence(every_ms=HOUR, occurrence_ms=NOW, missed="all", catch_up_ms=10), NOW + 11),
        (Recurrence(every_ms=HOUR, occurrence_ms=NOW, starts_at=NOW + 2 * HOUR), NOW),
        (Recurrence(cron="* * * * *", occurrence_ms=NOW), NOW),
        (Recurrence(after_ms=1000, occurrence_ms=NOW), NOW),
        (Recurrence(every_ms=1000, occurrence_ms=PARKED_MS), PARKED_MS),
        (Recurrence(every_ms=2**62, occurrence_ms=2**62), 2**62),  # overflow
    ]
    for r, now in declined:
        answered = agrees(r, now)
        assert answered == (now == NOW + 999), (r, now)
    assert step_on_time(b"garbage", NOW, GRACE, CATCH_UP) is None
    assert step_on_time(b"\xc3\x01" + b"\x00" * 8 + b"\x02", NOW, GRACE, CATCH_UP) is None  # another schema


@settings(max_examples=300, deadline=None)
@given(r=recurrences, ahead=st.integers(0, 3 * HOUR))
def test_the_rules_step_is_the_same_with_the_record_native_path_and_restate(
    r: Recurrence, ahead: int
) -> None:
    """RecurringRules.step with the raw record (native step, restate) gives what it gives without it."""
    if r.after_ms is not None or r.cron is not None:
        r = dataclasses.replace(r, every_ms=None)
        if r.cron is not None and r.occurrence_ms != PARKED_MS:  # a state the engine arms: on the cron's grid
            grid = 300_000
            buffered = None if r.buffered_ms is None else r.buffered_ms // grid * grid
            occ = r.occurrence_ms // grid * grid
            ends = None if r.ends_at is None or r.ends_at < occ else r.ends_at
            r = dataclasses.replace(r, occurrence_ms=occ, buffered_ms=buffered, starts_at=None, ends_at=ends)
    elif r.every_ms is None or r.every_ms <= 0:
        r = dataclasses.replace(r, every_ms=HOUR)
    rules = RecurringRules(grace_ms=GRACE, catch_up_ms=CATCH_UP)
    s, record = state(r)
    now = min(r.occurrence_ms, PARKED_MS - 10 * HOUR) + ahead
    assert rules.step(s, 7, now, 10, record) == rules.step(s, 7, now, 10)


def test_restate_changes_only_the_due_time_and_the_recurrence() -> None:
    s, record = state(on_time(), headers=[("h", b"1"), ("n", None)])
    r = on_time(runs=4, skipped=2, running_ms=NOW)
    assert decode_state(restate(record, PARKED_MS, r)) == (
        dataclasses.replace(s, due_ms=PARKED_MS, recurrence=r),
        7,
    )


# ---- occurrence_record: one list, the same headers as the old construction --------------------------------


def old_occurrence_record(
    schedule: Schedule, occurrence: Occurrence, fired_at_ms: int, source: str
) -> OutRecord:
    """occurrence_record as it was built before: the one-time fired record, its headers replaced."""
    at = occurrence.at_ms
    once = fired_records([(schedule, occurrence.version)], fired_at_ms, source)[0]
    sid = schedule.id.encode()
    fid = b"%s@%d/%d" % (sid, occurrence.version, at)
    ours: Headers = [
        (HEADER_FIRE_ID, fid),
        (HEADER_DUE_AT, b"%d" % at),
        (HEADER_OCCURRENCE_AT, b"%d" % at),
        (HEADER_RUN, b"%d" % occurrence.run),
        (HEADER_SKIPPED, b"%d" % occurrence.skipped),
    ]
    if occurrence.backfill:
        ours.append((HEADER_BACKFILL, b"1"))
    if occurrence.await_done:
        ours.append((HEADER_AWAIT_DONE, fid))
    replaced = {name for name, _ in ours}
    headers = [(k, v) for k, v in once.headers if k not in replaced] + ours
    return once._replace(headers=headers)


header_names = st.sampled_from(
    [
        "x",
        "trace",
        HEADER_EPOCH,
        "scheduler-schedule-id",
        "scheduler-fire-id",
        "scheduler-due-at",
        "scheduler-fired-at",
        "scheduler-occurrence-at",
        "scheduler-run",
        "scheduler-skipped",
        "scheduler-backfill",
        "scheduler-await-done",
        "scheduler-timestamp",
        "scheduler-key",
        "scheduler-topic",
        "scheduler-target-topic",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    sid=st.text(min_size=1, max_size=8),
    headers=st.lists(st.tuples(header_names, st.none() | st.binary(max_size=4)), max_size=8),
    key=st.none() | st.binary(max_size=4),
    partition=st.none() | st.integers(0, 5),
    created=st.integers(0, 2 * NOW),
    occurrence=st.builds(
        Occurrence,
        st.integers(0, 2 * NOW),
        st.integers(0, 10**6),
        st.integers(0, 10**6),
        st.integers(0, 10**9),
        st.booleans(),
        st.booleans(),
    ),
    fired_at=st.integers(0, 2 * NOW),
    source=st.sampled_from(["", "scheduled"]),
)
def test_occurrence_record_equals_the_old_construction(
    sid: str,
    headers: Headers,
    key: bytes | None,
    partition: int | None,
    created: int,
    occurrence: Occurrence,
    fired_at: int,
    source: str,
) -> None:
    s = Schedule(sid, "target", NOW, b"v", key, tuple(headers), partition, created, None, on_time())
    assert occurrence_record(s, occurrence, fired_at, source) == old_occurrence_record(
        s, occurrence, fired_at, source
    )
