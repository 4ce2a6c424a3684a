"""BASELINE ONLY: the Python DueIndex as it was before issue 14 (scheduler/service/index.py at 77c0bdf).

bench.memory measures it beside the native index in the same run; nothing in the scheduler imports it. Per
schedule it held one dict slot (id -> the state record as a Python bytes object) and one pointer in a per-second
bucket list, sorted lazily.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator

from scheduler.codec import peek_due_ms
from scheduler.service.index import WINDOWS

__all__ = ["PythonDueIndex"]


class PythonDueIndex:
    """Pending schedules of one partition: id -> state record, found by due time."""

    __slots__ = ("_buckets", "_due_of", "_ready", "_records", "_seconds")

    def __init__(self, due_of: Callable[[bytes], int] = peek_due_ms) -> None:
        self._records: dict[bytes, bytes] = {}
        self._buckets: dict[int, list[bytes]] = {}
        self._seconds: list[int] = []  # heap of bucket keys (each present once)
        # Buckets sorted by due time, as (id, record) taken when sorted: an entry is live while the index still
        # holds that very record object for the id, so removals and moves need no rescan and no due-time peek.
        self._ready: dict[int, list[tuple[bytes, bytes]]] = {}
        self._due_of = due_of

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, schedule_id: bytes) -> bool:
        return schedule_id in self._records

    def get(self, schedule_id: bytes) -> bytes | None:
        return self._records.get(schedule_id)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._records.items())

    def put(self, schedule_id: bytes, record: bytes) -> None:
        """Insert or replace; a replaced version's bucket pointer goes stale and is dropped on scan."""
        old = self._records.get(schedule_id)
        self._records[schedule_id] = record
        second = self._due_of(record) // 1000
        if old is not None and self._due_of(old) // 1000 == second:
            self._ready.pop(second, None)  # same bucket: due may have moved within it
            return
        bucket = self._buckets.get(second)
        if bucket is None:
            self._buckets[second] = [schedule_id]
            heapq.heappush(self._seconds, second)
        else:
            bucket.append(schedule_id)
            self._ready.pop(second, None)

    def remove(self, schedule_id: bytes) -> bytes | None:
        return self._records.pop(schedule_id, None)

    def _live(self, second: int) -> list[tuple[bytes, bytes]]:
        """The bucket sorted by due time, as (id, record); entries may have gone stale since (`_is_live`)."""
        ready = self._ready.get(second)
        if ready is not None:
            return ready
        records, due_of, seen = self._records, self._due_of, set()
        live = []
        for sid in self._buckets[second]:
            record = records.get(sid)
            if record is not None and sid not in seen and due_of(record) // 1000 == second:
                seen.add(sid)
                live.append((due_of(record), sid, record))
        live.sort(key=lambda entry: entry[0])
        ready = [(sid, record) for _due, sid, record in live]
        self._buckets[second] = [sid for sid, _record in ready]
        self._ready[second] = ready
        return ready

    def _first_bucket(self) -> int | None:
        """The earliest bucket with a live schedule; empty buckets are discarded on the way."""
        records = self._records
        while self._seconds:
            second = self._seconds[0]
            live = self._live(second)
            stale = 0
            for sid, record in live:
                if records.get(sid) is record:
                    break
                stale += 1
            if stale:
                del live[:stale]
            if live:
                return second
            heapq.heappop(self._seconds)
            del self._buckets[second]
            self._ready.pop(second, None)
        return None

    def next_due_ms(self) -> int | None:
        second = self._first_bucket()
        if second is None:
            return None
        return self._due_of(self._ready[second][0][1])

    def due(self, now_ms: int, max_count: int) -> list[tuple[bytes, bytes]]:
        """Up to `max_count` schedules with due <= now, earliest first; nothing is removed."""
        out: list[tuple[bytes, bytes]] = []
        if self._first_bucket() is None:
            return out
        records, due_of, heap, now_s = self._records, self._due_of, self._seconds, now_ms // 1000
        visited: list[int] = []
        while heap and heap[0] <= now_s and len(out) < max_count:
            second = heapq.heappop(heap)
            visited.append(second)
            whole = second < now_s  # every live entry of an earlier second is due: no due-time peeks
            for sid, record in self._live(second):
                if records.get(sid) is not record:
                    continue  # removed, replaced or moved since the bucket was sorted
                if len(out) >= max_count or (not whole and due_of(record) > now_ms):
                    break
                out.append((sid, record))
        for second in visited:
            heapq.heappush(heap, second)
        return out

    def count_due_within(self, now_ms: int) -> dict[str, int]:
        """Schedules due within each window from now, overdue ones in every window.

        Counted per bucket, so cheap at scrape time; a replaced or cancelled schedule may be counted until its
        bucket is next scanned.
        """
        counts = dict.fromkeys(WINDOWS, 0)
        horizon = {label: (now_ms + span) // 1000 for label, span in WINDOWS.items()}
        for second, bucket in self._buckets.items():
            for label, last in horizon.items():
                if second <= last:
                    counts[label] += len(bucket)
        return counts
