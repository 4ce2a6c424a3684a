"""SIGKILL mid-handler, restart: every effect applied exactly once.

The app writes its effects with `message.context.transaction()` (the ledger table lives in the idempotency store's
database, committed with the done mark), the documented exactly-once path; redelivered done records are skipped.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from tests.conftest import wait_until
from tests.integration.consumer_helpers import produce

N = 300


def _effects(ledger: Path) -> list[str]:
    if not ledger.exists():
        return []
    with closing(sqlite3.connect(ledger, timeout=30)) as db:
        try:
            return [row[0] for row in db.execute("SELECT value FROM effects")]
        except sqlite3.OperationalError:
            return []


def _committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        [tp] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return int(tp.offset)
    finally:
        consumer.close()


def test_crash_mid_handler_then_restart_applies_every_effect_exactly_once(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = create_topic(unique("ledger"), partitions=1)
    group = unique("g")
    values = [f"v{i}" for i in range(N)]
    produce(
        kafka_bootstrap, topic, [(f"key{i % 30}".encode(), v.encode(), None) for i, v in enumerate(values)]
    )
    ledger, marker = (
        tmp_path / "idem.sqlite3",
        tmp_path / "crashed",
    )  # the ledger table is in the store's file
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CRASH_TOPIC": topic,
        "CRASH_GROUP": group,
        "CRASH_MARKER": str(marker),
        "CRASH_STORE": str(ledger),
        "CRASH_VALUE": "v200",
    }
    cmd = [sys.executable, "-m", "scheduler.cli", "consume", "tests.integration.consumer_crash_app:app"]
    first = subprocess.Popen(cmd, env=env, cwd=Path(__file__).parents[2])
    try:
        assert first.wait(timeout=120) == -9, "the app should have been SIGKILLed by its handler"
    finally:
        first.kill()
    before_restart = _effects(ledger)
    assert "v200" not in before_restart
    committed = _committed(kafka_bootstrap, group, topic)
    assert committed < len(before_restart), "nothing to redeliver: the test would not exercise idempotency"

    second = subprocess.Popen(cmd, env=env, cwd=Path(__file__).parents[2])
    try:
        wait_until(lambda: len(_effects(ledger)) >= N, 120, f"{N} effects after the restart")
        second.terminate()
        assert second.wait(timeout=60) == 0
    finally:
        second.kill()
    effects = _effects(ledger)
    assert sorted(effects) == sorted(values), "an effect was lost or applied twice"
    assert _committed(kafka_bootstrap, group, topic) == N
