"""Log lines: one per event, JSON on request, extra fields kept, payload fields never printed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from scheduler.logs import RepeatFilter, configure_logging


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


def test_a_repeated_warning_is_logged_once_per_window_then_counted() -> None:
    now = [0.0]
    repeats = RepeatFilter(window_s=30, clock=lambda: now[0])
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(repeats)
    log = logging.getLogger("repeat-test")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.DEBUG)
    try:
        for attempt in range(20):  # a broker down: one line per reconnect, numbers differ
            log.error("Connect to 127.0.0.1:%d failed (after %dms)", 9092, attempt)
        log.info("info lines are never dropped")
        log.info("info lines are never dropped")
        now[0] = 31.0
        log.error("Connect to 127.0.0.1:%d failed (after %dms)", 9092, 7)
        log.warning("something else")
    finally:
        log.removeHandler(handler)
    assert out.getvalue().splitlines() == [
        "Connect to 127.0.0.1:9092 failed (after 0ms)",
        "info lines are never dropped",
        "info lines are never dropped",
        "Connect to 127.0.0.1:9092 failed (after 7ms) (19 more like this in the last 30s)",
        "something else",
    ]


def test_librdkafka_connection_failures_are_warnings_not_errors(stream: io.StringIO) -> None:
    import scheduler.kafka.clients  # noqa: F401 -- installs the filter on the librdkafka logger

    configure_logging(stream=stream)
    rdkafka = logging.getLogger("librdkafka")
    # confluent-kafka logs librdkafka's syslog level 3 as ERROR, with (facility, client, message) as args
    rdkafka.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1", "Connect to x failed: refused")
    rdkafka.log(logging.ERROR, "%s [%s] %s", "TXNERR", "rdkafka#producer-1", "a real error")
    first, second = stream.getvalue().splitlines()
    assert " WARNING librdkafka FAIL [rdkafka#producer-1] Connect to x failed" in first
    assert " ERROR librdkafka TXNERR" in second


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
