"""Graceful shutdown inside one deadline, and the account of what it had to leave unfinished.

The whole of it, drain and close, fits in `shutdown_timeout_s` (Kubernetes kills at its grace period, 30 s by
default): the drain gets the deadline minus a reserve for committing and closing; what is still running or queued
then is abandoned, named in the log (topic, partition, offset, key) and reported as `ShutdownIncomplete`, so the
process exits non-zero. Offsets stop before the first unfinished record, so all of it runs again after a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from consumers.processor import Work
from scheduler.errors import SchedulerError

__all__ = ["Deadline", "ShutdownIncomplete", "report_abandoned"]

log = logging.getLogger(__name__)
CLOSE_RESERVE_S = 2.0  # at most; never more than a fifth of the timeout


class ShutdownIncomplete(SchedulerError):
    """Work was still unfinished at the shutdown deadline; it runs again after a restart (the log names it)."""


@dataclass(frozen=True)
class Deadline:
    """The end of shutdown, and of its drain (a reserve earlier, for the commit and the close)."""

    at: float
    drain_until: float

    @classmethod
    def after(cls, timeout_s: float, now: float | None = None) -> Deadline:
        start = time.monotonic() if now is None else now
        reserve = min(CLOSE_RESERVE_S, timeout_s / 5)
        return cls(start + timeout_s, start + timeout_s - reserve)

    def left(self, until: float | None = None) -> float:
        """Seconds to `until` (default: the end), never negative."""
        return max(0.0, (self.at if until is None else until) - time.monotonic())


def report_abandoned(running: Iterable[Work], queued: Iterable[Work], timeout_s: float) -> int:
    """Log each record still running and each partition's queued records; returns how many were abandoned."""
    count = 0
    for work in running:
        count += 1
        log.warning(
            "shutdown: abandoning a record still in its handler after shutdown_timeout_s=%g; it runs again "
            "after a restart",
            timeout_s,
            extra=work.raw.fields(),
        )
    waiting: dict[tuple[str, int], list[int]] = {}
    for work in queued:
        count += 1
        waiting.setdefault((work.raw.topic, work.raw.partition), []).append(work.raw.offset)
    for (topic, partition), offsets in sorted(waiting.items()):
        log.warning(
            "shutdown: abandoning %d queued record(s) from offset %d; they run after a restart",
            len(offsets),
            min(offsets),
            extra={"topic": topic, "partition": partition, "offset": min(offsets)},
        )
    return count
