"""The recurring engine with a fake clock: missed policies and exact counts, ends, overlap, after + done, pause,
backfill, upcoming, validation, and a property against the nominal occurrences computed without the engine."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.model import PARKED_MS, Recurrence, occurrence_fire_id
from scheduler.recurring import Occurrence, Step, arm, backfill, done, pause, resume, step, upcoming, validate

S, MIN, H, DAY = 1000, 60_000, 3_600_000, 86_400_000
YEAR = 365 * DAY
T0 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
GRACE, CATCH_UP = 60 * S, DAY


def do_step(r: Recurrence, due: int, now: int, limit: int = 100) -> Step:
    return step(r, due, now, grace_ms=GRACE, catch_up_ms=CATCH_UP, limit=limit)


class Driver:
    """The scheduler's view: a state record due at `due`; stepped whenever the clock passes it."""

    def __init__(self, r: Recurrence, created: int = T0, limit: int = 100) -> None:
        self.state: Recurrence | None
        self.state, self.due = arm(r, created)
        self.limit = limit
        self.fired: list[Occurrence] = []
        self.skipped = self.missed = self.steps = 0

    def at(self, now: int) -> list[Occurrence]:
        new: list[Occurrence] = []
        while self.state is not None and self.due <= now:
            s = do_step(self.state, self.due, now, self.limit)
            assert all(f.at_ms <= now for f in s.fires), "fired early"
            new += s.fires
            self.state, self.due = s.state, s.due_ms
            self.skipped += s.skipped
            self.missed += s.missed
            self.steps += 1
            assert self.steps < 1_000_000
        self.fired += new
        return new


def nominal(expr: str, tz: str, after_ms: int, until_ms: int) -> list[int]:
    """Occurrences in (after_ms, until_ms] straight from cronsim (each one later than the previous)."""
    out: list[int] = []
    for dt in CronSim(expr, datetime.fromtimestamp(after_ms // 1000, ZoneInfo(tz))):
        at = int(dt.timestamp()) * 1000
        if at <= (out[-1] if out else after_ms):
            continue
        if at > until_ms:
            return out
        out.append(at)
    return out


# ---- validate -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("r", "words"),
    [
        (Recurrence(), "exactly one of cron, every_ms, after_ms (got none)"),
        (Recurrence(cron="* * * * *", every_ms=5000), "exactly one"),
        (Recurrence(cron="61 * * * *"), "bad cron expression '61 * * * *': Bad minute"),
        (Recurrence(cron="* * * *"), "Wrong number of fields"),
        (Recurrence(cron="@reboot"), "unknown cron alias '@reboot'"),
        (Recurrence(cron="0 0 * * *", timezone="Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        (Recurrence(cron="0 0 * * *", timezone="../etc/passwd"), "unknown time zone"),
        (Recurrence(every_ms=999), "every_ms 999 is below the minimum interval of 1000 ms"),
        (Recurrence(every_ms=0), "below the minimum"),
        (Recurrence(after_ms=10), "after_ms 10 is below the minimum"),
        (Recurrence(cron="*/2 * * * * *"), None),
        (Recurrence(cron="* * * * * *"), None),
        (Recurrence(every_ms=5000, starts_at=10, ends_at=5), "ends_at 5 is before starts_at 10"),
        (Recurrence(every_ms=5000, max_runs=0), "max_runs must be at least 1"),
        (Recurrence(every_ms=5000, missed="never"), "unknown missed policy 'never'"),
        (Recurrence(every_ms=5000, overlap="queue"), "unknown overlap policy 'queue'"),
        (Recurrence(after_ms=5000, overlap="skip"), "an after schedule never overlaps itself"),
        (Recurrence(every_ms=5000, catch_up_ms=-1), "catch_up_ms must not be negative"),
        (Recurrence(cron="@daily", timezone="Europe/Paris", missed="all", overlap="buffer_one"), None),
        (Recurrence(cron="0 0 * * *"), None),
    ],
)
def test_validate_says_why(r: Recurrence, words: str | None) -> None:
    problem = validate(r)
    if words is None:
        assert problem is None
    else:
        assert problem is not None and words in problem


@pytest.mark.parametrize(
    ("cron", "minimum", "ok"),
    [
        ("* * * * * *", 5000, False),  # every second
        ("*/5 * * * * *", 5000, True),
        ("0,3 * * * * *", 5000, False),  # 3 s apart within a minute
        ("58 * * * * *", 59_000, True),  # once a minute
        ("0,59 * * * * *", 5000, False),  # 59 -> next minute's 0: one second
        ("0 0,1 * * * *", 120_000, False),  # a minute apart
        ("59 59 23 * * *", 86_400_000, True),  # once a day
        ("0 59 23 * * *,0 0 0 * * *", 1000, False),  # not one expression: refused as bad
        ("* * * * *", 60_000, True),
        ("* * * * *", 61_000, False),
        ("0 23,0 * * *", 3_600_000, True),  # 23:00 -> 00:00 is an hour
    ],
)
def test_validate_refuses_a_cron_firing_more_often_than_the_minimum(
    cron: str, minimum: int, ok: bool
) -> None:
    problem = validate(Recurrence(cron=cron), min_interval_ms=minimum)
    assert (problem is None) is ok, problem


def test_bad_input_never_crashes_validate() -> None:
    for cron in [
        "",
        " ",
        "@",
        "L L L L L",
        "5L * * * *",
        "* * * * 8#9",
        "*/0 * * * *",
        "1-0 * * * *",
        "\x00",
    ]:
        assert validate(Recurrence(cron=cron)) is not None
    assert validate(Recurrence(cron="0 0 * * *", timezone="")) is not None


@pytest.mark.parametrize(
    ("alias", "expr"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@ANNUALLY", "0 0 1 1 *"),
    ],
)
def test_aliases_mean_what_crontab_says(alias: str, expr: str) -> None:
    r, _ = arm(Recurrence(cron=alias, timezone="Europe/Paris"), T0)
    assert upcoming(r, T0, 5) == nominal(expr, "Europe/Paris", T0, T0 + 6 * YEAR)[:5]


def test_six_fields_have_seconds_first() -> None:
    r, due = arm(Recurrence(cron="*/15 * * * * *"), T0 + 1)
    assert due == T0 + 15 * S
    assert upcoming(r, T0, 3) == [T0 + 15 * S, T0 + 30 * S, T0 + 45 * S]


# ---- every: arithmetic, exact counts --------------------------------------------------------------------------


def test_every_fires_at_creation_then_on_the_rate() -> None:
    d = Driver(Recurrence(every_ms=15 * MIN))
    assert d.due == T0
    for k in range(5):
        assert [f.at_ms for f in d.at(T0 + k * 15 * MIN + 3)] == [T0 + k * 15 * MIN]
    assert [f.run for f in d.fired] == [1, 2, 3, 4, 5] and d.skipped == 0 and d.missed == 0


def test_every_starts_at_in_the_future_is_the_phase() -> None:
    r, due = arm(Recurrence(every_ms=10 * S, starts_at=T0 + 7 * S), T0)
    assert due == T0 + 7 * S
    assert upcoming(r, T0 + 20 * S, 2) == [T0 + 27 * S, T0 + 37 * S]


N_YEAR = YEAR // S + 1  # every-1s occurrences in [T0, T0 + YEAR]


@pytest.mark.parametrize(
    ("missed", "fired", "skipped"),
    [
        ("latest", 1, N_YEAR - 1),
        ("skip", 1, N_YEAR - 1),  # the newest is 0.5 s late: within the grace, it fires
        ("all", 100, N_YEAR - CATCH_UP // S),  # (now - 1 day, now] holds 86,400 occurrences; 100 fire now
    ],
)
def test_every_second_after_a_year_down_counts_exactly(missed: str, fired: int, skipped: int) -> None:
    r, _ = arm(Recurrence(every_ms=S, missed=missed), T0)
    now = T0 + YEAR + 500  # down a year: the first step comes now
    s = do_step(r, T0, now)
    assert len(s.fires) == fired and s.skipped == skipped
    assert s.state is not None and s.state.skipped == skipped and s.state.runs == fired
    if missed != "all":
        assert s.fires[0] == Occurrence(T0 + YEAR, 1, N_YEAR - 1)
        assert s.state.occurrence_ms == T0 + YEAR + S == s.due_ms
    else:
        first = T0 + YEAR - CATCH_UP + S
        assert s.fires == [Occurrence(first + i * S, 1 + i, skipped) for i in range(100)]
        assert s.due_ms == first + 100 * S <= now  # the rest of the window next step, at once
    assert s.missed == (now - GRACE - T0) // S + 1  # occurrences more than the grace old


def test_every_hour_down_a_year_under_skip_fires_nothing_late() -> None:
    r, _ = arm(Recurrence(every_ms=H, missed="skip"), T0)
    s = do_step(r, T0, T0 + YEAR + 30 * MIN)
    assert s.fires == [] and s.skipped == YEAR // H + 1 and s.due_ms == T0 + YEAR + H


def test_every_all_drains_the_window_over_steps_without_loss() -> None:
    d = Driver(Recurrence(every_ms=S, missed="all", catch_up_ms=10 * MIN), limit=50)
    d.due = T0  # created and then down for an hour
    d.at(T0 + H)
    in_window = 10 * MIN // S + 1
    assert len(d.fired) == in_window
    assert [f.at_ms for f in d.fired] == [T0 + H - 10 * MIN + i * S for i in range(in_window)]
    assert d.skipped == H // S + 1 - in_window
    assert d.steps == -(-in_window // 50)


def test_skip_fires_the_newest_within_the_grace_only() -> None:
    d = Driver(Recurrence(every_ms=5 * MIN, missed="skip"))
    d.at(T0 + 50 * MIN + GRACE)  # the newest is exactly grace late: fires
    assert [f.at_ms for f in d.fired] == [T0 + 50 * MIN] and d.skipped == 10
    d = Driver(Recurrence(every_ms=5 * MIN, missed="skip"))
    d.at(T0 + 50 * MIN + GRACE + 1)
    assert d.fired == [] and d.skipped == 11 and d.due == T0 + 55 * MIN


# ---- cron: bounded after long gaps, exact counts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "tz"),
    [
        ("0 2 * * *", "Europe/Paris"),
        ("*/30 * * * *", "America/New_York"),
        ("15 1,2,3 * * *", "America/New_York"),
        ("0 * * * *", "Australia/Lord_Howe"),
        ("30 2 * * 1-5", "Australia/Lord_Howe"),
        ("0 9 L * *", "UTC"),
    ],
)
@pytest.mark.parametrize("missed", ["skip", "latest", "all"])
def test_cron_after_a_year_down_counts_exactly(cron: str, tz: str, missed: str) -> None:
    created = T0 + 7 * H + 13 * S
    now = created + YEAR + 5 * DAY + 123
    expected = nominal(cron, tz, created - 1, now)
    d = Driver(Recurrence(cron=cron, timezone=tz, missed=missed), created, limit=10_000)
    d.due = now  # down all along
    d.at(now)
    if missed == "latest":
        assert [f.at_ms for f in d.fired] == expected[-1:]
    elif missed == "skip":
        assert [f.at_ms for f in d.fired] == [a for a in expected[-1:] if now - a <= GRACE]
    else:
        assert [f.at_ms for f in d.fired] == [a for a in expected if a >= now - CATCH_UP]
    assert d.skipped + len(d.fired) == len(expected)
    assert d.state is not None and d.state.occurrence_ms == nominal(cron, tz, now, now + 40 * DAY)[0]


def test_cron_minutely_after_a_year_down_is_exact() -> None:
    d = Driver(Recurrence(cron="* * * * *", missed="latest"))
    d.due = T0 + YEAR + 30 * S
    d.at(T0 + YEAR + 30 * S)
    assert [f.at_ms for f in d.fired] == [T0 + YEAR]
    assert d.skipped == YEAR // MIN  # 525,600 minutes skipped, counted by days not by iteration
    assert d.missed == YEAR // MIN


def test_cron_on_time_steps_fire_each_occurrence() -> None:
    d = Driver(Recurrence(cron="0 2 * * *", timezone="Europe/Paris"))
    expected = nominal("0 2 * * *", "Europe/Paris", T0, T0 + 400 * DAY)
    for at in expected:
        d.at(at + 250)
    assert [f.at_ms for f in d.fired] == expected and d.skipped == 0


# ---- ends ------------------------------------------------------------------------------------------------------


def test_max_runs_ends_the_schedule_after_the_last_fire() -> None:
    d = Driver(Recurrence(every_ms=MIN, max_runs=3))
    for k in range(6):
        d.at(T0 + k * MIN)
    assert [f.run for f in d.fired] == [1, 2, 3] and d.state is None


def test_max_runs_caps_a_catch_up() -> None:
    d = Driver(Recurrence(every_ms=MIN, max_runs=4, missed="all"))
    d.due = T0 + H
    d.at(T0 + H)
    assert [f.at_ms for f in d.fired] == [T0 + k * MIN for k in range(4)] and d.state is None


def test_ends_at_is_inclusive_and_ends_the_schedule() -> None:
    d = Driver(Recurrence(every_ms=MIN, ends_at=T0 + 2 * MIN))
    d.at(T0 + H)
    assert d.state is None
    d = Driver(Recurrence(every_ms=MIN, ends_at=T0 + 2 * MIN))
    for k in range(5):
        d.at(T0 + k * MIN)
    assert [f.at_ms for f in d.fired] == [T0, T0 + MIN, T0 + 2 * MIN] and d.state is None


def test_ends_at_in_the_past_ends_at_once_without_a_fire() -> None:
    r, due = arm(Recurrence(cron="0 2 * * *", ends_at=T0 - DAY), T0)
    assert due == T0
    s = do_step(r, due, T0)
    assert s.fires == [] and s.state is None


def test_after_ends_at_ends_after_the_done() -> None:
    d = Driver(Recurrence(after_ms=MIN, ends_at=T0 + 90 * S))
    d.at(T0 + MIN)
    assert d.state is not None and d.due == PARKED_MS
    nxt = done(d.state, 7, "job", occurrence_fire_id("job", 7, T0 + MIN), T0 + MIN + 5 * S)
    assert nxt is not None
    d.state, d.due = nxt
    d.at(T0 + 2 * H)
    assert d.state is None and len(d.fired) == 1


# ---- overlap ---------------------------------------------------------------------------------------------------


def _done(d: Driver, at: int, version: int = 1) -> None:
    assert d.state is not None and d.state.running_ms is not None
    out = done(d.state, version, "s", occurrence_fire_id("s", version, d.state.running_ms), at)
    assert out is not None
    d.state, d.due = out


@pytest.mark.parametrize(
    ("overlap", "fired", "skipped"),
    [
        # every minute for 7 minutes; the first run takes 3.5 minutes, the others 10 s
        ("allow", [0, 1, 2, 3, 4, 5, 6, 7], 0),
        ("skip", [0, 4, 5, 6, 7], 3),  # 1, 2, 3 came due while 0 ran
        (
            "buffer_one",
            [0, 1, 4, 5, 6, 7],
            2,
        ),  # 1 buffered, fired late at 3.5; 2, 3 came with the buffer full
    ],
)
def test_overlap_table(overlap: str, fired: list[int], skipped: int) -> None:
    d = Driver(Recurrence(every_ms=MIN, overlap=overlap))
    finish: dict[int, int] = {}
    for t in range(7 * 60 + 1):  # a tick a second
        now = T0 + t * S
        running = d.state.running_ms if d.state else None
        if running is not None and finish[running] <= now:
            _done(d, now)
        for f in d.at(now):
            finish[f.at_ms] = now + (210 * S if f.at_ms == T0 else 10 * S)
    assert [(f.at_ms - T0) // MIN for f in d.fired] == fired
    assert d.skipped == skipped
    late = [f for f in d.fired if f.at_ms == T0 + MIN]
    assert overlap != "buffer_one" or finish[late[0].at_ms] == T0 + 220 * S  # fired at the done, 3.5 min


def test_buffer_one_fires_the_buffered_one_late_and_at_once() -> None:
    d = Driver(Recurrence(every_ms=MIN, overlap="buffer_one"))
    d.at(T0)
    d.at(T0 + MIN)  # 0 still running: 1 is buffered, the schedule parks
    assert d.due == PARKED_MS and d.state is not None and d.state.buffered_ms == T0 + MIN
    d.at(T0 + 10 * MIN)  # nothing while parked
    assert [f.at_ms for f in d.fired] == [T0]
    _done(d, T0 + 10 * MIN + 1)
    assert d.due == T0 + 10 * MIN + 1
    new = d.at(T0 + 10 * MIN + 1)
    assert new == [Occurrence(T0 + MIN, 2, 9)]  # 2..10 came due with the buffer full: skipped
    assert d.state is not None and d.state.running_ms == T0 + MIN and d.due == T0 + 11 * MIN


def test_overlap_skip_under_all_fires_one_per_step() -> None:
    d = Driver(Recurrence(every_ms=MIN, overlap="skip", missed="all"))
    d.due = T0 + 5 * MIN
    d.at(T0 + 5 * MIN)
    assert [f.at_ms for f in d.fired] == [T0] and d.skipped == 5


# ---- after + done ----------------------------------------------------------------------------------------------


def test_after_waits_for_done_and_ignores_stale_and_duplicate_dones() -> None:
    d = Driver(Recurrence(after_ms=15 * MIN))
    assert d.due == T0 + 15 * MIN  # first: after_ms from creation
    d.at(T0 + 15 * MIN)
    assert d.due == PARKED_MS and d.state is not None
    d.at(T0 + 5 * H)
    assert len(d.fired) == 1  # nothing more until done
    r = d.state
    assert done(r, 1, "s", occurrence_fire_id("s", 0, T0 + 15 * MIN), T0 + H) is None  # other version
    assert done(r, 1, "s", occurrence_fire_id("s", 1, T0), T0 + H) is None  # other occurrence
    assert done(r, 1, "s", "garbage", T0 + H) is None
    _done(d, T0 + 5 * H)
    assert d.due == T0 + 5 * H + 15 * MIN
    assert done(d.state, 1, "s", occurrence_fire_id("s", 1, T0 + 15 * MIN), T0 + 6 * H) is None  # duplicate
    d.at(T0 + 5 * H + 15 * MIN)
    assert [f.at_ms for f in d.fired] == [T0 + 15 * MIN, T0 + 5 * H + 15 * MIN]
    assert [f.run for f in d.fired] == [1, 2]


def test_after_starts_at_and_late_under_skip() -> None:
    r, due = arm(Recurrence(after_ms=MIN, starts_at=T0 + H, missed="skip"), T0)
    assert due == T0 + H
    s = do_step(r, due, T0 + 2 * H)  # an hour late: skipped, next one a delay from now
    assert s.fires == [] and s.skipped == 1 and s.due_ms == T0 + 2 * H + MIN
    s = do_step(r, due, T0 + 2 * H) if False else do_step(r, due, T0 + H + GRACE)
    assert [f.at_ms for f in s.fires] == [T0 + H]


# ---- pause / resume --------------------------------------------------------------------------------------------


def test_paused_occurrences_never_fire_and_are_not_skipped() -> None:
    d = Driver(Recurrence(every_ms=MIN))
    for k in range(3):
        d.at(T0 + k * MIN)
    assert d.state is not None
    d.state, d.due = pause(d.state)
    assert d.due == PARKED_MS
    d.at(T0 + H)
    d.state, d.due = resume(d.state, T0 + H + 30 * S)
    assert d.due == T0 + 61 * MIN
    d.at(T0 + 61 * MIN)
    d.at(T0 + 62 * MIN)
    assert [(f.at_ms - T0) // MIN for f in d.fired] == [0, 1, 2, 61, 62]
    assert d.skipped == 0 and d.state is not None and d.state.skipped == 0


def test_resume_of_a_running_schedule_is_a_no_op_and_pause_keeps_counts() -> None:
    d = Driver(Recurrence(cron="*/5 * * * *"))
    d.at(T0)
    assert d.state is not None
    assert resume(d.state, T0 + H) == (d.state, T0 + 5 * MIN)
    paused, due = pause(d.state)
    assert due == PARKED_MS and paused.runs == 1 and paused.paused
    assert do_step(paused, T0, T0 + H).fires == []
    assert upcoming(paused, T0, 3) == []


def test_arm_paused_parks_and_resume_starts_from_now() -> None:
    r, due = arm(Recurrence(cron="0 * * * *", paused=True), T0)
    assert due == PARKED_MS
    r, due = resume(r, T0 + 5 * H + 1)
    assert due == T0 + 6 * H and not r.paused


def test_done_while_paused_releases_nothing() -> None:
    d = Driver(Recurrence(after_ms=MIN))
    d.at(T0 + MIN)
    assert d.state is not None
    d.state, _ = pause(d.state)
    _done(d, T0 + 2 * MIN)
    assert d.due == PARKED_MS
    d.state, d.due = resume(d.state, T0 + H)
    assert d.due == T0 + H + MIN


# ---- backfill / upcoming ---------------------------------------------------------------------------------------


def test_backfill_lists_the_nominal_occurrences_and_refuses_too_many() -> None:
    r, _ = arm(Recurrence(cron="0 2 * * *", timezone="Europe/Paris"), T0)
    got = backfill(r, T0 - 10 * DAY, T0, 100)
    assert got == nominal("0 2 * * *", "Europe/Paris", T0 - 10 * DAY - 1, T0) and len(got) == 10
    with pytest.raises(ValueError, match="holds 365 occurrences, more than the limit of 100"):
        backfill(r, T0 - YEAR, T0, 100)
    with pytest.raises(ValueError, match="before it starts"):
        backfill(r, T0, T0 - 1, 100)
    with pytest.raises(ValueError, match="after schedule"):
        backfill(arm(Recurrence(after_ms=MIN), T0)[0], T0 - H, T0, 100)


def test_backfill_keeps_within_starts_at_and_ends_at_and_the_every_phase() -> None:
    r, _ = arm(Recurrence(every_ms=10 * MIN, starts_at=T0 + 3 * MIN, ends_at=T0 + 43 * MIN), T0)
    assert backfill(r, T0 - H, T0 + H, 100) == [T0 + k * MIN for k in (3, 13, 23, 33, 43)]
    assert backfill(r, T0 + 14 * MIN, T0 + 23 * MIN, 100) == [T0 + 23 * MIN]
    assert backfill(r, T0 + 14 * MIN, T0 + 22 * MIN, 100) == []


def test_upcoming_respects_max_runs_and_ends_at() -> None:
    r, _ = arm(Recurrence(every_ms=MIN, max_runs=3), T0)
    assert upcoming(r, T0 - 1, 10) == [T0, T0 + MIN, T0 + 2 * MIN]
    r, _ = arm(Recurrence(cron="0 * * * *", ends_at=T0 + 2 * H), T0)
    assert upcoming(r, T0, 10) == [T0 + H, T0 + 2 * H]
    assert upcoming(arm(Recurrence(after_ms=MIN), T0)[0], T0, 3) == [T0 + MIN]


# ---- property: fired + skipped = the nominal occurrences ---------------------------------------------------------

SPECS = st.one_of(
    st.builds(lambda e: Recurrence(every_ms=e), st.integers(1000, 10 * H)),
    st.builds(
        lambda c, tz: Recurrence(cron=c, timezone=tz),
        st.sampled_from(
            ["*/7 * * * *", "0 */3 * * *", "30 2 * * *", "0 0 * * 0", "*/20 * * * * *", "5 4 1 * *"]
        ),
        st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe"]),
    ),
)


def _nominal_of(r: Recurrence, created: int, until: int) -> tuple[int, set[int] | None, int]:
    """(how many nominal occurrences in [created, until], the set of them for cron, the first after until)."""
    if r.every_ms is not None:
        e = r.every_ms
        return (
            (until - created) // e + 1 if until >= created else 0,
            None,
            created + ((until - created) // e + 1) * e,
        )
    assert r.cron is not None
    got = nominal(r.cron, r.timezone, created - 1, until)
    return len(got), set(got), nominal(r.cron, r.timezone, until, until + 40 * DAY)[0]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=SPECS,
    missed=st.sampled_from(["skip", "latest", "all"]),
    created=st.integers(T0, T0 + YEAR),
    gaps=st.lists(st.integers(0, DAY), min_size=1, max_size=8),
    limit=st.integers(20, 50),
    catch_up=st.integers(0, H),
)
def test_fired_plus_skipped_is_the_nominal_sequence(
    spec: Recurrence, missed: str, created: int, gaps: list[int], limit: int, catch_up: int
) -> None:
    d = Driver(replace(spec, missed=missed, catch_up_ms=catch_up), created, limit)
    now = created
    for g in gaps:
        now += g
        d.at(now)
    assert d.state is not None
    handled_until = d.state.occurrence_ms - 1  # everything before the armed occurrence was handled
    n, cron_set, following = _nominal_of(spec, created, handled_until)
    fired = [f.at_ms for f in d.fired]
    assert len(set(fired)) == len(fired) and fired == sorted(fired)
    if cron_set is not None:
        assert set(fired) <= cron_set
    else:
        assert spec.every_ms is not None
        assert all(created <= a <= handled_until and (a - created) % spec.every_ms == 0 for a in fired)
    assert len(fired) + d.skipped == n == d.state.runs + d.state.skipped
    assert [f.run for f in d.fired] == list(range(1, len(fired) + 1))
    assert d.state.occurrence_ms == following
