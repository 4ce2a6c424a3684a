"""Key-ordered execution: one record per key at a time, in arrival order; different keys in parallel.

Design: `concurrency` worker threads share a FIFO of *ready keys*. A key is either idle (no queue), ready (queued
once in the FIFO) or running (held by exactly one worker), never two at once, so per-key order needs no other lock.
Async handlers run on one shared asyncio loop (see `AsyncRunner`); the worker waits for its coroutine, so the
thread count is the single concurrency limit for both kinds. A worker stuck in a call that cannot be interrupted
can be abandoned (`abandon`): a new worker replaces it and its key moves on.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

from consumers.timeouts import HandlerTimeout

__all__ = ["AsyncRunner", "KeyOrderedExecutor"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class KeyOrderedExecutor(Generic[T]):
    """Runs `run(item)` for each submitted item; items of one key strictly in submission order."""

    def __init__(self, run: Callable[[T], None], concurrency: int, name: str = "consumer") -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self._run = run
        self._cond = threading.Condition()
        self._queues: dict[Hashable, deque[T]] = {}
        self._ready: deque[Hashable] = deque()
        self._running: dict[int, tuple[Hashable, T]] = {}
        self._stopping = False
        self._name = name
        self._indexes = itertools.count()
        self._threads: dict[int, threading.Thread] = {}
        self._abandoned: set[int] = set()
        with self._cond:
            for _ in range(concurrency):
                self._spawn()

    def _spawn(self) -> None:
        """A new worker thread (call with the lock held)."""
        index = next(self._indexes)
        thread = threading.Thread(
            target=self._work, args=(index,), name=f"{self._name}-worker-{index}", daemon=True
        )
        self._threads[index] = thread
        thread.start()

    def submit(self, key: Hashable, item: T) -> int:
        """Queue `item` behind earlier items of `key`; returns that key's queue length (for backpressure)."""
        with self._cond:
            queue = self._queues.get(key)
            if queue is None:
                self._queues[key] = queue = deque()
                self._ready.append(key)
                self._cond.notify()
            queue.append(item)
            return len(queue)

    def push_front(self, key: Hashable, items: list[T]) -> None:
        """Put `items` (in order) ahead of everything queued for `key`; call only from the worker running `key`."""
        with self._cond:
            queue = self._queues.setdefault(key, deque())
            queue.extendleft(reversed(items))

    def _work(self, index: int) -> None:
        while True:
            with self._cond:
                while not self._ready and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                key = self._ready.popleft()
                item = self._queues[key].popleft()
                self._running[index] = (key, item)
            try:
                self._run(item)
            except (
                Exception
            ):  # a worker must survive; the item stays unfinished, so its offset is not committed
                log.exception("unexpected error outside the handler; the record will re-run after a restart")
            finally:
                replaced = self._release(index, key)
            if replaced:
                return

    def _release(self, index: int, key: Hashable) -> bool:
        """The worker is done with `key`; True if it was abandoned meanwhile (its key moved on without it)."""
        with self._cond:
            if index in self._abandoned:
                self._abandoned.discard(index)
                return True
            del self._running[index]
            if self._queues.get(key):
                self._ready.append(key)
            else:
                self._queues.pop(key, None)
            self._cond.notify_all()
            return False

    def abandon(self, item: T, successor: T) -> bool:
        """Leave the worker running `item` behind: a new worker replaces it, `successor` runs next for its key.

        For a call that cannot be interrupted (a sync handler past its time limit). False if `item` is not running.
        """
        with self._cond:
            index = next((i for i, (_, running) in self._running.items() if running is item), None)
            if index is None:
                return False
            key, _ = self._running.pop(index)
            self._abandoned.add(index)
            del self._threads[index]
            self._queues.setdefault(key, deque()).appendleft(successor)
            self._ready.append(key)
            if not self._stopping:
                self._spawn()
            self._cond.notify_all()
            return True

    def drop(self, predicate: Callable[[T], bool]) -> list[T]:
        """Remove queued (not running) items matching `predicate`, e.g. those of revoked partitions."""
        dropped: list[T] = []
        with self._cond:
            for key in list(self._queues):
                queue = self._queues[key]
                kept = deque(x for x in queue if not predicate(x))
                dropped.extend(x for x in queue if predicate(x))
                self._queues[key] = kept
                if not kept and key in self._ready:
                    self._ready.remove(key)
                    del self._queues[key]
        return dropped

    def wait_idle(self, predicate: Callable[[T], bool], timeout: float) -> bool:
        """Wait until no queued or running item matches `predicate`; False on timeout."""

        def busy() -> bool:
            running = any(predicate(item) for _, item in self._running.values())
            return running or any(predicate(x) for q in self._queues.values() for x in q)

        with self._cond:
            return self._cond.wait_for(lambda: not busy(), timeout=timeout)

    def queue_len(self, key: Hashable) -> int:
        with self._cond:
            queue = self._queues.get(key)
            return 0 if queue is None else len(queue)

    def running(self) -> list[T]:
        with self._cond:
            return [item for _, item in self._running.values()]

    def queued(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def queued_items(self) -> list[T]:
        with self._cond:
            return [x for q in self._queues.values() for x in q]

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking work (queued items are left); waits up to `timeout` in all for running items to finish."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            threads = list(self._threads.values())
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class AsyncRunner:
    """One event loop on its own thread for every async handler; `run` blocks the calling worker until done."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def run(self, coro: Coroutine[Any, Any, R], timeout: float | None = None) -> R:
        """The coroutine's result; past `timeout` seconds it is cancelled and `HandlerTimeout` raised.

        The coroutine runs in a copy of the caller's contextvars (tracing context set by middleware carries over).
        """
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure())
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.done():  # the coroutine's own TimeoutError
                raise
            future.cancel()
            raise HandlerTimeout(
                f"the async handler ran longer than {timeout:.3g}s and was cancelled"
            ) from None

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=loop.run_forever, name="consumer-asyncio", daemon=True)
                self._thread.start()
                self._loop = loop
            return self._loop

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop; a loop still busy after `timeout` (a handler blocking it) is left to die with the process."""
        with self._lock:
            if self._loop is not None and self._thread is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout)
                if not self._thread.is_alive():
                    self._loop.close()
                self._loop = None
