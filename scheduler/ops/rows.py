"""Import rows from CSV or JSONL: id, topic, key, value, at | delay, headers (a JSON object), partition.

Parsing is pure and streaming: one row at a time, a bad row becomes a Refusal with its line number, never an
exception that stops the file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = [
    "FORMATS",
    "Refusal",
    "Row",
    "count_rows",
    "detect_format",
    "parse_csv",
    "parse_jsonl",
    "read_rows",
]

FORMATS = ("csv", "jsonl")
FIELDS = frozenset({"id", "topic", "key", "value", "at", "delay", "headers", "partition"})


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
    return str(value)


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
        out[str(name)] = value
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
        raise ValueError(f"unknown column(s) {sorted(unknown)}: expected {sorted(FIELDS)}")

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
    except json.JSONDecodeError as exc:
        return Refusal(number, None, "InvalidRow", f"not JSON: {exc}")
    if not isinstance(obj, dict):
        return Refusal(number, None, "InvalidRow", f"a line must be a JSON object, got {type(obj).__name__}")
    try:
        return to_row(number, obj, empty_is_none=False)
    except ValueError as exc:
        sid = obj.get("id")
        return Refusal(number, sid if isinstance(sid, str) else None, "InvalidRow", str(exc))


def parse_csv(lines: IO[str]) -> Iterator[Row | Refusal]:
    reader = csv.DictReader(lines)
    missing = {"id", "topic"} - set(reader.fieldnames or ())
    if missing:
        yield Refusal(1, None, "InvalidRow", f"the header row lacks {sorted(missing)}: no row can be read")
        return
    for record in reader:
        yield _csv_row(reader.line_num, record)


def _csv_row(number: int, record: dict[str | Any, Any]) -> Row | Refusal:
    if None in record:
        return Refusal(number, record.get("id"), "InvalidRow", "more fields than the header row has")
    try:
        return to_row(number, dict(record), empty_is_none=True)
    except ValueError as exc:
        return Refusal(number, record.get("id") or None, "InvalidRow", str(exc))


def read_rows(path: Path, fmt: str) -> Iterator[Row | Refusal]:
    """Stream the rows of `path` (a file, or `-` for stdin is left to the caller)."""
    with path.open(newline="", encoding="utf-8") as handle:
        yield from (parse_csv(handle) if fmt == "csv" else parse_jsonl(handle))


def count_rows(path: Path, fmt: str) -> int:
    """Approximate row count for the progress bar: lines (minus the CSV header)."""
    with path.open("rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return max(lines - 1, 0) if fmt == "csv" else lines
