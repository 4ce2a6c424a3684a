"""The user-facing App: declare handlers per topic, run blocking (signals) or in the background (tests)."""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Literal

from consumers.handlers import Deserializer, Handler, HandlerFn, Hook, Middleware
from consumers.idempotency import IdempotencyStore, SQLiteStore, default_store_path
from consumers.kafka_config import scheduler_client_config
from consumers.retry import RetryPolicy
from consumers.runtime import Runtime
from consumers.scheduling import Scheduling
from consumers.settings import ConsumerSettings
from scheduler.client import SchedulerClient
from scheduler.config import ClientSettings
from scheduler.errors import ConfigError

__all__ = ["DEFAULT_STORE", "App", "Ordering"]

log = logging.getLogger(__name__)
BACKSTOP_S = 0.5  # after the shutdown deadline, a process that is still alive exits hard

Ordering = Literal["block-key", "relaxed"]


class _DefaultStore:
    """Sentinel: an SQLiteStore at `default_store_path` (KAFKA_SCHEDULER_STATE_DIR), opened when the app runs."""


DEFAULT_STORE = _DefaultStore()


class App:
    """A consumer group with handlers; per-key ordered, parallel across keys, idempotent, retrying via the scheduler."""

    def __init__(
        self,
        group_id: str,
        *,
        bootstrap_servers: str | None = None,
        concurrency: int = 64,
        idempotency: IdempotencyStore | _DefaultStore | None = DEFAULT_STORE,
        retry: RetryPolicy | None = None,
        ordering: Ordering = "block-key",
        settings: ConsumerSettings | None = None,
        scheduler: Scheduling | None = None,
    ) -> None:
        if ordering not in ("block-key", "relaxed"):
            raise ConfigError(f"ordering must be 'block-key' or 'relaxed', got {ordering!r}")
        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        if not group_id:
            raise ConfigError("group_id must not be empty")
        self.group_id = group_id
        self.concurrency = concurrency
        self.retry = retry if retry is not None else RetryPolicy()
        self.ordering: Ordering = ordering
        self.settings = settings if settings is not None else ConsumerSettings()
        if bootstrap_servers is not None:
            self.settings = self.settings.model_copy(update={"bootstrap_servers": bootstrap_servers})
        self.handlers: dict[str, Handler] = {}
        self.middlewares: list[Middleware] = []
        self.startup_hooks: list[Hook] = []
        self.shutdown_hooks: list[Hook] = []
        self._idempotency = idempotency
        self._store: IdempotencyStore | None = None
        self._scheduler = scheduler
        self._lock = threading.Lock()

    def handler(
        self, topic: str, *, deserializer: Deserializer | None = None, retry: RetryPolicy | None = None
    ) -> Callable[[HandlerFn], HandlerFn]:
        """Register `fn(message)` (plain or async) for `topic`; its retries arrive on the group's retry topic.

        `deserializer(value bytes or None)` fills `message.decoded` (raising dead-letters the record);
        `retry` replaces the App's policy for this topic.
        """

        def register(fn: HandlerFn) -> HandlerFn:
            if topic in self.handlers:
                raise ConfigError(f"topic {topic!r} already has a handler ({self.handlers[topic].fn!r})")
            self.handlers[topic] = Handler(topic, fn, deserializer, retry)
            return fn

        return register

    def middleware(self, fn: Middleware) -> Middleware:
        """Register `fn(message, call_next)` around every handler call (first registered = outermost)."""
        if inspect.iscoroutinefunction(fn):
            raise ConfigError(
                f"middleware {fn.__qualname__} is async: middleware runs on the worker thread, use def"
            )
        self.middlewares.append(fn)
        return fn

    def on_startup(self, fn: Hook) -> Hook:
        """Run `fn()` once the brokers are reached, before consuming (async: on the handlers' event loop)."""
        self.startup_hooks.append(fn)
        return fn

    def on_shutdown(self, fn: Hook) -> Hook:
        """Run `fn()` after the last handler returned or was abandoned; counts against shutdown_timeout_s."""
        self.shutdown_hooks.append(fn)
        return fn

    @property
    def bootstrap_servers(self) -> str:
        """`bootstrap_servers=`, else `settings.bootstrap_servers` (KAFKA_SCHEDULER_BOOTSTRAP_SERVERS)."""
        return self.settings.bootstrap_servers

    @property
    def scheduler(self) -> Scheduling:
        """The SchedulerClient (created on first use) for handlers that schedule follow-ups and for retries."""
        with self._lock:
            if self._scheduler is None:
                bootstrap, topic = self.settings.bootstrap_servers, self.settings.scheduled_topic
                self._scheduler = SchedulerClient(
                    bootstrap,
                    settings=ClientSettings(bootstrap_servers=bootstrap, scheduled_topic=topic),
                    config=scheduler_client_config(self.settings),
                )
            return self._scheduler

    @property
    def store(self) -> IdempotencyStore | None:
        with self._lock:
            if isinstance(self._idempotency, _DefaultStore):
                self._idempotency = SQLiteStore(default_store_path(self.group_id, self.settings.state_dir))
            self._store = self._idempotency
            return self._store

    def run(self, stop: threading.Event | None = None) -> None:
        """Consume until `stop` is set; without one, until SIGTERM or SIGINT (then drain and commit).

        Raises `ShutdownIncomplete` when work was still unfinished at the shutdown deadline. Driven by signals,
        the process exits hard (status 1) if shutdown overruns its deadline anyway; a second signal exits at once.
        """
        if not self.handlers:
            raise ConfigError("no handlers registered: decorate a function with @app.handler('topic')")
        if stop is not None:
            Runtime(self, stop).run()
            return
        stop = threading.Event()
        with _signals(stop, self.settings.shutdown_timeout_s):
            Runtime(self, stop).run()

    @contextlib.contextmanager
    def running(self, ready_timeout: float = 60.0) -> Iterator[threading.Event]:
        """Run in a background thread for the duration of the block; yields the stop event."""
        stop = threading.Event()
        failure: list[BaseException] = []

        def target() -> None:
            try:
                self.run(stop)
            except BaseException as exc:
                failure.append(exc)
                raise

        thread = threading.Thread(target=target, name=f"consumer-app-{self.group_id}", daemon=True)
        thread.start()
        try:
            yield stop
        finally:
            stop.set()
            thread.join(self.settings.shutdown_timeout_s + 30)
        if failure:
            raise failure[0]


@contextlib.contextmanager
def _signals(stop: threading.Event, timeout_s: float) -> Iterator[None]:
    """SIGTERM/SIGINT set `stop` and arm a backstop past the deadline; afterwards disarmed, old handlers back."""
    armed: list[threading.Timer] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.error("%s again: exiting now, unfinished work runs again after a restart", name)
            os._exit(1)
        log.info("%s: draining, at most shutdown_timeout_s=%g", name, timeout_s)
        stop.set()
        backstop = threading.Timer(timeout_s + BACKSTOP_S, _overdue)
        backstop.daemon = True
        backstop.start()
        armed.append(backstop)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for timer in armed:
            timer.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _overdue() -> None:
    log.error("shutdown overran its deadline (a close that did not return); exiting now")
    logging.shutdown()
    os._exit(1)
