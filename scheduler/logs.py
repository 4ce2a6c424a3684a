"""Logging setup for the services: one line per event, JSON lines on request; never message payloads."""

from __future__ import annotations

import json as jsonlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = [
    "LIBRDKAFKA_LOG",
    "JsonFormatter",
    "RepeatFilter",
    "TextFormatter",
    "configure_logging",
    "configure_logging_from_env",
]

# Every Kafka client the project builds takes these: librdkafka's own lines go through Python logging (the logger
# "librdkafka", one line or JSON like ours) instead of raw `%N|...` lines on stderr; warnings and up by default
# (a user's `log_level` setting still wins).
# librdkafka logs a broker connection that fails or drops (FAIL, and ERROR events nobody handles) at ERR, once per
# reconnect attempt. It retries by itself, and what it costs shows where it matters (/readyz, a one-line error of
# a command): a warning, rate-limited by the handler's RepeatFilter.
_RETRIED_BY_LIBRDKAFKA = frozenset({"FAIL", "ERROR"})


class _Demote(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args and args[0] in _RETRIED_BY_LIBRDKAFKA and record.levelno > 30:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_LIBRDKAFKA_LOGGER = logging.getLogger("librdkafka")
_LIBRDKAFKA_LOGGER.addFilter(_Demote())
LIBRDKAFKA_LOG: dict[str, Any] = {"log_level": 4, "logger": _LIBRDKAFKA_LOGGER}

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
# Extra fields that would carry user data; logged as a marker, never the bytes.
_REDACTED = frozenset({"payload", "value", "headers", "key_bytes"})
_HANDLER_NAME = "kafka-scheduler"
REPEAT_WINDOW_S = 30.0
_DIGITS = re.compile(r"[0-9]+")


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


class RepeatFilter(logging.Filter):
    """A warning or error repeated within `window_s` is logged once, the next one says how many were dropped.

    "Repeated" ignores numbers (a broker down gives a line per reconnect attempt, "after 0ms", "after 3ms", ...):
    an outage shows in the log as a few lines every `window_s`, not twenty a second.
    """

    def __init__(
        self, window_s: float = REPEAT_WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._window, self._clock = window_s, clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int, str], list[float | int]] = {}  # key -> [first logged at, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, _DIGITS.sub("#", record.getMessage()))
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self._window:
                seen[1] += 1
                return False
            dropped = int(seen[1]) if seen is not None else 0
            if len(self._seen) > 1000:
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self._window}
            self._seen[key] = [now, 0]
        if dropped:
            record.msg = f"{record.getMessage()} ({dropped} more like this in the last {self._window:.0f}s)"
            record.args = ()
        return True


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
    handler.addFilter(RepeatFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
