"""`kafka-scheduler consume` as an operator runs it: -b/-X, one-line errors, logging, SIGTERM within its deadline."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

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
