"""The header protocol's values: integers and times, and the headers of recurring and control commands.

`scheduler.codec` owns the protocol (which record is which command); this module reads and writes the values.
Only syntax is checked here: whether a cron expression parses, a zone exists or an interval is long enough is
the scheduler's intake's question (`scheduler.recurring.validate`), asked with its settings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

from scheduler.model import (
    HEADER_AFTER_MS,
    HEADER_BACKFILL_FROM,
    HEADER_BACKFILL_TO,
    HEADER_CONTROL,
    HEADER_CRON,
    HEADER_DELAY_MS,
    HEADER_DELIVER_AT,
    HEADER_ENDS_AT,
    HEADER_EPOCH,
    HEADER_EVERY_MS,
    HEADER_FIRE_ID,
    HEADER_MAX_RUNS,
    HEADER_MISSED,
    HEADER_OVERLAP,
    HEADER_STARTS_AT,
    HEADER_TARGET_TOPIC,
    HEADER_TIMEZONE,
    Backfill,
    Control,
    Done,
    Missed,
    Overlap,
    Pause,
    Recurrence,
    RejectReason,
    Resume,
)

__all__ = [
    "DUE_HEADERS",
    "KIND_HEADERS",
    "RECURRENCE_HEADERS",
    "Refused",
    "control_command",
    "integer",
    "recurrence",
    "recurrence_headers",
    "recurring_due",
    "single",
    "time_ms",
]

ByName = dict[str, list[bytes | None]]  # control headers by name, every value given

DUE_HEADERS = (HEADER_DELIVER_AT, HEADER_DELAY_MS, HEADER_EPOCH)
KIND_HEADERS = (HEADER_CRON, HEADER_EVERY_MS, HEADER_AFTER_MS)
_OPTION_HEADERS = (
    HEADER_TIMEZONE,
    HEADER_STARTS_AT,
    HEADER_ENDS_AT,
    HEADER_MAX_RUNS,
    HEADER_MISSED,
    HEADER_OVERLAP,
)
# Every header of a recurring schedule or a control command: none is ever passed through to a fired record.
RECURRENCE_HEADERS = (
    *KIND_HEADERS,
    *_OPTION_HEADERS,
    HEADER_CONTROL,
    HEADER_BACKFILL_FROM,
    HEADER_BACKFILL_TO,
)
_CONTROL_WORDS = ("pause", "resume", "done", "backfill")
_INT_RE = re.compile(r"-?[0-9]{1,19}")
_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_I64 = 2**63


class Refused(Exception):
    """Internal short-cut from a parser to a Rejected with this reason."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def single(
    control: ByName, name: str, reason: RejectReason = RejectReason.INVALID_TARGET_TOPIC
) -> bytes | None:
    values = control.get(name, [])
    if len(values) > 1:
        raise Refused(reason, f"header {name} given {len(values)} times")
    return values[0] if values else None


def _ascii(raw: bytes | None) -> str:
    return raw.decode("ascii", errors="replace") if raw is not None else ""


def integer(raw: bytes | None, name: str, reason: RejectReason = RejectReason.INVALID_DUE) -> int:
    text = _ascii(raw)
    if not _INT_RE.fullmatch(text):
        raise Refused(reason, f"{name} must be an integer, got {text!r}")
    return int(text)


def time_ms(raw: bytes | None, name: str, reason: RejectReason = RejectReason.INVALID_DUE) -> int:
    """Epoch milliseconds, or RFC 3339 with an offset (Z or +hh:mm)."""
    text = _ascii(raw)
    if _INT_RE.fullmatch(text):
        return integer(raw, name, reason)
    match = _RFC3339_RE.fullmatch(text)
    if match is None:
        raise Refused(reason, f"{name} {text!r} is neither epoch ms nor RFC 3339")
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = match.groups()
    if zulu is None and sign is None:
        raise Refused(reason, f"{name} {text!r} has no offset: add Z or +hh:mm")
    offset = timedelta(hours=int(off_h or 0), minutes=int(off_m or 0)) * (-1 if sign == "-" else 1)
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=timezone(offset)
        )
    except ValueError as exc:
        raise Refused(reason, f"{name} {text!r}: {exc}") from exc
    millis = int((frac or "0")[:3].ljust(3, "0"))
    return (moment - _EPOCH) // _ONE_MS + millis


_BAD = RejectReason.INVALID_RECURRENCE


def _text(raw: bytes | None, name: str) -> str:
    try:
        text = raw.decode() if raw is not None else ""
    except UnicodeDecodeError:
        raise Refused(_BAD, f"{name} is not UTF-8") from None
    if not text.strip():
        raise Refused(_BAD, f"{name} is empty")
    return text


def _word(control: ByName, name: str, words: tuple[str, ...], default: str) -> str:
    raw = single(control, name, _BAD)
    if raw is None:
        return default
    text = _ascii(raw)
    if text not in words:
        raise Refused(_BAD, f"{name} {text!r} is not one of {' | '.join(words)}")
    return text


def _long(value: int, name: str) -> int:
    if not -_I64 <= value < _I64:
        raise Refused(_BAD, f"{name} {value} does not fit 64 bits")
    return value


def _opt(control: ByName, name: str, read: type[int] | None = None) -> int | None:
    raw = single(control, name, _BAD)
    if raw is None:
        return None
    return _long(integer(raw, name, _BAD) if read is int else time_ms(raw, name, _BAD), name)


def recurrence(control: ByName) -> Recurrence | None:
    """The recurrence the headers describe (None: no kind header, and then no option header either)."""
    _no_backfill_range(control, None)
    kinds = [name for name in KIND_HEADERS for _ in control.get(name, ())]
    if not kinds:
        stray = [name for name in _OPTION_HEADERS if name in control]
        if stray:
            raise Refused(_BAD, f"{', '.join(stray)} without one of {', '.join(KIND_HEADERS)}")
        return None
    if len(kinds) != 1:
        raise Refused(_BAD, f"exactly one of {', '.join(KIND_HEADERS)} is needed; got {', '.join(kinds)}")
    kind = kinds[0]
    raw = control[kind][0]
    cron = _text(raw, kind) if kind == HEADER_CRON else None
    interval = None if cron is not None else _long(integer(raw, kind, _BAD), kind)
    tz = single(control, HEADER_TIMEZONE, _BAD)
    return Recurrence(
        cron=cron,
        every_ms=interval if kind == HEADER_EVERY_MS else None,
        after_ms=interval if kind == HEADER_AFTER_MS else None,
        timezone="UTC" if tz is None else _text(tz, HEADER_TIMEZONE),
        starts_at=_opt(control, HEADER_STARTS_AT),
        ends_at=_opt(control, HEADER_ENDS_AT),
        max_runs=_opt(control, HEADER_MAX_RUNS, int),
        missed=_word(control, HEADER_MISSED, tuple(Missed), Missed.LATEST.value),
        overlap=_word(control, HEADER_OVERLAP, tuple(Overlap), Overlap.ALLOW.value),
    )


def recurring_due(control: ByName, ts: int) -> int:
    """A recurring schedule's command is due at its record time: the scheduler arms the first occurrence."""
    given = [name for name in DUE_HEADERS if name in control]
    if given:
        raise Refused(
            RejectReason.INVALID_DUE,
            f"{', '.join(given)} with {' / '.join(KIND_HEADERS)}: a recurring schedule has no due header "
            f"(use {HEADER_STARTS_AT} for its first occurrence)",
        )
    return ts


def control_command(
    sid: str, control: ByName, headers: Sequence[tuple[str, bytes | None]], ts: int
) -> Control:
    """The pause, resume, done or backfill `scheduler-control` (in `control`) asks for; the record's value is
    ignored, a done's fire id is its scheduler-fire-id header and its finished time the record's."""
    clash = [name for name in (HEADER_TARGET_TOPIC, *DUE_HEADERS, *KIND_HEADERS) if name in control]
    if clash:
        raise Refused(_BAD, f"{HEADER_CONTROL} with {', '.join(clash)}: a control command schedules nothing")
    raw = single(control, HEADER_CONTROL, _BAD)
    word = _ascii(raw).strip().lower()
    _no_backfill_range(control, word)
    if word not in _CONTROL_WORDS:
        raise Refused(_BAD, f"{HEADER_CONTROL} {_ascii(raw)!r} is not one of {' | '.join(_CONTROL_WORDS)}")
    if word == "pause":
        return Pause(sid)
    if word == "resume":
        return Resume(sid)
    if word == "done":
        fire_ids = [value for name, value in headers if name == HEADER_FIRE_ID]
        if len(fire_ids) != 1:
            raise Refused(
                _BAD,
                f"{HEADER_CONTROL}: done needs one {HEADER_FIRE_ID} (the occurrence's), got {len(fire_ids)}",
            )
        return Done(sid, _text(fire_ids[0], HEADER_FIRE_ID), ts)
    ends = [_opt(control, name) for name in (HEADER_BACKFILL_FROM, HEADER_BACKFILL_TO)]
    if ends[0] is None or ends[1] is None:
        raise Refused(
            _BAD, f"{HEADER_CONTROL}: backfill needs {HEADER_BACKFILL_FROM} and {HEADER_BACKFILL_TO}"
        )
    if ends[1] < ends[0]:
        raise Refused(_BAD, f"{HEADER_BACKFILL_TO} {ends[1]} is before {HEADER_BACKFILL_FROM} {ends[0]}")
    return Backfill(sid, ends[0], ends[1])


def _no_backfill_range(control: ByName, word: str | None) -> None:
    backfill_range = [name for name in (HEADER_BACKFILL_FROM, HEADER_BACKFILL_TO) if name in control]
    if word != "backfill" and backfill_range:
        raise Refused(_BAD, f"{', '.join(backfill_range)} only with {HEADER_CONTROL}: backfill")


def recurrence_headers(r: Recurrence) -> list[tuple[str, bytes | None]]:
    """What a header-protocol client sends for `r` (only what differs from the defaults); ValueError for what
    the headers cannot say (paused, catch_up_ms, or a state record's progress)."""
    if r.paused or r.catch_up_ms is not None or (r.occurrence_ms, r.runs, r.skipped) != (0, 0, 0):
        raise ValueError("paused, catch_up_ms and a state's progress have no header: use the Avro envelope")
    if r.running_ms is not None or r.buffered_ms is not None:
        raise ValueError("a state's running or buffered occurrence has no header: use the Avro envelope")
    kinds = [
        (n, v) for n, v in zip(KIND_HEADERS, (r.cron, r.every_ms, r.after_ms), strict=True) if v is not None
    ]
    if len(kinds) != 1:
        raise ValueError(f"a recurrence has exactly one of cron, every_ms, after_ms; got {len(kinds)}")
    values: list[tuple[str, object]] = [
        kinds[0],
        (HEADER_TIMEZONE, None if r.timezone == "UTC" else r.timezone),
        (HEADER_STARTS_AT, r.starts_at),
        (HEADER_ENDS_AT, r.ends_at),
        (HEADER_MAX_RUNS, r.max_runs),
        (HEADER_MISSED, None if r.missed == Missed.LATEST else r.missed),
        (HEADER_OVERLAP, None if r.overlap == Overlap.ALLOW else r.overlap),
    ]
    return [(name, str(value).encode()) for name, value in values if value is not None]
