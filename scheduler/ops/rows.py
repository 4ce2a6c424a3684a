"""Import rows from CSV or JSONL: id, topic, key, value, at | delay, headers (a JSON object), partition.

Parsing is pure and streaming: one row at a time, a bad row becomes a Refusal with its line number, never an
exception that stops the file: bytes that are not UTF-8, a field too large for the csv module, numbers of 400
digits, JSON nested too deep. A UTF-8 byte order mark (as Excel saves CSV) is skipped.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = [
    "FORMATS",
    "Refusal",
    "Row",
    "count_rows",
    "detect_format",
    "last_lines",
    "parse_csv",
    "parse_jsonl",
    "read_rows",
]

FORMATS = ("csv", "jsonl")
FIELDS = frozenset({"id", "topic", "key", "value", "at", "delay", "headers", "partition"})
# Larger than any payload the client takes (max_payload_bytes, 1 MiB by default), so a big row is refused for
# its size with the client's reason; the csv module's own limit (128 Ki characters) would refuse it unread.
CSV_FIELD_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class Row:
    """One schedule to import; `at` is RFC 3339 or epoch ms, `delay` a duration (relative to import time)."""

    line: int
    id: str
    topic: str
    key: str | None = None
    value: str | None = None
    at: str | None = None
    delay: str | None = None
    headers: dict[str, str | None] = field(default_factory=dict)
    partition: int | None = None


@dataclass(frozen=True)
class Refusal:
    """A row that was not sent: `reason` is the client's exception name (InvalidDeliverAt, ...) or InvalidRow."""

    line: int
    id: str | None
    reason: str
    message: str


def detect_format(path: Path, given: str | None) -> str:
    if given is not None:
        return given
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise ValueError(f"cannot tell the format of {path.name}: name it .csv or .jsonl, or pass --format")


def _text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{name} must be a string or a number, got {type(value).__name__}")
    return _utf8(str(value), name)


def _utf8(text: str, name: str) -> str:
    """The file is read with errors="surrogateescape": a byte that is not UTF-8 shows as a lone surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start].encode("utf-8", "surrogateescape")
        raise ValueError(
            f"{name} is not valid UTF-8 (byte 0x{bad.hex()} at character {exc.start}): save the file as UTF-8"
        ) from None
    return text


def _headers(raw: Any) -> dict[str, str | None]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"headers is not a JSON object: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"headers must be a JSON object of name -> string, got {type(raw).__name__}")
    out: dict[str, str | None] = {}
    for name, value in raw.items():
        if value is not None and not isinstance(value, str):
            raise ValueError(f"header {name!r} must be a string or null, got {type(value).__name__}")
        out[_utf8(str(name), "a header name")] = None if value is None else _utf8(value, f"header {name!r}")
    return out


def _partition(raw: Any) -> int | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise ValueError(f"partition must be an integer, got {raw!r}")
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"partition must be an integer, got {raw!r}") from exc


def to_row(line: int, obj: dict[str, Any], *, empty_is_none: bool) -> Row:
    """A mapping of column -> value to a Row; ValueError says what is wrong."""
    unknown = set(obj) - FIELDS
    if unknown:
        names = [_utf8(str(name), "a column name") for name in sorted(unknown, key=str)]
        raise ValueError(f"unknown column(s) {names}: expected {sorted(FIELDS)}")

    def opt(name: str) -> str | None:
        value = _text(obj.get(name), name)
        return None if empty_is_none and value == "" else value

    sid, topic = opt("id"), opt("topic")
    if not sid:
        raise ValueError("id is missing")
    if not topic:
        raise ValueError("topic is missing")
    value = _text(obj.get("value"), "value")  # "" stays an empty payload; JSON null is a null payload
    return Row(
        line,
        sid,
        topic,
        key=opt("key"),
        value=value,
        at=opt("at"),
        delay=opt("delay"),
        headers=_headers(obj.get("headers")),
        partition=_partition(obj.get("partition")),
    )


def parse_jsonl(lines: IO[str]) -> Iterator[Row | Refusal]:
    for number, text in enumerate(lines, start=1):
        if text.strip():
            yield _jsonl_row(number, text)


def _jsonl_row(number: int, text: str) -> Row | Refusal:
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:  # also ints of more than 4300 digits, nesting too deep
        return Refusal(number, None, "InvalidRow", f"not JSON: {str(exc)[:200]}")
    if not isinstance(obj, dict):
        return Refusal(number, None, "InvalidRow", f"a line must be a JSON object, got {type(obj).__name__}")
    try:
        return to_row(number, obj, empty_is_none=False)
    except ValueError as exc:
        return Refusal(number, _known_id(obj.get("id")), "InvalidRow", str(exc))


def _known_id(value: Any) -> str | None:
    """The row's id if it is readable text (to name the row and to find its last occurrence)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return _utf8(value, "id")
    except ValueError:
        return None


def parse_csv(lines: IO[str]) -> Iterator[Row | Refusal]:
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    reader = csv.DictReader(lines)
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        yield Refusal(1, None, "InvalidRow", f"the header row does not parse ({exc}): no row can be read")
        return
    if fieldnames is None:
        return  # an empty file: nothing to import
    missing = {"id", "topic"} - set(fieldnames)
    if missing:
        yield Refusal(1, None, "InvalidRow", f"the header row lacks {sorted(missing)}: no row can be read")
        return
    yield from _csv_rows(reader)


def _csv_rows(reader: csv.DictReader[str]) -> Iterator[Row | Refusal]:
    while True:
        before = reader.line_num
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # the reader goes on with the next line
            yield Refusal(before + 1, None, "InvalidRow", f"the row does not parse: {exc}")
            continue
        yield _csv_row(reader.line_num, record)


def _csv_row(number: int, record: dict[str | Any, Any]) -> Row | Refusal:
    sid = _known_id(record.get("id"))
    if None in record:
        return Refusal(number, sid, "InvalidRow", "more fields than the header row has")
    try:
        return to_row(number, dict(record), empty_is_none=True)
    except ValueError as exc:
        return Refusal(number, sid, "InvalidRow", str(exc))


def read_rows(path: Path, fmt: str) -> Iterator[Row | Refusal]:
    """Stream the rows of `path`; bytes that are not UTF-8 reach the rows (and refuse them), not the reader."""
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        yield from (parse_csv(handle) if fmt == "csv" else parse_jsonl(handle))


def last_lines(rows: Iterable[Row | Refusal]) -> dict[str, int]:
    """The line of each id's last row: earlier rows of the same id are superseded (the last row wins)."""
    return {row.id: row.line for row in rows if row.id is not None}


def count_rows(path: Path, fmt: str) -> int:
    """Approximate row count for the progress bar: lines (minus the CSV header)."""
    with path.open("rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return max(lines - 1, 0) if fmt == "csv" else lines
