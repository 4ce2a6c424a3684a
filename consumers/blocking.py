"""Block-key ordering: which keys wait behind a retrying record, the records parked behind them, durably marked.

The in-memory set mirrors a compacted `<topic>.<group>.blocked` topic (same partition count as the source, marker
for key K of source partition p written to partition p). It is rebuilt from that topic on assignment, so a new
owner of p keeps K's later records waiting after a crash or a rebalance. Order of writes (docs/consumers.md):
retry scheduled → marker written → offset finished; on success or dead letter: tombstone → parked released.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

__all__ = ["BlockedKeys", "KeyRef"]

T = TypeVar("T")
KeyRef = tuple[str, int, bytes]  # (source topic, source partition, key)
MarkerWriter = Callable[[str, int, bytes, bytes | None], None]  # (source topic, partition, key, value|None)


class BlockedKeys(Generic[T]):
    """Thread-safe; the marker writer must be synchronous (flushed) because the offset commit relies on it."""

    def __init__(self, write_marker: MarkerWriter) -> None:
        self._write = write_marker
        self._lock = threading.Lock()
        self._blocked: dict[KeyRef, int] = {}  # key → offset of the source record whose retry it waits for
        self._parked: dict[KeyRef, list[T]] = {}

    def is_blocked(self, ref: KeyRef) -> bool:
        with self._lock:
            return ref in self._blocked

    def block(self, ref: KeyRef, offset: int) -> None:
        """Durably mark `ref` as waiting for the retry of source offset `offset`."""
        if self.is_blocked(ref):
            return
        self._write(ref[0], ref[1], ref[2], json.dumps({"offset": offset}).encode())
        with self._lock:
            self._blocked[ref] = offset

    def park(self, ref: KeyRef, item: T) -> None:
        with self._lock:
            self._parked.setdefault(ref, []).append(item)

    def unblock(self, ref: KeyRef, offset: int) -> list[T]:
        """Tombstone the marker, then hand back the parked records in arrival order.

        A no-op unless `ref` waits for exactly `offset`: a stale duplicate of an ended retry chain must not
        release a key blocked by a newer one.
        """
        with self._lock:
            if self._blocked.get(ref) != offset:
                return []
        self._write(ref[0], ref[1], ref[2], None)
        with self._lock:
            del self._blocked[ref]
            return self._parked.pop(ref, [])

    def load(self, topic: str, partition: int, markers: Mapping[bytes, bytes]) -> None:
        """After assignment: the markers read back from the blocked topic's partition (key → marker JSON)."""
        with self._lock:
            for key, marker in markers.items():
                self._blocked[(topic, partition, key)] = int(json.loads(marker)["offset"])

    def forget(self, parts: set[tuple[str, int]]) -> None:
        """After revocation: drop state of partitions this member no longer owns (the markers stay durable)."""
        with self._lock:
            self._blocked = {r: o for r, o in self._blocked.items() if (r[0], r[1]) not in parts}
            self._parked = {r: v for r, v in self._parked.items() if (r[0], r[1]) not in parts}

    def count(self) -> int:
        with self._lock:
            return len(self._blocked)

    def parked(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._parked.values())
