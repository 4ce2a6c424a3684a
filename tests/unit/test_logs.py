"""Log lines: one per event, JSON on request, extra fields kept, payload fields never printed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from scheduler.logs import configure_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    out = io.StringIO()
    yield out
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def test_json_lines_carry_extra_fields(stream: io.StringIO) -> None:
    configure_logging(json=True, level="debug", stream=stream)
    logging.getLogger("scheduler.test").info("fired %d", 3, extra={"partition": 2, "payload": b"secret"})
    (line,) = stream.getvalue().splitlines()
    doc = json.loads(line)
    assert doc["level"] == "INFO"
    assert doc["logger"] == "scheduler.test"
    assert doc["msg"] == "fired 3"
    assert doc["partition"] == 2
    assert doc["payload"] == "<redacted>"
    assert "secret" not in line
    assert doc["ts"].endswith("+00:00")


def test_exceptions_stay_on_one_line(stream: io.StringIO) -> None:
    for as_json in (True, False):
        configure_logging(json=as_json, stream=stream)
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            logging.getLogger("x").exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "ValueError" in json.loads(lines[0])["exc"]
    assert "ValueError" in lines[1]


def test_configure_twice_installs_one_handler(stream: io.StringIO) -> None:
    configure_logging(stream=stream)
    configure_logging(stream=stream, level="WARNING")
    logging.getLogger("y").warning("once", extra={"topic": "t"})
    logging.getLogger("y").info("filtered")
    (line,) = stream.getvalue().splitlines()
    assert line.endswith("WARNING y once topic=t")


def test_every_command_logs_in_our_format_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`kafka-scheduler <any command>` reads KAFKA_SCHEDULER_LOG_JSON/_LOG_LEVEL; librdkafka's lines go there."""
    from scheduler.logs import LIBRDKAFKA_LOG, configure_logging_from_env

    monkeypatch.setenv("KAFKA_SCHEDULER_LOG_JSON", "true")
    monkeypatch.setenv("KAFKA_SCHEDULER_LOG_LEVEL", "nonsense")
    configure_logging_from_env()
    root = logging.getLogger()
    try:
        assert root.level == logging.WARNING  # an unknown level falls back to the default, not a traceback
        stream = io.StringIO()
        (handler,) = [h for h in root.handlers if h.get_name() == "kafka-scheduler"]
        handler.setStream(stream)  # type: ignore[attr-defined]
        LIBRDKAFKA_LOG["logger"].error("FAIL [thrd:x]: Connect failed")
        assert json.loads(stream.getvalue())["logger"] == "librdkafka"
    finally:
        configure_logging()
