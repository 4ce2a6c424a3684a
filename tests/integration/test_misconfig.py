"""The misconfiguration matrix (F14): each unsafe state topic is refused at start with exit code 3 and the fix.

`kafka-scheduler run` must exit 3 before it joins the group, naming the fix on stderr; `kafka-scheduler topics
verify` must exit 3 with the same messages.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from scheduler.topics import LOG_CONFIG, STATE_CONFIG
from tests.conftest import wait_until

WEEK = str(7 * 24 * 3600 * 1000)

# case -> (state topic config, state partitions or None for "missing", words the message must contain)
CASES: dict[str, tuple[dict[str, str], int | None, list[str]]] = {
    "delete": (
        {**STATE_CONFIG, "cleanup.policy": "delete"},
        3,
        ["cleanup.policy=delete", "--add-config cleanup.policy=compact"],
    ),
    "compact_delete": (
        {**STATE_CONFIG, "cleanup.policy": "compact,delete"},
        3,
        ["cleanup.policy=compact,delete", "--add-config cleanup.policy=compact"],
    ),
    "short_delete_retention": (
        {**STATE_CONFIG, "delete.retention.ms": "60000"},
        3,
        ["delete.retention.ms=60000", "set delete.retention.ms to at least", WEEK],
    ),
    "partition_mismatch": (dict(STATE_CONFIG), 2, ["has 2 partitions but", "recreate", "with 3 partitions"]),
    "state_missing": ({}, None, ["topic does not exist", "kafka-scheduler topics create"]),
}


def _make_topics(
    bootstrap: str, scheduled: str, state_config: dict[str, str], state_parts: int | None
) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [
        NewTopic(scheduled, 3, 1, config=dict(LOG_CONFIG)),
        NewTopic(f"{scheduled}.rejected", 3, 1, config=dict(LOG_CONFIG)),
        NewTopic(f"{scheduled}.dlt", 3, 1, config=dict(LOG_CONFIG)),
    ]
    if state_parts is not None:
        topics.append(NewTopic(f"{scheduled}.state", state_parts, 1, config=state_config))
    for future in admin.create_topics(topics).values():
        future.result(timeout=30)
    names = {t.topic for t in topics}
    wait_until(lambda: names <= set(admin.list_topics(timeout=5).topics), 30, "topics visible")


def _cli(bootstrap: str, scheduled: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAFKA_SCHEDULER_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_SCHEDULER_SCHEDULED_TOPIC": scheduled,
        "KAFKA_SCHEDULER_HTTP_PORT": "0",
        "KAFKA_SCHEDULER_HTTP_HOST": "127.0.0.1",
        "KAFKA_SCHEDULER_GROUP_ID": f"{scheduled}-group",
    }
    return subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_unsafe_state_topic_is_refused(kafka_bootstrap: str, unique: Callable[[str], str], case: str) -> None:
    config, parts, words = CASES[case]
    scheduled = unique(f"misconf-{case.replace('_', '-')}")
    _make_topics(kafka_bootstrap, scheduled, config, parts)

    run = _cli(kafka_bootstrap, scheduled, "run")
    assert run.returncode == 3, f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    assert "refusing to run" in run.stderr
    for word in words:
        assert word in run.stderr, f"{word!r} not in stderr:\n{run.stderr}"
    assert f"{scheduled}.state" in run.stderr

    verify = _cli(kafka_bootstrap, scheduled, "topics", "verify")
    assert verify.returncode == 3, f"exit {verify.returncode}\n{verify.stdout}\n{verify.stderr}"
    for word in words:
        assert word in verify.stdout, f"{word!r} not in verify output:\n{verify.stdout}"
    errors = [line for line in verify.stdout.splitlines() if line.startswith("ERROR: ")]
    assert errors, verify.stdout
    for line in errors:  # the same message text in both commands
        assert line.removeprefix("ERROR: ") in run.stderr


def test_safe_topics_verify_ok(kafka_bootstrap: str, unique: Callable[[str], str]) -> None:
    scheduled = unique("misconf-ok")
    _make_topics(kafka_bootstrap, scheduled, dict(STATE_CONFIG), 3)
    verify = _cli(kafka_bootstrap, scheduled, "topics", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "ok: topics are safe" in verify.stdout
