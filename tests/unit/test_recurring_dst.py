"""DST with a fake clock (a step each minute across the transition day): a fixed local time in the spring-forward
gap fires once at the first instant after the gap, one repeated at fall-back fires once at its first pass, and
wildcard-hour expressions follow elapsed time (an hourly job stays hourly)."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from scheduler.model import Recurrence
from tests.unit.test_recurring import MIN, Driver


def local(tz: str, *a: int, fold: int = 0) -> int:
    return int(datetime(*a, tzinfo=ZoneInfo(tz), fold=fold).timestamp() * 1000)


def run_day(cron: str, tz: str, day: tuple[int, int, int], missed: str = "latest") -> list[str]:
    """Fires over 24 h of elapsed time from local midnight of `day`, as local ISO times with offsets."""
    start = local(tz, *day)
    d = Driver(Recurrence(cron=cron, timezone=tz, missed=missed), start)
    for minute in range(26 * 60):
        d.at(start + minute * MIN + 1)
    z = ZoneInfo(tz)
    end = datetime.fromtimestamp(start / 1000, z) + timedelta(hours=24)
    out = [datetime.fromtimestamp(f.at_ms / 1000, z) for f in d.fired]
    assert d.skipped == 0 and all(a < b for a, b in pairwise(d.fired))
    return [t.isoformat() for t in out if t.astimezone(z) < end]


@pytest.mark.parametrize(
    ("tz", "day", "cron", "expected"),
    [
        # spring forward: 02:00 -> 03:00 (Paris, New York), 02:00 -> 02:30 (Lord Howe)
        ("Europe/Paris", (2026, 3, 29), "30 2 * * *", ["2026-03-29T03:00:00+02:00"]),
        ("Europe/Paris", (2026, 3, 29), "0,30 2 * * *", ["2026-03-29T03:00:00+02:00"]),  # collapse to one
        ("America/New_York", (2026, 3, 8), "15 2 * * *", ["2026-03-08T03:00:00-04:00"]),
        ("Australia/Lord_Howe", (2026, 10, 4), "15 2 * * *", ["2026-10-04T02:30:00+11:00"]),
        ("Australia/Lord_Howe", (2026, 10, 4), "45 2 * * *", ["2026-10-04T02:45:00+11:00"]),  # after the gap
        # fall back: 03:00 -> 02:00 (Paris), 02:00 -> 01:00 (New York), 02:00 -> 01:30 (Lord Howe)
        ("Europe/Paris", (2026, 10, 25), "30 2 * * *", ["2026-10-25T02:30:00+02:00"]),
        ("America/New_York", (2026, 11, 1), "30 1 * * *", ["2026-11-01T01:30:00-04:00"]),
        ("Australia/Lord_Howe", (2026, 4, 5), "45 1 * * *", ["2026-04-05T01:45:00+11:00"]),
        ("Australia/Lord_Howe", (2026, 4, 5), "15 1 * * *", ["2026-04-05T01:15:00+11:00"]),  # not repeated
    ],
)
def test_fixed_local_times_fire_once(
    tz: str, day: tuple[int, int, int], cron: str, expected: list[str]
) -> None:
    assert run_day(cron, tz, day) == expected


def test_hourly_follows_elapsed_time_in_paris() -> None:
    spring = run_day("0 * * * *", "Europe/Paris", (2026, 3, 29))
    assert len(spring) == 23 and spring[1:3] == ["2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00"]
    autumn = run_day("0 * * * *", "Europe/Paris", (2026, 10, 25))
    assert len(autumn) == 25
    assert autumn[2:4] == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
    ]  # the repeated hour twice


@pytest.mark.parametrize(
    ("tz", "day", "hours"),
    [
        ("America/New_York", (2026, 3, 8), 23),
        ("America/New_York", (2026, 11, 1), 25),
        ("Australia/Lord_Howe", (2026, 10, 4), 23.5),
        ("Australia/Lord_Howe", (2026, 4, 5), 24.5),
    ],
)
def test_every_half_hour_stays_every_half_hour(tz: str, day: tuple[int, int, int], hours: float) -> None:
    fires = run_day("*/30 * * * *", tz, day)
    # the local day lasts `hours` of elapsed time: one fire per 30 elapsed minutes in it
    z = ZoneInfo(tz)
    times = [datetime.fromisoformat(t) for t in fires]
    gaps = {(b - a).total_seconds() for a, b in pairwise(times)}
    assert gaps == {1800.0}
    start = datetime(*day, tzinfo=z)
    next_midnight = (start + timedelta(days=1)).replace(tzinfo=z)
    assert (next_midnight.timestamp() - start.timestamp()) / 3600 == hours
    in_local_day = [t for t in times if t.astimezone(z).date() == start.date()]
    assert len(in_local_day) == int(hours * 2)


def test_missed_policies_across_a_transition_count_exactly() -> None:
    tz = "Europe/Paris"
    start = local(tz, 2026, 10, 24, 12)
    d = Driver(Recurrence(cron="*/30 * * * *", timezone=tz, missed="latest"), start)
    d.due = local(tz, 2026, 10, 25, 12)
    d.at(local(tz, 2026, 10, 25, 12))  # down over the 25-hour night: 12:00 .. 12:00 next day
    assert [f.at_ms for f in d.fired] == [local(tz, 2026, 10, 25, 12)]
    assert d.skipped == 25 * 2  # 51 half hours in 25 elapsed hours, inclusive; one fired
