"""Opt-in per-transaction log: one JSON line when a tick's transaction begins and one when its outcome is known.

Set `KAFKA_SCHEDULER_TXN_LOG=/path/file.jsonl` (appended to; one file per instance is simplest). For forensics and
for the chaos checker, which matches every fire it reads back against the attempt that wrote it:

    {"attempt": "c0.4711.9f3a1c.17", "t": 1732370000123, "fires": [["orders", "r-42@1093"]], "dead_letters": [],
     "state": [[3, "r-42", "del"]], "rejects": 0, "history": 1, "offsets": {"3": 1094}}
    {"attempt": "c0.4711.9f3a1c.17", "outcome": "committed"}

Outcomes: `committed`, `aborted` (rolled back; the instance rewinds and tries again), `fenced` (refused because a
newer producer epoch or group generation exists: a zombie), `failed` (a fatal error before the commit; the
process exits), `indeterminate` (the commit call never resolved; the process exits and the broker decides). An
attempt with no outcome line was in flight when the process died: indeterminate too. The begin line is flushed to
the operating system before the commit is asked for, so a SIGKILL never loses it. Off by default: with 100k
fires per minute it writes a few MB per minute.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from confluent_kafka import TopicPartition

from scheduler.model import HEADER_FIRE_ID
from scheduler.records import OutRecord

__all__ = ["TransactionLog"]


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("latin-1")


class TransactionLog:
    """Appends attempts of one process to a JSON-lines file; ids are `<instance>.<pid>.<random>.<n>`."""

    def __init__(
        self, path: Path, instance: str, *, state_topic: str, dlt_topic: str, history_topic: str | None = None
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a", encoding="utf-8")
        self._prefix = f"{instance}.{os.getpid()}.{secrets.token_hex(3)}."  # pids are reused across restarts
        self._state = state_topic
        self._dlt = dlt_topic
        self._history = history_topic
        self._n = 0

    def begin(
        self, fires: Sequence[OutRecord], others: Sequence[OutRecord], offsets: Sequence[TopicPartition]
    ) -> str:
        self._n += 1
        attempt = f"{self._prefix}{self._n}"
        entry: dict[str, object] = {
            "attempt": attempt,
            "t": time.time_ns() // 1_000_000,
            "fires": [[r.topic, _fire_id(r)] for r in fires],
            "dead_letters": [_fire_id(r) for r in others if r.topic == self._dlt],
            "state": [
                [r.partition, _text(r.key), "del" if r.value is None else "put"]
                for r in others
                if r.topic == self._state
            ],
            "rejects": sum(r.topic not in (self._state, self._dlt, self._history) for r in others),
            "history": sum(r.topic == self._history for r in others),
            "offsets": {str(tp.partition): tp.offset for tp in offsets},
        }
        self._write(entry)
        return attempt

    def end(self, attempt: str, outcome: str, error: str | None = None) -> None:
        entry: dict[str, object] = {"attempt": attempt, "outcome": outcome}
        if error:
            entry["error"] = error
        self._write(entry)

    def close(self) -> None:
        self._file.close()

    def _write(self, entry: dict[str, object]) -> None:
        self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._file.flush()  # into the kernel: a SIGKILL right after cannot lose it


def _fire_id(record: OutRecord) -> str | None:
    for name, value in record.headers:
        if name == HEADER_FIRE_ID:
            return None if value is None else value.decode()
    return None
