"""Logging setup for the services: one line per event, JSON lines on request; never message payloads."""

from __future__ import annotations

import json as jsonlib
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = [
    "LIBRDKAFKA_LOG",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "configure_logging_from_env",
]

# Every Kafka client the project builds takes these: librdkafka's own lines go through Python logging (the logger
# "librdkafka", one line or JSON like ours) instead of raw `%N|...` lines on stderr; warnings and up by default
# (a user's `log_level` setting still wins).
LIBRDKAFKA_LOG: dict[str, Any] = {"log_level": 4, "logger": logging.getLogger("librdkafka")}

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
# Extra fields that would carry user data; logged as a marker, never the bytes.
_REDACTED = frozenset({"payload", "value", "headers", "key_bytes"})
_HANDLER_NAME = "kafka-scheduler"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    for name, value in vars(record).items():
        if name in _STANDARD or name.startswith("_"):
            continue
        extras[name] = "<redacted>" if name in _REDACTED else value
    return extras


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def _exception(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    if record.exc_info:
        return formatter.formatException(record.exc_info)
    return record.exc_text or None


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "msg", ...extra, "exc"?} on one line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc |= _extras(record)
        exc = _exception(self, record)
        if exc:
            doc["exc"] = exc
        return jsonlib.dumps(doc, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`ts LEVEL logger msg k=v ...` on one line; newlines in messages and tracebacks are escaped."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, record.name, record.getMessage()]
        parts += [f"{k}={v}" for k, v in _extras(record).items()]
        exc = _exception(self, record)
        if exc:
            parts.append(f"exc={exc!r}")
        return " ".join(parts).replace("\n", "\\n")


def configure_logging_from_env(default_level: str = "WARNING") -> None:
    """For every `kafka-scheduler` command: KAFKA_SCHEDULER_LOG_JSON and _LOG_LEVEL, as `run` reads them."""
    json = os.environ.get("KAFKA_SCHEDULER_LOG_JSON", "").strip().lower() in ("1", "true", "yes", "on")
    level = os.environ.get("KAFKA_SCHEDULER_LOG_LEVEL", "").strip() or default_level
    configure_logging(
        json=json, level=level if level.upper() in logging.getLevelNamesMapping() else default_level
    )


def configure_logging(json: bool = False, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Install one root handler (idempotent: a second call replaces the first's handler)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
