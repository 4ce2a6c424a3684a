"""Per-partition offset tracking: commit only up to the lowest unfinished record, never past work in flight."""

from __future__ import annotations

import heapq

__all__ = ["OffsetTracker"]


class OffsetTracker:
    """Records of one partition finish out of order; the committable offset is the lowest one still unfinished.

    Kafka commits "the next offset to read", so with nothing pending it is one past the highest offset seen.
    """

    def __init__(self) -> None:
        self._pending: set[int] = set()
        self._heap: list[int] = []
        self._highest = -1

    def add(self, offset: int) -> None:
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        if offset in self._pending:
            return
        self._pending.add(offset)
        heapq.heappush(self._heap, offset)
        self._highest = max(self._highest, offset)

    def finish(self, offset: int) -> None:
        """Mark done; finishing an unknown or already finished offset is a no-op (a revoke may race a worker)."""
        self._pending.discard(offset)
        while self._heap and self._heap[0] not in self._pending:
            heapq.heappop(self._heap)

    def committable(self) -> int | None:
        """The offset to commit (lowest unfinished, else highest seen + 1), or None before any record."""
        if self._heap:
            return self._heap[0]
        return self._highest + 1 if self._highest >= 0 else None

    def pending(self) -> int:
        return len(self._pending)

    def lowest_pending(self) -> int | None:
        return self._heap[0] if self._heap else None
