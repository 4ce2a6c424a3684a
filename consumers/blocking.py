"""Block-key ordering: which keys wait behind a retrying record, the records parked behind them, durably marked.

The in-memory set mirrors a compacted `<topic>.<group>.blocked` topic (same partition count as the source, marker
for key K of source partition p written to partition p). It is rebuilt from that topic on assignment, so a new
owner of p keeps K's later records waiting after a crash or a rebalance. Order of writes (docs/consumers.md):
retry scheduled → marker written → offset finished; on success or dead letter: tombstone → parked released.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
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
        self._blocked: set[KeyRef] = set()
        self._parked: dict[KeyRef, list[T]] = {}

    def is_blocked(self, ref: KeyRef) -> bool:
        with self._lock:
            return ref in self._blocked

    def block(self, ref: KeyRef, marker: bytes) -> None:
        if self.is_blocked(ref):
            return
        self._write(ref[0], ref[1], ref[2], marker)
        with self._lock:
            self._blocked.add(ref)

    def park(self, ref: KeyRef, item: T) -> None:
        with self._lock:
            self._parked.setdefault(ref, []).append(item)

    def unblock(self, ref: KeyRef) -> list[T]:
        """Tombstone the marker, then hand back the parked records in arrival order (a no-op if not blocked)."""
        if not self.is_blocked(ref):
            return []
        self._write(ref[0], ref[1], ref[2], None)
        with self._lock:
            self._blocked.discard(ref)
            return self._parked.pop(ref, [])

    def load(self, topic: str, partition: int, keys: Iterable[bytes]) -> None:
        """After assignment: the markers read back from the blocked topic's partition."""
        with self._lock:
            self._blocked.update((topic, partition, key) for key in keys)

    def forget(self, parts: set[tuple[str, int]]) -> None:
        """After revocation: drop state of partitions this member no longer owns (the markers stay durable)."""
        with self._lock:
            self._blocked = {r for r in self._blocked if (r[0], r[1]) not in parts}
            self._parked = {r: v for r, v in self._parked.items() if (r[0], r[1]) not in parts}

    def count(self) -> int:
        with self._lock:
            return len(self._blocked)

    def parked(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._parked.values())
