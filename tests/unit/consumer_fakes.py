"""Fakes for the per-record pipeline: a scheduler that fires retries as the real one does, sinks that record."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from consumers import InMemoryStore, Message, NonRetryable, RetryPolicy
from consumers.blocking import BlockedKeys
from consumers.executor import KeyOrderedExecutor
from consumers.handlers import Handler
from consumers.headers import RawHeaders
from consumers.idempotency import IdempotencyStore
from consumers.message import RawRecord
from consumers.metrics import ConsumerMetrics
from consumers.processor import Processor, Sinks, Work
from consumers.settings import ConsumerSettings

HandlerFn = Callable[[Message], Any]


class FakeScheduler:
    """Records schedules; `fire(i)` builds the record the scheduler would put on the target topic."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[str, dict[str, Any]]] = []

    def schedule(self, schedule_id: str, **kwargs: Any) -> None:
        self.scheduled.append((schedule_id, kwargs))

    def cancel(self, schedule_id: str) -> None:
        pass

    def flush(self, timeout: float = 30.0) -> int:
        return 0

    def fire(self, index: int, offset: int, fired_at_ms: int = 1_700_000_100_000) -> RawRecord:
        """The scheduler replaces every scheduler-* header with the retry schedule's own (conventions.md)."""
        schedule_id, kwargs = self.scheduled[index]
        own = (
            ("scheduler-schedule-id", schedule_id.encode()),
            ("scheduler-fire-id", f"{schedule_id}@{index}".encode()),
            ("scheduler-due-at", str(fired_at_ms).encode()),
            ("scheduler-fired-at", str(fired_at_ms).encode()),
        )
        headers = tuple((k, v.encode() if isinstance(v, str) else v) for k, v in kwargs["headers"])
        return RawRecord(
            kwargs["topic"],
            kwargs["partition"],
            offset,
            kwargs["key"],
            kwargs["value"],
            headers + own,
            fired_at_ms,
        )


def fail_first_attempt(fail: set[bytes]) -> Callable[[Harness], HandlerFn]:
    """The default handler: values in `fail` fail once (poison* non-retryably), the rest are recorded."""

    def make(h: Harness) -> HandlerFn:
        def handle(message: Message) -> None:
            assert message.value is not None
            if message.value in fail and message.attempt == 1:
                raise NonRetryable("poison") if message.value.startswith(b"poison") else RuntimeError("flaky")
            h.handled.append(message.value)

        return handle

    return make


class Harness:
    def __init__(
        self,
        fail: set[bytes] | None = None,
        ordering: str = "block-key",
        dlt_fails: bool = False,
        handler: Callable[[Harness], HandlerFn] | None = None,
        policy: RetryPolicy | None = None,
        store: IdempotencyStore | None = None,
        settings: ConsumerSettings | None = None,
        route: Mapping[str, Any] | None = None,
    ) -> None:
        """`route`: more fields of the topic's Handler (`retry=`, `middleware=`)."""
        self.scheduler = FakeScheduler()
        self.markers: list[tuple[bytes, bytes | None]] = []
        self.dead: list[tuple[str, int, bytes | None, RawHeaders]] = []
        self.done: list[tuple[bytes, RawHeaders]] = []  # done reports to the scheduler's commands topic
        self.done_fails = 0  # the next this many done reports fail (the broker is unreachable)
        self.finished: list[int] = []
        self.requeued: list[Work] = []
        self.handled: list[bytes] = []
        self.seen: list[Message] = []
        self.dlt_fails = dlt_fails
        self.registry = CollectorRegistry()
        self.store = store if store is not None else InMemoryStore()
        fn = (handler or fail_first_attempt(fail or set()))(self)

        sinks = Sinks(
            lambda: self.scheduler,  # type: ignore[arg-type,return-value]
            self._dead_letter,
            self._finish,
            self._requeue,
            self._abandon,
            self._done,
        )
        blocked = (
            BlockedKeys[Work](lambda t, p, k, v: self.markers.append((k, v)))
            if ordering == "block-key"
            else None
        )
        self.processor = Processor(
            "g",
            {"orders": Handler("orders", fn, **(route or {}))},
            policy or RetryPolicy(max_attempts=3),
            self.store,
            blocked,
            sinks,
            settings or ConsumerSettings(),
            ConsumerMetrics(self.registry),
        )
        self.executor: KeyOrderedExecutor[Work] | None = None

    def _dead_letter(
        self, topic: str, partition: int, key: bytes | None, value: bytes | None, h: RawHeaders
    ) -> None:
        if self.dlt_fails:
            self.processor.stopping.set()  # let the durable-write loop give up after one try
            raise RuntimeError("broker unreachable")
        self.dead.append((topic, partition, value, h))

    def _done(self, schedule_id: bytes, h: RawHeaders) -> None:
        if self.done_fails:
            self.done_fails -= 1
            raise RuntimeError("broker unreachable")
        self.done.append((schedule_id, h))

    def _finish(self, work: Work) -> None:
        self.finished.append(work.raw.offset)

    def _requeue(self, work: Work, parked: list[Work]) -> None:
        self.requeued.extend(parked)

    def _abandon(self, work: Work, successor: Work) -> bool:
        return self.executor is not None and self.executor.abandon(work, successor)

    def start_executor(self, concurrency: int = 2) -> KeyOrderedExecutor[Work]:
        """Run records on a real executor with the time-limit watchdog, as the runtime does."""
        self.executor = KeyOrderedExecutor(self.processor.process, concurrency, name="test")
        self.processor.limits.start()
        return self.executor

    def stop_executor(self) -> None:
        self.processor.limits.stop()
        if self.executor is not None:
            self.executor.stop(1.0)
        self.processor.runner.stop()

    def submit(self, raw: RawRecord) -> Work:
        assert self.executor is not None
        key = raw.key if raw.key is not None else -1
        work = Work(raw, "orders", ("orders", raw.partition, key))
        self.executor.submit(work.ref, work)
        return work

    def run(self, topic: str, offset: int, key: bytes, value: bytes, headers: RawHeaders = ()) -> Work:
        return self.run_raw(RawRecord(topic, 0, offset, key, value, headers, 1_000))

    def run_raw(self, raw: RawRecord) -> Work:
        key = raw.key if raw.key is not None else -1
        work = Work(raw, "orders", ("orders", raw.partition, key))
        self.processor.process(work)
        return work

    def count(self, outcome: str) -> float:
        labels = {"group": "g", "topic": "orders", "outcome": outcome}
        return self.registry.get_sample_value("kafka_scheduler_consumer_messages_total", labels) or 0.0
