"""Every command takes effect in its schedule id's partition, whatever partitioner its producer used.

The id's partition ("home") is Kafka's Java default: murmur2 of the id modulo the partitions of `scheduled`, what
`SchedulerClient` and any producer with `partitioner=murmur2_random` choose. A command consumed from another
partition (librdkafka's default consistent_random, kcat, an explicit partition) is copied to its home partition
in the same transaction that commits its input offset (`scheduler-forwarded-from: <partition>/<offset>`), so a
cancel or replace meets the schedule it names, exactly once and after what that partition already holds; or,
with `KAFKA_SCHEDULER_MISROUTED=reject`, it is rejected (`wrong_partition`).

A state record found in the wrong partition at rebuild (written before routing existed, by producers that never
mixed partitioners) is moved home the same way before its partition takes commands: a tombstone where it was and
the record itself on `scheduled` (`scheduler-relocated-from: <partition>`), taken at home unless a schedule
created later is already there; its version (and fire id) becomes the offset it was moved to.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from scheduler.partitioner import partition_for

__all__ = ["Layout", "MisrouteNotice"]

log = logging.getLogger(__name__)
NOTICE_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Layout:
    """The scheduler's input and state topics and their (equal) partition count."""

    scheduled: str
    state: str
    partitions: int

    def home(self, schedule_id: bytes) -> int:
        return partition_for(schedule_id, self.partitions)


class MisrouteNotice:
    """Counts misrouted commands and says so at most once a minute, with the fix."""

    def __init__(self, mode: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._mode = mode
        self._clock = clock
        self._count = 0
        self._last = -NOTICE_EVERY_S
        self._example = ""

    def add(self, count: int, example: str) -> None:
        if not count:
            return
        self._count += count
        self._example = self._example or example
        now = self._clock()
        if now - self._last < NOTICE_EVERY_S:
            return
        verb = "forwarded to" if self._mode == "forward" else "rejected (wrong_partition) instead of"
        log.warning(
            "%d commands arrived in a partition other than their schedule id's and were %s the id's partition "
            "(e.g. %s); set partitioner=murmur2_random on their producers (kcat -X partitioner=murmur2_random; "
            "the Java client's default already is)",
            self._count,
            verb,
            self._example,
        )
        self._count, self._last, self._example = 0, now, ""
