"""The seam to the scheduler: what the consumer framework needs from scheduler.client.SchedulerClient."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

__all__ = ["Scheduling"]


class Scheduling(Protocol):
    """Structural type of SchedulerClient (schedule / cancel / flush), so unit tests can pass a fake."""

    def schedule(
        self,
        schedule_id: str,
        *,
        topic: str,
        value: bytes | str | None,
        key: bytes | str | None = None,
        headers: Sequence[tuple[str, bytes | str | None]] | None = None,
        at: datetime | int | None = None,
        delay: timedelta | None = None,
        partition: int | None = None,
    ) -> object: ...

    def cancel(self, schedule_id: str) -> object: ...

    def flush(self, timeout: float = 30.0) -> int: ...
