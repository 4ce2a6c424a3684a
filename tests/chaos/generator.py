"""Seeded command load for chaos runs: creates, replaces, cancels, cancels racing the due time, duplicates, poison.

Commands use the header protocol (key = schedule id, value = payload, target and deliver-at in headers; a null
value is a cancel). Poison commands carry a `chaos-poison: <kind>` header so the checker can find them in
`scheduled`; each must be rejected exactly once. Every delivered command is logged to `commands.jsonl` with its
partition and offset (the offset is the version a schedule fires with).

A share of the commands (`misrouted`) goes through a second producer on librdkafka's default partitioner
(consistent_random, as kcat and most non-Java clients have), so many land outside their id's partition and the
scheduler must forward them home for cancels and replaces to take effect.

Optional edge loads: a burst of schedules due in the same millisecond (F23); oversized payloads to a target with
a 64 KiB max.message.bytes (F17: one that fits, one over the target's limit, one over the state and rejected
topics' limits, poison both); schedules to a target the harness deletes mid-run (F18), marked `chaos-doomed`,
never replaced or cancelled, each of which fires before the deletion, is dead-lettered after it, or (consumed
after it) is rejected as an unknown target.

`recurring` > 0 adds that many recurring schedules (`tests.chaos.recurring_load`: every, after, paused and
resumed, replaced), sent at seeded times in the first third of the run.
"""

from __future__ import annotations

import heapq
import json
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from scheduler.codec import encode_schedule
from scheduler.model import Schedule
from tests.chaos.recurring_load import RecurringPlan

__all__ = ["OVERSIZE", "POISON_KINDS", "EdgeLoad", "Generator"]

POISON_KINDS = (
    "no_key",
    "bad_fingerprint",
    "truncated_avro",
    "missing_target",
    "unknown_target",
    "forbidden_target",
    "bad_due",
)


# F17 payload sizes (random bytes: lz4 cannot shrink them) against a 64 KiB target ("big"), a 4 MiB one
# ("huge"), the state topic lowered to 256 KiB and the producer's 1,000,000-byte message.max.bytes.
OVERSIZE = {
    "fits": ("big", 40_000),  # must fire
    "oversize_target": ("big", 80_000),  # refused: over the target
    "oversize_state": ("huge", 300_000),  # refused: fits the target, not the state topic
    "oversize_producer": (
        "huge",
        1_536_000,
    ),  # refused: over message.max.bytes and the rejected topic (value dropped)
}
BIG_TARGET_MAX = 65_536
HUGE_TARGET_MAX = 4 * 1024 * 1024
STATE_MAX = 262_144


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class EdgeLoad:
    """Where the edge cases go; times are wall-clock ms."""

    burst: int = 0  # schedules due at burst_ms exactly (F23)
    burst_ms: int = 0
    big_target: str | None = None  # F17
    huge_target: str | None = None
    oversize_rate: float = 0.003
    doomed_target: str | None = None  # F18
    doomed_rate: float = 0.03
    doomed_until_ms: int = 0  # no doomed creates after this
    delete_ms: int = 0  # when the harness deletes the doomed target


class Generator:
    """Produces `schedules` new schedules (plus replaces, cancels and poison) over `produce_s` seconds."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        targets: list[str],
        run_dir: Path,
        rng: random.Random,
        *,
        schedules: int,
        produce_s: float,
        max_due_s: float,
        edge: EdgeLoad | None = None,
        misrouted: float = 0.0,
        recurring: int = 0,
    ) -> None:
        self._topic = topic
        self._targets = targets
        self._rng = rng
        self._schedules = schedules
        self._produce_s = produce_s
        self._max_due_s = max_due_s
        conf = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "log_level": 3,
            "message.max.bytes": 4_000_000,  # the F17 "over the state topic" case
        }
        self._producer = Producer({**conf, "partitioner": "murmur2_random"})
        self._other = Producer(conf)  # librdkafka's default partitioner
        self._misrouted = misrouted
        self._edge = edge or EdgeLoad()
        self._burst_left = self._edge.burst
        self._burst_p = min(1.0, 2.5 * self._edge.burst / max(1, schedules))
        self._log = (run_dir / "commands.jsonl").open("w")
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.delivered = 0
        self.failed = 0
        self.last_due_ms = 0
        self._pending: dict[str, int] = {}  # id -> due (what the generator believes is pending)
        self._ids: list[str] = []
        self._races: list[tuple[float, str]] = []  # (monotonic send time, id)
        self._sent: list[tuple[bytes, bytes | None, list[tuple[str, bytes]]]] = []
        self._n = 0
        # drawn only when asked for, so runs without recurring schedules keep their seeded sequence
        plan = RecurringPlan(random.Random(rng.random()), recurring, max_due_s * 0.35) if recurring else None
        self._recurring = list(reversed(plan.actions)) if plan else []  # a stack, soonest last
        self._plan = plan

    def _count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def _send(
        self,
        kind: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        misroute: bool = True,
        **info: Any,
    ) -> None:
        def delivered(err: Any, msg: Any) -> None:
            with self._lock:
                if err is not None:
                    self.failed += 1
                    entry = {"kind": kind, "error": str(err), **info}
                else:
                    self.delivered += 1
                    entry = {"kind": kind, "p": msg.partition(), "o": msg.offset(), **info}
                self._log.write(json.dumps(entry) + "\n")

        producer = self._other if misroute and self._rng.random() < self._misrouted else self._producer
        while True:
            try:
                producer.produce(self._topic, value, key, headers=headers, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        self._count(kind)

    def _schedule(self, sid: str, due: int, kind: str) -> None:
        target = self._rng.choice(self._targets)
        headers = [("scheduler-target-topic", target.encode()), ("scheduler-deliver-at", str(due).encode())]
        value = f"{sid} v{self._n}".encode()
        self._send(kind, sid.encode(), value, headers, id=sid, due=due)
        self._sent.append((sid.encode(), value, headers))
        self._pending[sid] = due
        self.last_due_ms = max(self.last_due_ms, due)

    def _cancel(self, sid: str, kind: str) -> None:
        self._send(kind, sid.encode(), None, [], id=sid)
        self._pending.pop(sid, None)

    def _poison(self) -> None:
        kind = self._rng.choice(POISON_KINDS)
        mark = [("chaos-poison", kind.encode())]
        key: bytes | None = f"poison-{self._n}".encode()
        target = self._targets[0].encode()
        due = str(wall_ms() + 1000).encode()
        value: bytes | None = b"poison"
        headers = mark
        if kind == "no_key":
            key, headers = None, [("scheduler-target-topic", target), ("scheduler-deliver-at", due), *mark]
        elif kind == "bad_fingerprint":
            value = b"\xc3\x01" + self._rng.randbytes(8) + self._rng.randbytes(self._rng.randint(0, 40))
        elif kind == "truncated_avro":
            full = encode_schedule(Schedule(key.decode(), self._targets[0], wall_ms() + 1000, b"payload"))  # type: ignore[union-attr]
            value = full[: self._rng.randint(10, len(full) - 1)]
        elif kind == "missing_target":
            headers = [("scheduler-deliver-at", due), *mark]
        elif kind == "unknown_target":
            headers = [
                ("scheduler-target-topic", b"chaos-no-such-topic"),
                ("scheduler-deliver-at", due),
                *mark,
            ]
        elif kind == "forbidden_target":
            headers = [
                ("scheduler-target-topic", b"__consumer_offsets"),
                ("scheduler-deliver-at", due),
                *mark,
            ]
        else:  # bad_due
            headers = [("scheduler-target-topic", target), ("scheduler-deliver-at", b"soon"), *mark]
        self._send("poison", key, value, headers, poison=kind)

    def _edge_create(self, sid: str, now: int, deadline_ms: int) -> bool:
        """An edge-case create instead of an ordinary one; False if none is due now."""
        rng, edge = self._rng, self._edge
        if edge.doomed_target and now < edge.doomed_until_ms and rng.random() < edge.doomed_rate:
            # due well before the deletion (fires) or well after it (dead letter); never touched again
            early = (now + 200, edge.delete_ms - 10_000)
            late = (edge.delete_ms + 5_000, max(edge.delete_ms + 5_001, deadline_ms))
            low, high = early if early[0] < early[1] and rng.random() < 0.5 else late
            headers = [
                ("scheduler-target-topic", edge.doomed_target.encode()),
                ("scheduler-deliver-at", str(rng.randint(low, high)).encode()),
                ("chaos-doomed", b"1"),
            ]
            self._send("doomed", sid.encode(), f"{sid} doomed".encode(), headers, id=sid)
            self.last_due_ms = max(self.last_due_ms, high)
            return True
        first_rounds = self.counts.get("oversize", 0) < len(OVERSIZE) and self._n % 50 == 0  # each case early
        if edge.big_target and edge.huge_target and (first_rounds or rng.random() < edge.oversize_rate):
            case = list(OVERSIZE)[self.counts.get("oversize", 0) % len(OVERSIZE)]  # each case in turn
            self._count("oversize")
            where, size = OVERSIZE[case]
            headers = [
                (
                    "scheduler-target-topic",
                    (edge.big_target if where == "big" else edge.huge_target).encode(),
                ),
                ("scheduler-deliver-at", str(now + rng.randint(200, max(300, deadline_ms - now))).encode()),
            ]
            value = sid.encode() + rng.randbytes(size)
            if case == "fits":
                due = int(headers[1][1])
                self._send("oversize_fits", sid.encode(), value, headers, id=sid, due=due)
                self._pending[sid] = due
                self.last_due_ms = max(self.last_due_ms, due)
            else:
                headers.append(("chaos-poison", case.encode()))
                self._send("poison", sid.encode(), value, headers, poison=case)
            return True
        if self._burst_left and now < edge.burst_ms - 1000 and rng.random() < self._burst_p:
            self._burst_left -= 1
            self._schedule(sid, edge.burst_ms, "burst")
            return True
        return False

    def _step(self, deadline_ms: int) -> None:
        """One command chosen by the seeded RNG."""
        rng = self._rng
        now = wall_ms()
        self._n += 1
        roll = rng.random()
        live = [s for s, d in self._pending.items() if d > now + 100] if roll >= 0.6 else []
        if roll < 0.6 or not live:
            sid = f"s{self._n}"
            self._ids.append(sid)
            if self._edge_create(sid, now, deadline_ms):
                self._count("create")
                return
            # Many due soon (so fires happen while faults are injected), some near the end, a few past due.
            span = max(300, deadline_ms - now)
            due = now - 5000 if rng.random() < 0.02 else now + rng.randint(200, span)
            self._schedule(sid, min(due, deadline_ms), "create")
        elif roll < 0.72:
            sid = rng.choice(live)
            self._schedule(sid, now + rng.randint(200, max(300, deadline_ms - now)), "replace")
        elif roll < 0.82:
            self._cancel(rng.choice(live), "cancel")
        elif roll < 0.90:
            sid = rng.choice(live)
            at = time.monotonic() + (self._pending[sid] - now + rng.randint(-50, 50)) / 1000
            heapq.heappush(self._races, (at, sid))
            self._count("race_planned")
        elif roll < 0.95:
            self._poison()
        elif self._sent:
            key, value, headers = rng.choice(self._sent[-200:])
            self._send("duplicate", key, value, headers, id=key.decode())
            due = int(dict(headers)["scheduler-deliver-at"])
            self._pending[key.decode()] = due

    def _send_recurring(self, kind: str, sid: str, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        # one producer, the id's partition: a pause never overtakes its schedule on the way home
        self._send(kind, sid.encode(), value, headers, misroute=False, id=sid)

    def _recurring_due(self, elapsed: float) -> None:
        while self._plan is not None and self._recurring and self._recurring[-1].at_s <= elapsed:
            action = self._recurring.pop()
            target = self._rng.choice(self._targets)
            last = self._plan.run(action, wall_ms(), target, self._send_recurring)
            self.last_due_ms = max(self.last_due_ms, last)

    def run(self, stop: threading.Event) -> None:
        start = time.monotonic()
        deadline_ms = wall_ms() + int(self._max_due_s * 1000)
        creates = 0
        while not stop.is_set():
            elapsed = time.monotonic() - start
            self._recurring_due(elapsed)
            target = min(self._schedules, int(self._schedules * min(1.0, elapsed / self._produce_s)) + 1)
            while creates < target and not stop.is_set():
                before = self.counts.get("create", 0)
                self._step(deadline_ms)
                creates += self.counts.get("create", 0) - before
                if creates % 256 == 0:  # a producer behind its plan still sends recurring actions on time
                    self._recurring_due(time.monotonic() - start)
            now = time.monotonic()
            while self._races and self._races[0][0] <= now:
                _at, sid = heapq.heappop(self._races)
                self._cancel(sid, "race_cancel")
            if creates >= self._schedules and not self._races and not self._recurring:
                break
            nxt = self._races[0][0] - now if self._races else 0.02
            stop.wait(max(0.0, min(0.02, nxt)))
        self.close()

    def close(self) -> None:
        remaining = self._producer.flush(60) + self._other.flush(60)
        if remaining:
            self.failed += remaining
        with self._lock:
            self._log.close()
