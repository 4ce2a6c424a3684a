"""The recurring-schedule engine: pure functions from a `Recurrence` state and a time to the next state.

No Kafka, no clock: every time is an argument in epoch milliseconds; zones are used only inside (cron maths in
`scheduler._cron`, over cronsim). The scheduler arms a schedule, steps it when it is due, and applies control
commands (pause, resume, done, backfill) to its state record.

Occurrences. `cron`: what cronsim yields in `timezone`, at or after `starts_at` (else the created time), up to
`ends_at` (inclusive). DST follows cronsim (Debian cron): a 5-field expression with a fixed minute and hour is
wall-clock time, so a local time in a spring-forward gap fires once at the first instant after the gap (two
such times in one gap collapse into that one fire) and a local time repeated at fall-back fires once, at the
first pass; an expression with a wildcard minute or hour (`*/30 * * * *`, `0 * * * *`), and any 6-field one,
follows elapsed time: an hourly job stays hourly, so the repeated hour fires twice and the skipped one not at
all. `every`: starts_at + k * every_ms for k >= 0, starts_at defaulting to the created time (the first
occurrence fires on creation; a replaced schedule starts over). `after`: the first occurrence at starts_at, else
created + after_ms; each next one after_ms after the previous one is reported done (until then it is parked).

Decisions where the design is silent:
- `missed` counts the occurrences a step handled (fired or skipped) more than grace_ms after their time.
- With overlap skip/buffer_one a step fires at most one occurrence (the others would overlap it): under `all`
  the first in the window fires, and the next one is buffered (buffer_one) or skipped; the rest are skipped.
- An occurrence due while one is running is never subject to the missed policy: it is buffered or skipped.
- When the buffered occurrence is released (its predecessor done), occurrences that came due meanwhile (the
  buffer was full) are skipped, and the buffered one fires late at once.
- `after` fires its one armed occurrence however late, except under `skip` past the grace: then it is skipped and
  the next one armed after_ms from now.
- pause keeps runs, skipped and a running occurrence (its done still counts); a done while paused releases
  nothing (a buffered occurrence is dropped and counted skipped). resume of a schedule not paused changes nothing.
  An `after` schedule resumed past its armed time arms after_ms from the resume.
- backfill lists nominal occurrences within starts_at/ends_at (an `every` without starts_at keeps its phase and
  may reach before the created time); it neither counts runs nor touches the state. `after` has none (error).
- upcoming is empty while paused; for `after` it is the armed occurrence unless one is running.
- A schedule with no occurrence left (past ends_at, max_runs reached, a cron with nothing in cronsim's 50 years)
  ends: arm gives it due = created, and the step at that time returns state None without a fire.

Cost: `every` is arithmetic (a step is O(1) however long the scheduler was down, plus one entry per occurrence
fired under `all`, at most `limit`); `cron` takes one cached cronsim step when on time, and after a gap a
reverse-checked previous occurrence and a count by days (see `scheduler._cron`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from scheduler import _cron
from scheduler.model import PARKED_MS, Missed, Overlap, Recurrence, occurrence_fire_id

__all__ = [
    "Occurrence",
    "Step",
    "arm",
    "backfill",
    "done",
    "pause",
    "resume",
    "step",
    "upcoming",
    "validate",
]

_MISSED = frozenset(m.value for m in Missed)
_OVERLAP = frozenset(o.value for o in Overlap)
_NONE_LEFT = PARKED_MS  # occurrence_ms of a schedule with no occurrence left


class Occurrence(NamedTuple):
    """One occurrence to fire now: its nominal time, its run number (1-based), the schedule's skipped count."""

    at_ms: int
    run: int
    skipped_so_far: int


class Step(NamedTuple):
    """What a due step does: fire these (oldest first), then the next state (None: ended) due at `due_ms`."""

    fires: list[Occurrence]
    state: Recurrence | None
    due_ms: int
    skipped: int  # occurrences not fired by this step (missed policy, overlap)
    missed: int  # occurrences this step reached more than grace_ms after their nominal time


# Building a state is on the hot path: the frozen dataclass's __init__ (object.__setattr__ per field) costs about
# twice what setting the 16 slots through their descriptors does. Same object, same fields, same equality.
_new = object.__new__
(
    _cron_set,
    _every_set,
    _after_set,
    _timezone_set,
    _starts_set,
    _ends_set,
    _max_runs_set,
    _missed_set,
    _overlap_set,
    _catch_up_set,
    _paused_set,
    _occurrence_set,
    _runs_set,
    _skipped_set,
    _running_set,
    _buffered_set,
) = (
    getattr(Recurrence, name).__set__
    for name in (
        "cron",
        "every_ms",
        "after_ms",
        "timezone",
        "starts_at",
        "ends_at",
        "max_runs",
        "missed",
        "overlap",
        "catch_up_ms",
        "paused",
        "occurrence_ms",
        "runs",
        "skipped",
        "running_ms",
        "buffered_ms",
    )
)


def _state(
    r: Recurrence,
    occurrence_ms: int,
    runs: int,
    skipped: int,
    running_ms: int | None,
    buffered_ms: int | None,
    paused: bool | None = None,
) -> Recurrence:
    o: Recurrence = _new(Recurrence)
    _cron_set(o, r.cron)
    _every_set(o, r.every_ms)
    _after_set(o, r.after_ms)
    _timezone_set(o, r.timezone)
    _starts_set(o, r.starts_at)
    _ends_set(o, r.ends_at)
    _max_runs_set(o, r.max_runs)
    _missed_set(o, r.missed)
    _overlap_set(o, r.overlap)
    _catch_up_set(o, r.catch_up_ms)
    _paused_set(o, r.paused if paused is None else paused)
    _occurrence_set(o, occurrence_ms)
    _runs_set(o, runs)
    _skipped_set(o, skipped)
    _running_set(o, running_ms)
    _buffered_set(o, buffered_ms)
    return o


# ---- validation -------------------------------------------------------------------------------------------


def validate(r: Recurrence, *, min_interval_ms: int = 1000) -> str | None:
    """Why this recurrence cannot be accepted (one sentence for the reject record), None if it can."""
    return next(_problems(r, min_interval_ms), None)


def _problems(r: Recurrence, min_interval_ms: int) -> Iterator[str]:
    kinds = [k for k in ("cron", "every_ms", "after_ms") if getattr(r, k) is not None]
    if len(kinds) != 1:
        yield f"a recurrence needs exactly one of cron, every_ms, after_ms (got {', '.join(kinds) or 'none'})"
        return
    problem = _validate_kind(r, min_interval_ms)
    if problem is not None:
        yield problem
    try:
        _cron.zone(r.timezone)
    except Exception:  # ZoneInfoNotFoundError, ValueError for a malformed key: bad input never crashes
        yield f"unknown time zone {r.timezone!r} (an IANA name such as Europe/Paris)"
    if r.starts_at is not None and r.ends_at is not None and r.ends_at < r.starts_at:
        yield f"ends_at {r.ends_at} is before starts_at {r.starts_at}"
    if r.max_runs is not None and r.max_runs < 1:
        yield f"max_runs must be at least 1 (got {r.max_runs})"
    if r.missed not in _MISSED:
        yield f"unknown missed policy {r.missed!r} (skip, latest or all)"
    if r.overlap not in _OVERLAP:
        yield f"unknown overlap policy {r.overlap!r} (allow, skip or buffer_one)"
    if r.after_ms is not None and r.overlap != Overlap.ALLOW:
        yield "overlap applies to cron and every only: an after schedule never overlaps itself"
    if r.catch_up_ms is not None and r.catch_up_ms < 0:
        yield f"catch_up_ms must not be negative (got {r.catch_up_ms})"


def _validate_kind(r: Recurrence, min_interval_ms: int) -> str | None:
    interval = r.every_ms if r.every_ms is not None else r.after_ms
    if interval is not None:
        name = "every_ms" if r.every_ms is not None else "after_ms"
        if interval < min_interval_ms:
            return f"{name} {interval} is below the minimum interval of {min_interval_ms} ms"
        return None
    assert r.cron is not None
    try:
        expr = _cron.expression(r.cron)
        _cron.parsed(expr)
    except Exception as e:  # CronSimError, or anything cronsim trips on: bad input never crashes
        return f"bad cron expression {r.cron!r}: {e}"
    gap_ms = _cron.min_gap_s(expr) * 1000
    if gap_ms < min_interval_ms:
        return (
            f"cron expression {r.cron!r} fires every {gap_ms} ms at times, more often than the minimum "
            f"interval of {min_interval_ms} ms"
        )
    return None


# ---- the occurrence sequence --------------------------------------------------------------------------------


def _next(r: Recurrence, after_ms: int) -> int:
    """The first occurrence after `after_ms` within the bounds, _NONE_LEFT if none (cron and every)."""
    every = r.every_ms
    if every is not None:
        anchor = r.occurrence_ms
        nxt = anchor + ((after_ms - anchor) // every + 1) * every
        if r.starts_at is not None and nxt < r.starts_at:
            nxt = _first_at_or_after(r, r.starts_at)
    else:
        assert r.cron is not None
        start = after_ms if r.starts_at is None else max(after_ms, r.starts_at - 1)
        found = _cron.next_after(r.cron, r.timezone, start)
        nxt = _NONE_LEFT if found is None else found
    if r.ends_at is not None and nxt > r.ends_at:
        return _NONE_LEFT
    return nxt


def _first_at_or_after(r: Recurrence, at_ms: int) -> int:
    assert r.every_ms is not None
    anchor, every = r.occurrence_ms, r.every_ms
    return anchor + -((anchor - at_ms) // every) * every


def _count(r: Recurrence, lo_ms: int, hi_ms: int) -> int:
    """Occurrences in (lo_ms, hi_ms] (both already within the bounds)."""
    if hi_ms <= lo_ms:
        return 0
    if r.every_ms is not None:
        anchor, every = r.occurrence_ms, r.every_ms
        return (hi_ms - anchor) // every - (lo_ms - anchor) // every
    assert r.cron is not None
    return _cron.count(r.cron, r.timezone, lo_ms, hi_ms)


def _newest(r: Recurrence, at_ms: int, floor_ms: int) -> int:
    """The newest occurrence in [floor_ms, at_ms] (one is known to exist)."""
    if r.every_ms is not None:
        anchor, every = r.occurrence_ms, r.every_ms
        return anchor + ((at_ms - anchor) // every) * every
    assert r.cron is not None
    found = _cron.prev_at_or_before(r.cron, r.timezone, at_ms, floor_ms)
    assert found is not None
    return found


def _ended(skipped: int = 0, missed: int = 0, fires: list[Occurrence] | None = None) -> Step:
    return Step(fires or [], None, PARKED_MS, skipped, missed)


def _due(r: Recurrence) -> int:
    """When a state record is due: parked while paused or while it waits for a done, else its occurrence."""
    if r.paused or (r.running_ms is not None and (r.after_ms is not None or r.buffered_ms is not None)):
        return PARKED_MS
    return r.occurrence_ms


# ---- arm and step -------------------------------------------------------------------------------------------


def arm(r: Recurrence, created_ms: int) -> tuple[Recurrence, int]:
    """The state of a new (or replacing) recurring schedule, runtime fields reset, and its due time.

    `r` must have passed `validate`. No occurrence in range: due at `created_ms`, and that step ends it.
    """
    base = r.starts_at if r.starts_at is not None else created_ms
    if r.after_ms is not None:
        first = r.starts_at if r.starts_at is not None else created_ms + r.after_ms
    elif r.every_ms is not None:
        first = base
    else:
        assert r.cron is not None
        found = _cron.next_after(r.cron, r.timezone, base - 1)
        first = _NONE_LEFT if found is None else found
    if r.ends_at is not None and first > r.ends_at:
        first = _NONE_LEFT
    state = _state(r, first, 0, 0, None, None)
    if r.paused:
        return state, PARKED_MS
    return state, created_ms if first == _NONE_LEFT else first


def step(r: Recurrence, due_ms: int, now_ms: int, *, grace_ms: int, catch_up_ms: int, limit: int) -> Step:
    """Handle the occurrences due by `now_ms` (the record is due: due_ms <= now_ms) under the missed and overlap
    policies: what to fire now, oldest first, and the next state."""
    del due_ms  # the state says where the schedule stands; the record's due time only made it come up
    occ = r.occurrence_ms
    if r.after_ms is not None:
        return _step_after(r, now_ms, grace_ms)
    releasing = r.running_ms is None and r.buffered_ms is not None and not r.paused
    if releasing or occ == _NONE_LEFT or (r.max_runs is not None and r.runs >= r.max_runs):
        return _release(r, now_ms, grace_ms) if releasing else _ended()
    if r.paused or occ > now_ms or (r.running_ms is not None and r.buffered_ms is not None):
        return Step([], r, _due(r), 0, 0)  # paused, not due yet, or parked: nothing to do
    after_occ = _next(r, occ)
    if after_occ > now_ms:  # on time, the common case: only the armed occurrence is due
        fast = _fire_on_time(r, now_ms - occ, after_occ, grace_ms, catch_up_ms)
        if fast is not None:
            return fast
        return _handle(r, now_ms, occ, 1, after_occ, grace_ms, catch_up_ms, limit)
    cap = now_ms if r.ends_at is None else min(now_ms, r.ends_at)
    newest = _newest(r, cap, occ)
    n_due = 1 + _count(r, occ, newest)
    return _handle(r, now_ms, newest, n_due, _next(r, newest), grace_ms, catch_up_ms, limit)


def _fire_on_time(r: Recurrence, late: int, after_occ: int, grace_ms: int, catch_up_ms: int) -> Step | None:
    """The hot path: the armed occurrence alone is due, nothing runs, it fires. None: not that case."""
    if r.running_ms is not None or r.overlap != Overlap.ALLOW or late > grace_ms:
        return None
    if r.missed == Missed.ALL and late > (catch_up_ms if r.catch_up_ms is None else r.catch_up_ms):
        return None
    runs = r.runs + 1
    fires = [Occurrence(r.occurrence_ms, runs, r.skipped)]
    if after_occ == _NONE_LEFT or (r.max_runs is not None and runs >= r.max_runs):
        return Step(fires, None, PARKED_MS, 0, 0)
    return Step(fires, _state(r, after_occ, runs, r.skipped, None, None), after_occ, 0, 0)


def _missed(r: Recurrence, now_ms: int, newest: int, n_due: int, grace_ms: int) -> int:
    """How many of the due occurrences [r.occurrence_ms, newest] are more than grace_ms late."""
    late_before = now_ms - grace_ms  # an occurrence earlier than this is missed
    if newest < late_before:
        return n_due
    if r.occurrence_ms >= late_before:
        return 0
    return 1 + _count(r, r.occurrence_ms, late_before - 1)


def _handle(
    r: Recurrence,
    now_ms: int,
    newest: int,
    n_due: int,
    after_newest: int,
    grace_ms: int,
    catch_up_ms: int,
    limit: int,
) -> Step:
    missed = _missed(r, now_ms, newest, n_due, grace_ms)
    if r.running_ms is not None:  # overlap skip / buffer_one: the previous occurrence is still running
        if r.overlap == Overlap.BUFFER_ONE:
            state = _state(r, after_newest, r.runs, r.skipped + n_due - 1, r.running_ms, r.occurrence_ms)
            return Step([], state, PARKED_MS, n_due - 1, missed)
        return _skip_all(r, n_due, after_newest, missed)
    if r.missed == Missed.ALL:
        window = catch_up_ms if r.catch_up_ms is None else r.catch_up_ms
        return _handle_all(r, now_ms, newest, n_due, after_newest, now_ms - window, missed, limit)
    if r.missed == Missed.SKIP and now_ms - newest > grace_ms:
        return _skip_all(r, n_due, after_newest, missed)
    # latest (and skip within the grace): the newest fires, the older ones are skipped
    skipped = r.skipped + n_due - 1
    fire = Occurrence(newest, r.runs + 1, skipped)
    return _after_fires(r, [fire], skipped, n_due - 1, missed, after_newest, None)


def _skip_all(r: Recurrence, n: int, armed: int, missed: int) -> Step:
    """None of the due occurrences fires (missed policy, or overlap skip): all `n` are skipped."""
    if armed == _NONE_LEFT:
        return _ended(n, missed)
    return Step([], _state(r, armed, r.runs, r.skipped + n, r.running_ms, None), armed, n, missed)


def _after_fires(
    r: Recurrence,
    fires: list[Occurrence],
    skipped_total: int,
    skipped_now: int,
    missed: int,
    armed: int,
    buffered: int | None,
) -> Step:
    runs = r.runs + len(fires)
    if (r.max_runs is not None and runs >= r.max_runs) or (armed == _NONE_LEFT and buffered is None):
        return Step(fires, None, PARKED_MS, skipped_now, missed)
    if r.overlap == Overlap.ALLOW:
        return Step(fires, _state(r, armed, runs, skipped_total, None, None), armed, skipped_now, missed)
    state = _state(r, armed, runs, skipped_total, fires[-1].at_ms, buffered)
    return Step(fires, state, PARKED_MS if buffered is not None else armed, skipped_now, missed)


def _handle_all(
    r: Recurrence,
    now_ms: int,
    newest: int,
    n_due: int,
    after_newest: int,
    window_lo: int,
    missed: int,
    limit: int,
) -> Step:
    occ = r.occurrence_ms
    old = 0 if occ >= window_lo else min(n_due, 1 + _count(r, occ, window_lo - 1))
    in_window = n_due - old
    if in_window == 0:
        return _skip_all(r, old, after_newest, missed)
    room = limit if r.max_runs is None else min(limit, r.max_runs - r.runs)
    take = min(in_window, max(room, 1), 1 if r.overlap != Overlap.ALLOW else in_window)
    skipped = r.skipped + old
    at = occ if occ >= window_lo else _next(r, window_lo - 1)
    fires = [Occurrence(at, r.runs + 1, skipped)]
    for i in range(1, take):
        at = _next(r, at)
        fires.append(Occurrence(at, r.runs + 1 + i, skipped))
    rest = in_window - take
    if rest == 0:
        return _after_fires(r, fires, skipped, old, missed, after_newest, None)
    if r.overlap == Overlap.ALLOW:  # more than `limit`: the rest fire on the next step, due at once
        return _after_fires(r, fires, skipped, old, missed, _next(r, at), None)
    # overlap skip / buffer_one: the one fired is running; the next is buffered (buffer_one), others skipped
    buffered = _next(r, at) if r.overlap == Overlap.BUFFER_ONE else None
    over = rest - (buffered is not None)
    return _after_fires(r, fires, skipped + over, old + over, missed, after_newest, buffered)


def _release(r: Recurrence, now_ms: int, grace_ms: int) -> Step:
    """The running occurrence is done and one is buffered: fire it now; what came due meanwhile is skipped."""
    assert r.buffered_ms is not None
    occ, buffered = r.occurrence_ms, r.buffered_ms
    n_due, missed, armed = 0, int(now_ms - buffered > grace_ms), occ
    if occ != _NONE_LEFT and occ <= now_ms:
        cap = now_ms if r.ends_at is None else min(now_ms, r.ends_at)
        newest = _newest(r, cap, occ)
        n_due = 1 + _count(r, occ, newest)
        missed += _missed(r, now_ms, newest, n_due, grace_ms)
        armed = _next(r, newest)
    skipped = r.skipped + n_due
    fire = Occurrence(buffered, r.runs + 1, skipped)
    return _after_fires(r, [fire], skipped, n_due, missed, armed, None)


def _step_after(r: Recurrence, now_ms: int, grace_ms: int) -> Step:
    assert r.after_ms is not None
    occ = r.occurrence_ms
    if occ == _NONE_LEFT:
        return _ended()
    if r.paused or r.running_ms is not None or occ > now_ms:
        return Step([], r, _due(r), 0, 0)  # paused, waiting for a done, or not due yet
    late = now_ms - occ > grace_ms
    if late and r.missed == Missed.SKIP:
        nxt = now_ms + r.after_ms
        if r.ends_at is not None and nxt > r.ends_at:
            return _ended(1, 1)
        return Step([], _state(r, nxt, r.runs, r.skipped + 1, None, None), nxt, 1, 1)
    fires = [Occurrence(occ, r.runs + 1, r.skipped)]
    if r.max_runs is not None and r.runs + 1 >= r.max_runs:
        return Step(fires, None, PARKED_MS, 0, int(late))
    return Step(fires, _state(r, occ, r.runs + 1, r.skipped, occ, None), PARKED_MS, 0, int(late))


# ---- control commands ---------------------------------------------------------------------------------------


def done(
    r: Recurrence, version: int, sid: str, fire_id: str, finished_ms: int
) -> tuple[Recurrence, int] | None:
    """A done report for the running occurrence: the next state and due; None if it is stale or a duplicate."""
    if r.running_ms is None or fire_id != occurrence_fire_id(sid, version, r.running_ms):
        return None
    if r.after_ms is not None:
        nxt = finished_ms + r.after_ms
        if r.ends_at is not None and nxt > r.ends_at:
            nxt = _NONE_LEFT
        state = _state(r, nxt, r.runs, r.skipped, None, None)
        return state, PARKED_MS if r.paused else (finished_ms if nxt == _NONE_LEFT else nxt)
    if r.buffered_ms is not None:
        if r.paused:  # the buffered occurrence would fire during the pause: dropped, counted
            return _state(r, r.occurrence_ms, r.runs, r.skipped + 1, None, None), PARKED_MS
        return _state(r, r.occurrence_ms, r.runs, r.skipped, None, r.buffered_ms), finished_ms
    state = _state(r, r.occurrence_ms, r.runs, r.skipped, None, None)
    if r.paused:
        return state, PARKED_MS
    return state, finished_ms if r.occurrence_ms == _NONE_LEFT else r.occurrence_ms


def pause(r: Recurrence) -> tuple[Recurrence, int]:
    """Hold the schedule: parked until a resume; runs, skipped and a running occurrence are kept."""
    return _state(r, r.occurrence_ms, r.runs, r.skipped, r.running_ms, r.buffered_ms, paused=True), PARKED_MS


def resume(r: Recurrence, now_ms: int) -> tuple[Recurrence, int]:
    """Go on from the next occurrence after `now_ms`: those during the pause never fire and are not skipped."""
    if not r.paused:
        return r, _due(r)
    occ = r.occurrence_ms
    if occ != _NONE_LEFT and occ <= now_ms:
        if r.after_ms is not None:
            occ = now_ms + r.after_ms
            if r.ends_at is not None and occ > r.ends_at:
                occ = _NONE_LEFT
        else:
            occ = _next(r, now_ms)
    state = _state(r, occ, r.runs, r.skipped, r.running_ms, r.buffered_ms, paused=False)
    due = _due(state)
    return state, now_ms if due == _NONE_LEFT else due


def backfill(r: Recurrence, from_ms: int, to_ms: int, limit: int) -> list[int]:
    """The nominal occurrences in [from_ms, to_ms] within starts_at/ends_at; ValueError if more than `limit`."""
    if r.after_ms is not None:
        raise ValueError("an after schedule has no nominal occurrences to backfill (it runs after each done)")
    if to_ms < from_ms:
        raise ValueError(f"backfill range ends ({to_ms}) before it starts ({from_ms})")
    lo = from_ms if r.starts_at is None else max(from_ms, r.starts_at)
    hi = to_ms if r.ends_at is None else min(to_ms, r.ends_at)
    if r.occurrence_ms == _NONE_LEFT and r.every_ms is not None:
        raise ValueError("this schedule has no occurrence left to take its phase from")
    n = _count(r, lo - 1, hi)
    if n > limit:
        raise ValueError(
            f"backfill range holds {n} occurrences, more than the limit of {limit}: "
            "narrow the range or raise KAFKA_SCHEDULER_MAX_BACKFILL"
        )
    out: list[int] = []
    cursor = lo - 1
    for _ in range(n):
        cursor = _next(r, cursor)
        out.append(cursor)
    return out


def upcoming(r: Recurrence, after_ms: int, n: int) -> list[int]:
    """The next `n` occurrences after `after_ms` (for `get`): none while paused or past the end."""
    if r.paused or r.occurrence_ms == _NONE_LEFT or n <= 0:
        return []
    if r.after_ms is not None:
        return [] if r.running_ms is not None else [r.occurrence_ms]
    left = n if r.max_runs is None else min(n, r.max_runs - r.runs)
    out: list[int] = []
    cursor = max(after_ms, r.occurrence_ms - 1)
    while len(out) < left:
        cursor = _next(r, cursor)
        if cursor == _NONE_LEFT:
            break
        out.append(cursor)
    return out
