"""A recurring schedule's client arguments, checked as far as the client can and turned into a Recurrence.

What needs the scheduler's settings or its cron library (a cron expression's syntax, the minimum interval) is
checked by the scheduler's intake, which rejects with `invalid_recurrence`; the client checks the rest here so a
typo fails at the call, not in a reject record.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypedDict
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scheduler.errors import InvalidRecurrence
from scheduler.model import Missed, Overlap, Recurrence

__all__ = ["Duration", "Instant", "RecurrenceArgs", "instant_ms", "recurrence"]

Duration = timedelta | int  # a timedelta, or milliseconds (like delay=)
Instant = datetime | int  # an aware datetime, or epoch milliseconds (like at=)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_MAX_LONG = 2**63 - 1


class RecurrenceArgs(TypedDict, total=False):
    """schedule_recurring()'s recurrence keywords, the same for the sync and the async client."""

    cron: str | None
    every: Duration | None
    after: Duration | None
    timezone: str
    starts_at: Instant | None
    ends_at: Instant | None
    max_runs: int | None
    missed: Missed | str
    overlap: Overlap | str
    catch_up: Duration | None
    paused: bool


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _duration_ms(value: Duration | None, name: str, *, positive: bool = True) -> int | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        ms = value // _ONE_MS
    elif _int(value):
        ms = value
    else:
        raise InvalidRecurrence(f"{name} must be a timedelta or int milliseconds, got {value!r}")
    least = 1 if positive else 0
    if ms < least:
        raise InvalidRecurrence(f"{name} must be at least {least} ms, got {ms} ms")
    if ms > _MAX_LONG:
        raise InvalidRecurrence(f"{name} of {ms} ms does not fit 64 bits")
    return ms


def instant_ms(value: Instant | None, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidRecurrence(
                f"{name}={value.isoformat()} is naive: pass an aware datetime (tzinfo=UTC)"
            )
        return (value - _EPOCH) // _ONE_MS
    if _int(value) and 0 <= value <= _MAX_LONG:
        return value
    raise InvalidRecurrence(f"{name} must be an aware datetime or int epoch milliseconds >= 0, got {value!r}")


def _word(value: object, name: str, words: type[Missed] | type[Overlap]) -> str:
    if isinstance(value, str) and value in tuple(words):
        return str(value)
    raise InvalidRecurrence(f"{name} must be one of {', '.join(words)}, got {value!r}")


def _zone(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRecurrence(f"timezone must be an IANA zone name such as 'Europe/Paris', got {value!r}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRecurrence(
            f"timezone {value!r} is not an IANA zone name (tzdata has none of that name)"
        ) from None
    return value


def _kind(args: RecurrenceArgs) -> tuple[str | None, int | None, int | None]:
    given = [name for name in ("cron", "every", "after") if args.get(name) is not None]
    if len(given) != 1:
        raise InvalidRecurrence(
            f"give exactly one of cron= (an expression), every= (fixed rate) and after= (fixed delay after "
            f"the previous run is done); got {', '.join(given) or 'none'}"
        )
    cron = args.get("cron")
    if cron is not None and (not isinstance(cron, str) or not cron.strip()):
        raise InvalidRecurrence(f"cron must be a non-empty str such as '0 2 * * *', got {cron!r}")
    return cron, _duration_ms(args.get("every"), "every"), _duration_ms(args.get("after"), "after")


def recurrence(args: RecurrenceArgs) -> Recurrence:
    """The Recurrence of a command (its state fields zero: the scheduler arms it); InvalidRecurrence if wrong."""
    cron, every_ms, after_ms = _kind(args)
    starts_at = instant_ms(args.get("starts_at"), "starts_at")
    ends_at = instant_ms(args.get("ends_at"), "ends_at")
    if starts_at is not None and ends_at is not None and ends_at < starts_at:
        raise InvalidRecurrence(f"ends_at {ends_at} is before starts_at {starts_at}: nothing would ever fire")
    max_runs = args.get("max_runs")
    if max_runs is not None and (not _int(max_runs) or not 1 <= max_runs <= _MAX_LONG):
        raise InvalidRecurrence(f"max_runs must be an int >= 1 or None, got {max_runs!r}")
    overlap = _word(args.get("overlap", Overlap.ALLOW), "overlap", Overlap)
    if after_ms is not None and overlap != Overlap.ALLOW:
        raise InvalidRecurrence("overlap is for cron= and every=: an after= schedule never overlaps itself")
    paused = args.get("paused", False)
    if not isinstance(paused, bool):
        raise InvalidRecurrence(f"paused must be a bool, got {paused!r}")
    return Recurrence(
        cron=cron,
        every_ms=every_ms,
        after_ms=after_ms,
        timezone=_zone(args.get("timezone", "UTC")),
        starts_at=starts_at,
        ends_at=ends_at,
        max_runs=max_runs,
        missed=_word(args.get("missed", Missed.LATEST), "missed", Missed),
        overlap=overlap,
        catch_up_ms=_duration_ms(args.get("catch_up"), "catch_up", positive=False),
        paused=paused,
    )
