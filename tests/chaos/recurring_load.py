"""Seeded recurring schedules for chaos runs (`--recurring N`), in the header protocol.

Each of the N ids is created at a seeded time in the first part of the run and ends within it:
- `every` 1 s, or every 2-5 s, starting at a whole second 1-3 s after it is sent, missed `all` / `latest` /
  `skip`, ending by `scheduler-max-runs` or `scheduler-ends-at`;
- `after` 1-3 s (the harness's echo consumer, the consumer framework, reports each occurrence done);
- a share paused (`scheduler-control: pause`) 2-4 s after they start and resumed 3-5 s later, with an ends-at
  far enough after the resume to show they go on (missed latest or skip: the checker's `all` rule leaves paused
  ids alone);
- a share replaced 2-5 s after creation by a new spec under the same id.
The checker reads what was sent from `scheduled` itself; the generator logs each command to `commands.jsonl`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from scheduler.model import (
    HEADER_AFTER_MS,
    HEADER_CONTROL,
    HEADER_ENDS_AT,
    HEADER_EVERY_MS,
    HEADER_MAX_RUNS,
    HEADER_MISSED,
    HEADER_STARTS_AT,
    HEADER_TARGET_TOPIC,
)

__all__ = ["Action", "RecurringPlan", "Spec"]

Headers = list[tuple[str, bytes]]
Send = Callable[[str, str, bytes, Headers], None]  # kind, id, value, headers


@dataclass(frozen=True)
class Spec:
    """A recurring spec relative to its send time; `headers(now)` fixes starts/ends to wall-clock ms."""

    every_ms: int | None
    after_ms: int | None
    lead_ms: int  # starts_at is the first whole second at least this long after sending
    missed: str | None
    max_runs: int | None
    span_ms: int | None  # ends_at = starts_at + span_ms

    def starts(self, now_ms: int) -> int:
        return math.ceil((now_ms + self.lead_ms) / 1000) * 1000

    def headers(self, now_ms: int, target: str) -> Headers:
        starts = self.starts(now_ms)
        out: Headers = [(HEADER_TARGET_TOPIC, target.encode()), (HEADER_STARTS_AT, str(starts).encode())]
        if self.every_ms is not None:
            out.append((HEADER_EVERY_MS, str(self.every_ms).encode()))
        if self.after_ms is not None:
            out.append((HEADER_AFTER_MS, str(self.after_ms).encode()))
        if self.missed is not None:
            out.append((HEADER_MISSED, self.missed.encode()))
        if self.max_runs is not None:
            out.append((HEADER_MAX_RUNS, str(self.max_runs).encode()))
        if self.span_ms is not None:
            out.append((HEADER_ENDS_AT, str(starts + self.span_ms).encode()))
        return out

    def last_ms(self, now_ms: int) -> int:
        """A bound on the last occurrence (an `after` one allows 1 s per run for the done report)."""
        starts = self.starts(now_ms)
        if self.span_ms is not None:
            return starts + self.span_ms
        runs = self.max_runs or 1
        step = self.every_ms if self.every_ms is not None else (self.after_ms or 0) + 1000
        return starts + (runs - 1) * step + (step if self.after_ms is not None else 0)


@dataclass(frozen=True)
class Action:
    """A command to send `at_s` seconds after the load started."""

    at_s: float
    kind: str  # recurring_create | recurring_replace | pause | resume
    sid: str
    spec: Spec | None = None


def _spec(rng: random.Random, kind: str, paused: bool) -> Spec:
    lead = rng.randint(1000, 3000)
    if kind == "after":
        after = rng.randint(10, 30) * 100
        if rng.random() < 0.5:
            return Spec(None, after, lead, None, rng.randint(3, 6), None)
        return Spec(None, after, lead, None, None, rng.randint(8, 15) * 1000)
    every = 1000 if kind == "every1" else rng.randint(2, 5) * 1000
    missed = rng.choice(("latest", "skip") if paused else ("all", "latest", "skip"))
    if paused:  # pause 3-6 s after the start, resume 3-5 s later, then 11-22 s more
        return Spec(every, None, lead, missed, None, rng.randint(22, 28) * 1000)
    if rng.random() < 0.5:
        return Spec(every, None, lead, missed, rng.randint(3, 10), None)
    return Spec(every, None, lead, missed, None, rng.randint(5, 15) * 1000)


class RecurringPlan:
    """The seeded actions for `count` recurring ids created within the first `create_s` seconds."""

    def __init__(self, rng: random.Random, count: int, create_s: float) -> None:
        self.actions: list[Action] = []
        for i in range(count):
            kind = rng.choices(("every1", "everyN", "after"), (0.35, 0.35, 0.3))[0]
            role = rng.choices(("plain", "paused", "replaced"), (0.6, 0.2, 0.2))[0]
            if kind == "after" and role == "paused":
                role = "plain"  # pause/resume is judged on the `every` grid
            sid = f"rec{i}-{kind}-{role}"
            at = rng.uniform(0.0, create_s)
            spec = _spec(rng, kind, role == "paused")
            self.actions.append(Action(at, "recurring_create", sid, spec))
            if role == "paused":
                pause = at + (spec.lead_ms + 1000) / 1000 + rng.uniform(2.0, 4.0)
                self.actions.append(Action(pause, "pause", sid))
                self.actions.append(Action(pause + rng.uniform(3.0, 5.0), "resume", sid))
            elif role == "replaced":
                new = _spec(rng, rng.choice(("every1", "everyN", "after")), False)
                self.actions.append(Action(at + rng.uniform(2.0, 5.0), "recurring_replace", sid, new))
        self.actions.sort(key=lambda a: a.at_s)

    def run(self, action: Action, now_ms: int, target: str, send: Send) -> int:
        """Send `action`; returns a bound on the last occurrence it may cause (0 for a control command)."""
        if action.spec is None:
            send(action.kind, action.sid, b"", [(HEADER_CONTROL, action.kind.encode())])
            return 0
        send(
            action.kind,
            action.sid,
            f"{action.sid} {action.kind}".encode(),
            action.spec.headers(now_ms, target),
        )
        return action.spec.last_ms(now_ms)
