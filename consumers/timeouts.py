"""Handler time limits: a call past `handler_timeout_s` is given up on; its record is retried or dead-lettered.

An async handler is cancelled (`AsyncRunner.run`). A sync handler's thread cannot be stopped from outside, so a
watchdog leaves its worker behind: the worker is *abandoned* (counted; /livez fails while it still runs), a fresh
worker takes its place, and the record goes on as if the handler had raised `HandlerTimeout`. Should the abandoned
call return later, its outcome is ignored. The decision "returned in time" or "expired" is taken under one lock,
and the expiry callback runs under it too, so exactly one of the two paths finishes the record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["HandlerTimeout", "TimeLimits"]

T = TypeVar("T", bound=Hashable)


class HandlerTimeout(Exception):
    """The handler ran past `handler_timeout_s`; retried or dead-lettered like any other failure."""


class TimeLimits(Generic[T]):
    """Calls in progress and their start times; `expire(now)` hands those past the limit to `on_expired`."""

    def __init__(self, limit_s: float, on_expired: Callable[[T, float, int], None]) -> None:
        """`on_expired(item, seconds it ran, abandoned calls now)` runs under the lock: keep it short."""
        self.limit_s = limit_s
        self._on_expired = on_expired
        self._lock = threading.Lock()
        self._running: dict[T, float] = {}
        self._abandoned: dict[T, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def begin(self, item: T, now: float) -> None:
        with self._lock:
            self._running[item] = now

    def end(self, item: T) -> bool:
        """The call returned: True if it did so in time, False if it had expired (ignore its outcome)."""
        with self._lock:
            if self._running.pop(item, None) is not None:
                return True
            self._abandoned.pop(item, None)
            return False

    def expire(self, now: float) -> list[T]:
        """Move every call past the limit to the abandoned set and hand it to `on_expired` (under the lock)."""
        with self._lock:
            late = [(item, start) for item, start in self._running.items() if now - start > self.limit_s]
            for item, start in late:
                del self._running[item]
                self._abandoned[item] = start
                self._on_expired(item, now - start, len(self._abandoned))
        return [item for item, _ in late]

    def abandoned(self) -> int:
        """Abandoned calls still running (their threads are still alive)."""
        with self._lock:
            return len(self._abandoned)

    def overdue(self, now: float) -> bool:
        """A call runs past its limit, expired or not yet noticed: what /livez reports."""
        with self._lock:
            return bool(self._abandoned) or any(now - s > self.limit_s for s in self._running.values())

    def start(self) -> None:
        """The watchdog: checks a few times per limit, at least every 100 ms."""
        interval = min(0.1, self.limit_s / 4)

        def watch() -> None:
            while not self._stop.wait(interval):
                self.expire(time.monotonic())

        self._stop.clear()
        self._thread = threading.Thread(target=watch, name="consumer-time-limits", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
            self._thread = None
