"""`kafka-scheduler consume` as an operator runs it: -b/-X, one-line errors, logging, SIGTERM within its deadline."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.conftest import wait_until
from tests.integration.consumer_helpers import produce

ROOT = Path(__file__).parents[2]
CONSUME = [sys.executable, "-m", "scheduler.cli", "consume"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_SCHEDULER_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _consume(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CONSUME, *args], env=_env(**env), cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def test_an_unreachable_broker_is_one_line_naming_the_address_and_exit_1() -> None:
    started = time.monotonic()
    done = _consume("examples.reservations:app", "-b", "127.0.0.1:1")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and "127.0.0.1:1" in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert time.monotonic() - started < 30


def test_x_reaches_librdkafka_and_a_misspelled_property_is_one_line_exit_2(kafka_bootstrap: str) -> None:
    done = _consume("examples.reservations:app", "-b", kafka_bootstrap, "-X", "sesion.timeout.ms=6000")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        'bad configuration: librdkafka refused the configuration: No such configuration property: "sesion.timeout.ms"'
        " (check ConsumerSettings.kafka/.consumer/.producer, KAFKA_SCHEDULER_KAFKA__*, or -X)"
    ]


def test_a_bad_setting_in_the_environment_is_one_line_exit_2() -> None:
    done = _consume("examples.reservations:app", KAFKA_SCHEDULER_POLL_BATCH="0")
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "poll_batch=0: Input should be greater than or equal to 1" in line


def _hang(
    kafka_bootstrap: str, topic: str, tmp_path: Path, shutdown_s: str, handler_s: str
) -> subprocess.Popen[str]:
    env = _env(
        HANG_GROUP=f"g-{uuid.uuid4().hex[:8]}",
        HANG_TOPIC=topic,
        HANG_MARKER=str(tmp_path / "started"),
        HANG_SHUTDOWN_S=shutdown_s,
        HANG_HANDLER_S=handler_s,
    )
    cmd = [*CONSUME, "tests.integration.consumer_hang_app:app", "-b", kafka_bootstrap]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)


def test_sigterm_with_a_hung_handler_exits_within_the_deadline_non_zero_naming_what_was_abandoned(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = create_topic(unique("hang"), partitions=1)
    produce(kafka_bootstrap, topic, [(b"K-7", b"stuck", 0), (b"K-7", b"queued behind it", 0)])
    proc = _hang(kafka_bootstrap, topic, tmp_path, shutdown_s="3", handler_s="120")
    try:
        wait_until((tmp_path / "started").exists, 60, "the handler started and hung")
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        elapsed = time.monotonic() - sent
        stderr = proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
    assert elapsed <= 3 + 1, f"SIGTERM took {elapsed:.1f}s with shutdown_timeout_s=3\n{stderr}"
    assert code == 1, stderr
    abandoned = [line for line in stderr.splitlines() if "abandoning a record still in its handler" in line]
    assert len(abandoned) == 1, stderr
    assert all(f in abandoned[0] for f in (f"topic={topic}", "partition=0", "offset=0", "key=K-7")), abandoned
    assert f"abandoning 1 queued record(s) from offset 1; they run after a restart topic={topic}" in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: 2 record(s) unfinished at the shutdown deadline"), last


def test_a_hung_handler_within_the_drain_is_timed_out_and_sigterm_exits_0(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = create_topic(unique("hang"), partitions=1)
    produce(kafka_bootstrap, topic, [(b"K-7", b"stuck", 0)])
    proc = _hang(kafka_bootstrap, topic, tmp_path, shutdown_s="8", handler_s="1")
    try:
        wait_until((tmp_path / "started").exists, 60, "the handler started and hung")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        stderr = proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
    assert code == 0, stderr
    assert "past handler_timeout_s=1" in stderr and "abandoning" not in stderr
    lines = stderr.strip().splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 [A-Z]+ ", line) for line in lines), (
        lines
    )
    expected = [  # what an operator needs to see, in order: SIGTERM came while the handler hung
        "INFO consumers.runtime consumer group g-",
        f"INFO consumers.runtime assigned {topic}[0], {topic}.g-",
        "INFO consumers.app SIGTERM: draining",
        "ERROR consumers.processor a handler ran",
        f"ERROR consumers.processor handler failed (attempt 1 of 1), dead-lettered to {topic}.g-",
        "INFO consumers.runtime stopped cleanly",
    ]
    found = [next((i for i, line in enumerate(lines) if e in line), -1) for e in expected]
    assert -1 not in found and found == sorted(found), (expected, lines)
    failure = lines[found[4]]
    assert all(f in failure for f in (f"topic={topic}", "offset=0", "key=K-7", "attempt=1", "HandlerTimeout"))
