"""What is pending: the state topic read from the beginning, last record per key wins, a tombstone forgets.

Why read the state topic and not ask a running scheduler: it works when no scheduler runs, needs no coupling to
the service, and sees every partition at one consistent point (the end offsets taken when the read starts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from scheduler.codec import decode_state, peek_due_ms
from scheduler.errors import CorruptStateRecord
from scheduler.model import Schedule
from scheduler.ops.reader import Progress, partition_count, read_topic
from scheduler.partitioner import partition_for
from scheduler.settings import ServiceSettings

__all__ = ["Pending", "StateSnapshot", "find", "pending_dues", "pending_schedules", "read_state"]

T = TypeVar("T")
Decode = Callable[[str, bytes], "T | None"]  # None: not interesting, forget the id


@dataclass(frozen=True, slots=True)
class Pending:
    """One pending schedule as the state topic holds it; `version` is the input offset that created it."""

    schedule: Schedule
    version: int
    partition: int


@dataclass
class StateSnapshot(Generic[T]):
    """Pending ids, ids whose last record is a tombstone (fired or cancelled), and records that did not decode."""

    pending: dict[str, tuple[int, T]] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    corrupt: list[str] = field(default_factory=list)
    records: int = 0


def read_state(
    settings: ServiceSettings,
    decode: Callable[[str, bytes], T | None],
    *,
    partitions: Iterable[int] | None = None,
    only_id: str | None = None,
    track_done: bool = False,
    progress: Progress | None = None,
) -> StateSnapshot[T]:
    """Replay the state topic; `decode` turns a value into what the caller keeps (None = drop the id)."""
    snap: StateSnapshot[T] = StateSnapshot()
    wanted = only_id.encode() if only_id is not None else None
    for rec in read_topic(settings, settings.state, partitions=partitions, progress=progress):
        snap.records += 1
        if rec.key is None or (wanted is not None and rec.key != wanted):
            continue
        sid = rec.key.decode("utf-8", "replace")
        if rec.value is None:
            snap.pending.pop(sid, None)
            if track_done:
                snap.done.add(sid)
            continue
        try:
            kept = decode(sid, rec.value)
        except CorruptStateRecord as exc:
            snap.corrupt.append(f"{settings.state}/{rec.partition}@{rec.offset} id {sid!r}: {exc}")
            snap.pending.pop(sid, None)  # the last record wins, and it is unreadable
            continue
        snap.done.discard(sid)
        if kept is None:
            snap.pending.pop(sid, None)
        else:
            snap.pending[sid] = (rec.partition, kept)
    return snap


def pending_schedules(
    settings: ServiceSettings,
    keep: Callable[[Schedule], bool] | None = None,
    *,
    track_done: bool = False,
    progress: Progress | None = None,
) -> StateSnapshot[Pending]:
    """Every pending schedule (optionally only those `keep` accepts), decoded."""

    def decode(_sid: str, value: bytes) -> Pending | None:
        schedule, version = decode_state(value)
        if keep is not None and not keep(schedule):
            return None
        return Pending(schedule, version, -1)

    snap = read_state(settings, decode, track_done=track_done, progress=progress)
    snap.pending = {
        sid: (p, Pending(item.schedule, item.version, p)) for sid, (p, item) in snap.pending.items()
    }
    return snap


def pending_dues(settings: ServiceSettings, progress: Progress | None = None) -> StateSnapshot[int]:
    """Due times only (no full decode): what `stats` needs, small enough for a very large state."""
    return read_state(settings, lambda _sid, value: peek_due_ms(value), progress=progress)


def find(
    settings: ServiceSettings, schedule_id: str, progress: Progress | None = None
) -> tuple[Pending | None, list[str]]:
    """One schedule (and any corrupt record of it): read only the partition murmur2 puts the id in.

    Falls back to every partition if the state topic's partition count differs from `scheduled`'s.
    """
    state_parts = partition_count(settings, settings.state)
    input_parts = partition_count(settings, settings.scheduled_topic)
    partitions = [partition_for(schedule_id.encode(), input_parts)] if state_parts == input_parts else None

    def decode(_sid: str, value: bytes) -> Pending:
        schedule, version = decode_state(value)
        return Pending(schedule, version, -1)

    snap = read_state(settings, decode, partitions=partitions, only_id=schedule_id, progress=progress)
    found = snap.pending.get(schedule_id)
    if found is None:
        return None, snap.corrupt
    partition, item = found
    return Pending(item.schedule, item.version, partition), snap.corrupt
