"""Pure helpers for inspecting schedules: time arguments, list filters, paging, stats, JSON views."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from scheduler import recurring
from scheduler.model import PARKED_MS, Schedule, occurrence_fire_id
from scheduler.ops.state import Pending

__all__ = [
    "ListFilter",
    "Stats",
    "compute_stats",
    "iso",
    "parse_duration_ms",
    "parse_instant_ms",
    "parse_when_ms",
    "recurrence_json",
    "schedule_json",
    "text_or_b64",
]

_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR_MS = 3_600_000
MAX_DURATION_MS = 1000 * 366 * 86_400_000  # far past any horizon, small enough for every datetime sum
MAX_INSTANT_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant a datetime holds
_NOT_AN_INSTANT = (
    "{text!r} is not a time: use RFC 3339 with an offset (2026-01-01T12:00:00Z) or epoch milliseconds"
)
_NOT_A_TIME = _NOT_AN_INSTANT + ", or a time relative to now (1h, +1h, -30m)"
_NOT_A_DURATION = (
    "{text!r} is not a duration: use e.g. 500ms, 90s, 15m, 1h30m, 2d or integer ms, up to 1000 years"
)


def parse_duration_ms(text: str) -> int:
    """`90s`, `15m`, `1h30m`, `2d`, `500ms`, or plain integer milliseconds, up to 1000 years; ValueError otherwise."""
    raw = text.strip()
    if re.fullmatch(r"[0-9]{1,20}", raw):
        total: float = int(raw)
    else:
        pos, total = 0, 0.0
        for match in _DURATION_RE.finditer(raw):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNIT_MS[match.group(2)]
            pos = match.end()
        if pos != len(raw) or not raw:
            raise ValueError(_NOT_A_DURATION.format(text=_short(text)))
    if not total <= MAX_DURATION_MS:  # also inf and nan, from 400-digit numbers
        raise ValueError(_NOT_A_DURATION.format(text=_short(text)))
    return round(total)


def _short(text: str, width: int = 40) -> str:
    """Quote what was given without repeating 400 digits back."""
    return text if len(text) <= width else f"{text[: width - 1]}…"


def parse_when_ms(text: str, now_ms: int) -> int:
    """An instant: RFC 3339 with an offset, epoch milliseconds, or relative to now (`1h`, `+1h`, `-30m`)."""
    raw = text.strip()
    if raw[-1:] in ("s", "m", "h", "d", "w"):  # every duration unit; RFC 3339 ends in a digit or Z
        sign = -1 if raw.startswith("-") else 1
        try:
            return now_ms + sign * parse_duration_ms(raw.lstrip("+-"))
        except ValueError:
            raise ValueError(_NOT_A_TIME.format(text=_short(text))) from None
    return parse_instant_ms(raw, _NOT_A_TIME)


def parse_instant_ms(text: str, forms: str = _NOT_AN_INSTANT) -> int:
    """An absolute instant: RFC 3339 with an offset (Z or +hh:mm), or integer epoch milliseconds up to 9999."""
    raw = text.strip()
    if re.fullmatch(r"-?[0-9]{1,20}", raw) and abs(int(raw)) <= MAX_INSTANT_MS:
        return int(raw)
    try:
        moment = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise ValueError(forms.format(text=_short(text))) from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no offset: add Z or +hh:mm")
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def iso(ms: int) -> str:
    """Epoch ms as RFC 3339 UTC with milliseconds."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def text_or_b64(data: bytes | None) -> str | None:
    """UTF-8 text when it is, else `base64:<...>`: JSON output must stay valid for any payload."""
    if data is None:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode()


@dataclass(frozen=True)
class ListFilter:
    """What `list` and bulk `cancel` select; every bound is optional and they combine with AND."""

    due_before_ms: int | None = None
    due_after_ms: int | None = None
    target: str | None = None
    prefix: str | None = None
    recurring: bool | None = None  # True: recurring schedules only; False: one-time only

    def __call__(self, s: Schedule) -> bool:
        return (
            (self.recurring is None or (s.recurrence is not None) == self.recurring)
            and (self.due_before_ms is None or s.due_ms < self.due_before_ms)
            and (self.due_after_ms is None or s.due_ms >= self.due_after_ms)
            and (self.target is None or s.target_topic == self.target)
            and (self.prefix is None or s.id.startswith(self.prefix))
        )


def ordered(items: Iterable[Pending]) -> list[Pending]:
    """By due time, then id: a stable order, so --offset/--limit pages do not overlap."""
    return sorted(items, key=lambda p: (p.schedule.due_ms, p.schedule.id))


def schedule_json(p: Pending) -> dict[str, Any]:
    s = p.schedule
    return {
        "id": s.id,
        "due_at": iso(s.due_ms),
        "due_ms": s.due_ms,
        "target_topic": s.target_topic,
        "target_key": text_or_b64(s.target_key),
        "target_partition": s.target_partition,
        "value": text_or_b64(s.payload),
        "headers": {name: text_or_b64(value) for name, value in s.headers},
        "created_at": iso(s.created_ms) if s.created_ms else None,
        "producer": s.producer,
        "partition": p.partition,
        "version": p.version,
        **({} if s.recurrence is None else {"recurrence": recurrence_json(s, p.version)}),
    }


UPCOMING = 5  # next occurrences `get` shows


def recurrence_json(s: Schedule, version: int, upcoming: int = UPCOMING) -> dict[str, Any]:
    """A recurring schedule's spec, where it stands, and its next occurrences (none while paused or waiting)."""
    r = s.recurrence
    assert r is not None
    kind = "cron" if r.cron is not None else "every" if r.every_ms is not None else "after"
    parked = s.due_ms >= PARKED_MS
    state = "paused" if r.paused else "waiting_for_done" if parked else "armed"
    nexts = [] if parked else recurring.upcoming(r, r.occurrence_ms - 1, upcoming)
    return {
        "kind": kind,
        "cron": r.cron,
        "every_ms": r.every_ms,
        "after_ms": r.after_ms,
        "timezone": r.timezone,
        "starts_at": iso(r.starts_at) if r.starts_at is not None else None,
        "ends_at": iso(r.ends_at) if r.ends_at is not None else None,
        "max_runs": r.max_runs,
        "missed": r.missed,
        "overlap": r.overlap,
        "state": state,
        "runs": r.runs,
        "skipped": r.skipped,
        "running_occurrence_at": iso(r.running_ms) if r.running_ms is not None else None,
        "buffered_occurrence_at": iso(r.buffered_ms) if r.buffered_ms is not None else None,
        "next_occurrences": [iso(at) for at in nexts],
        "next_fire_id": occurrence_fire_id(s.id, version, r.occurrence_ms) if not parked else None,
    }


@dataclass(frozen=True)
class Stats:
    """Pending per partition, the next due per partition, and how many fall due in each of the next 24 hours."""

    pending: dict[int, int]
    next_due_ms: dict[int, int]
    overdue: int
    per_hour: list[int]  # [0] = due in [now, now+1h)
    later: int
    now_ms: int

    @property
    def total(self) -> int:
        return sum(self.pending.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "now": iso(self.now_ms),
            "total": self.total,
            "overdue": self.overdue,
            "later_than_24h": self.later,
            "partitions": [
                {
                    "partition": p,
                    "pending": n,
                    "next_due": iso(self.next_due_ms[p]) if p in self.next_due_ms else None,
                }
                for p, n in sorted(self.pending.items())
            ],
            "per_hour": [
                {"from": iso(self.now_ms + i * HOUR_MS), "count": n} for i, n in enumerate(self.per_hour)
            ],
        }


def compute_stats(dues: Iterable[tuple[int, int]], partitions: int, now_ms: int) -> Stats:
    """`dues` is (partition, due ms) per pending schedule."""
    pending = dict.fromkeys(range(partitions), 0)
    next_due: dict[int, int] = {}
    per_hour = [0] * 24
    overdue = later = 0
    for partition, due in dues:
        pending[partition] = pending.get(partition, 0) + 1
        if partition not in next_due or due < next_due[partition]:
            next_due[partition] = due
        if due < now_ms:
            overdue += 1
        elif due >= now_ms + 24 * HOUR_MS:
            later += 1
        else:
            per_hour[(due - now_ms) // HOUR_MS] += 1
    return Stats(pending, next_due, overdue, per_hour, later, now_ms)
