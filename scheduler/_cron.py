"""Cron occurrence maths over cronsim and zoneinfo, in epoch milliseconds: next, previous, count, cached.

cronsim is the definition: an occurrence is what iterating cronsim forward yields (Debian cron's DST rules for
5-field expressions with a fixed minute and hour; elapsed time for the others), with one guard: an instant it
yields at or before the one asked about is passed over (a start inside a repeated fall-back hour hands cronsim
a naive wall time, which maps to the first pass). Nothing here iterates over a long gap:
- `next_after` is one cronsim step, memoised per (expression, zone, instant) in a bounded LRU: a million
  schedules on "0 2 * * *" compute each night's successor once.
- `prev_at_or_before` asks cronsim's reverse mode for a candidate, then checks it against the forward sequence
  (the two can disagree at a DST transition) with a few forward steps.
- `count` counts by local day: a day with one UTC offset from midnight to midnight holds the expression's
  seconds-of-day on it exactly (a bisect in the sorted list); a day with a transition, and the partial ends of
  the range, are counted by iterating cronsim (bounded by that day's occurrences).
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import pairwise
from zoneinfo import ZoneInfo

from cronsim import CronSim

__all__ = ["ALIASES", "count", "expression", "min_gap_s", "next_after", "parsed", "prev_at_or_before", "zone"]

# cronsim takes none of these; the usual meanings (crontab(5)). @reboot has no time and is refused.
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_DAY_MS = 86_400_000
_REFERENCE = datetime(2000, 1, 1, tzinfo=UTC)
_ITERATE_FIRST = 64  # a count this small is cheaper by iteration than by days


@lru_cache(maxsize=4096)
def expression(cron: str) -> str:
    """The expression cronsim is given: an alias resolved, whitespace normalised (ValueError if unknown alias)."""
    text = " ".join(cron.split())
    if text.startswith("@"):
        try:
            return ALIASES[text.lower()]
        except KeyError:
            known = ", ".join(ALIASES)
            raise ValueError(f"unknown cron alias {text!r} (known: {known})") from None
    return text


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=1024)
def parsed(expr: str) -> CronSim:
    """The parsed expression (its field sets and day matcher); raises CronSimError on a bad one."""
    return CronSim(expr, _REFERENCE)


@lru_cache(maxsize=64)
def _seconds_of_day(expr: str) -> list[int]:
    p = parsed(expr)
    return sorted(h * 3600 + m * 60 + s for h in p.hours for m in p.minutes for s in p.seconds)


def _forward(expr: str, tz: ZoneInfo, after_ms: int) -> CronSim:
    return CronSim(expr, datetime.fromtimestamp(after_ms // 1000, tz))


def _next_uncached(expr: str, tz: ZoneInfo, after_ms: int) -> int | None:
    it = _forward(expr, tz, after_ms)
    for dt in it:
        at = int(dt.timestamp()) * 1000
        if at > after_ms:
            return at
    return None  # cronsim found nothing in 50 years


@lru_cache(maxsize=65_536)
def next_after(cron: str, tz: str, after_ms: int) -> int | None:
    """The first occurrence strictly after `after_ms`, None if there is none (within cronsim's 50 years)."""
    return _next_uncached(expression(cron), zone(tz), after_ms)


def prev_at_or_before(cron: str, tz: str, at_ms: int, floor_ms: int) -> int | None:
    """The newest occurrence in [floor_ms, at_ms] of the forward sequence, None if there is none."""
    expr, z = expression(cron), zone(tz)
    probe = at_ms
    while probe >= floor_ms:
        back = CronSim(expr, datetime.fromtimestamp(probe // 1000 + 1, z), reverse=True)
        try:
            candidate = max(int(next(back).timestamp()) * 1000, floor_ms)
        except StopIteration:
            candidate = floor_ms
        newest = None
        cursor = min(candidate, probe) - 1
        while (nxt := next_after(cron, tz, cursor)) is not None and nxt <= at_ms:
            newest = cursor = nxt
        if newest is not None:
            return newest
        if candidate <= floor_ms:
            return None
        probe = candidate - 1000  # not in the forward sequence (a DST quirk of reverse mode): look earlier
    return None


def count(cron: str, tz: str, lo_ms: int, hi_ms: int) -> int:
    """How many occurrences lie in (lo_ms, hi_ms]."""
    if hi_ms <= lo_ms:
        return 0
    n, cursor = 0, lo_ms
    for _ in range(_ITERATE_FIRST):
        nxt = next_after(cron, tz, cursor)
        if nxt is None or nxt > hi_ms:
            return n
        n, cursor = n + 1, nxt
    return n + _count_by_days(expression(cron), zone(tz), cursor, hi_ms)


def _midnight_ms(d: date, tz: ZoneInfo) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=tz).timestamp() * 1000)


def _count_by_days(expr: str, tz: ZoneInfo, lo_ms: int, hi_ms: int) -> int:
    p = parsed(expr)
    sods = _seconds_of_day(expr)
    day = datetime.fromtimestamp(lo_ms // 1000, tz).date()
    start = _midnight_ms(day, tz)
    if start > lo_ms:  # an ambiguous midnight: begin a day earlier
        day -= timedelta(days=1)
        start = _midnight_ms(day, tz)
    total = 0
    while start <= hi_ms:
        following = day + timedelta(days=1)
        end = _midnight_ms(following, tz)
        lo, hi = max(lo_ms, start - 1), min(hi_ms, end - 1)
        if lo < hi:
            steady = end - start == _DAY_MS and _offset(start, tz) == _offset(end - 1, tz)
            if not steady:
                total += _count_by_iteration(expr, tz, lo, hi)
            elif day.month in p.months and p.match_day(day):
                total += bisect_right(sods, (hi - start) // 1000) - bisect_right(sods, (lo - start) // 1000)
        day, start = following, end
    return total


def _offset(ms: int, tz: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(ms // 1000, tz).utcoffset()


def _count_by_iteration(expr: str, tz: ZoneInfo, lo_ms: int, hi_ms: int) -> int:
    n = 0
    for dt in _forward(expr, tz, lo_ms):
        at = int(dt.timestamp()) * 1000
        if at <= lo_ms:
            continue
        if at > hi_ms:
            break
        n += 1
    return n


def min_gap_s(expr: str) -> int:
    """The shortest wall-clock gap between two occurrences, in seconds (assuming consecutive days can match).

    Within a minute: neighbouring seconds; across minutes, hours and days: the last time of one unit to the first
    of the next matching one. A DST transition can shorten one elapsed gap of a fixed-time expression; that is
    left out (it happens twice a year and never below the expression's own granularity).
    """
    p = parsed(expr)
    secs, mins, hours = sorted(p.seconds), sorted(p.minutes), sorted(p.hours)
    gaps = [86_400 - ((hours[-1] - hours[0]) * 3600 + (mins[-1] - mins[0]) * 60 + secs[-1] - secs[0])]
    gaps += [b - a for a, b in pairwise(secs)]
    span_s = secs[-1] - secs[0]
    gaps += [(b - a) * 60 - span_s for a, b in pairwise(mins)]
    span_m = (mins[-1] - mins[0]) * 60 + span_s
    gaps += [(b - a) * 3600 - span_m for a, b in pairwise(hours)]
    return min(gaps)
