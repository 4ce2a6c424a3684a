"""What happens to one record, from dispatch to a finished offset: dedupe, handle, retry, dead-letter, unblock."""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from consumers.blocking import BlockedKeys, KeyRef
from consumers.executor import AsyncRunner
from consumers.handlers import DeserializationError, Handler
from consumers.headers import (
    Failure,
    RawHeaders,
    dlt_headers,
    done_report,
    idempotency_key,
    retry_headers,
)
from consumers.idempotency import AlreadyDone, IdempotencyStore, SQLiteStore
from consumers.message import Context, Inbox, Message, RawRecord, build_message
from consumers.metrics import ConsumerMetrics
from consumers.retry import DltReason, Retry, RetryPolicy
from consumers.scheduling import Scheduling
from consumers.settings import ConsumerSettings
from consumers.timeouts import HandlerTimeout, TimeLimits

__all__ = ["Processor", "Sinks", "Work"]

log = logging.getLogger(__name__)
DeadLetterWriter = Callable[[str, int, bytes | None, bytes | None, RawHeaders], None]
DoneWriter = Callable[[bytes, RawHeaders], None]  # (schedule id, headers) to the scheduler's commands topic


@dataclass(eq=False, slots=True)
class Work:
    """One fetched record on its way through the executor; `ref` is the ordering key."""

    raw: RawRecord
    source_topic: str
    ref: tuple[str, int, bytes | int]
    started: float | None = field(default=None)
    timed_out: bool = False  # the successor of a call abandoned past its time limit: only fail it

    @property
    def is_retry(self) -> bool:
        return self.raw.topic != self.source_topic


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a failure leads to: another attempt after `delay_s` (reason None) or a dead letter for `reason`."""

    reason: DltReason | None
    delay_s: float
    max_attempts: int


@dataclass(frozen=True)
class Sinks:
    """Where the processor's outputs go; all synchronous (flushed) because offsets are finished after them."""

    scheduler: Callable[[], Scheduling]
    dead_letter: DeadLetterWriter
    finish: Callable[[Work], None]
    requeue_front: Callable[[Work, list[Work]], None]
    abandon: Callable[[Work, Work], bool]  # leave the worker running the first behind; the second runs next
    done: DoneWriter  # a record carrying scheduler-await-done reached its final outcome


class Processor:
    """Runs on executor workers; per-key calls are serial, calls for different keys concurrent."""

    def __init__(
        self,
        group: str,
        handlers: Mapping[str, Handler],
        policy: RetryPolicy,
        store: IdempotencyStore | None,
        blocked: BlockedKeys[Work] | None,
        sinks: Sinks,
        settings: ConsumerSettings,
        metrics: ConsumerMetrics,
    ) -> None:
        self.group, self.handlers, self.policy, self.store = group, handlers, policy, store
        self.blocked, self.sinks, self.settings, self.metrics = blocked, sinks, settings, metrics
        self.context = Context(group, sinks.scheduler)
        self.runner = AsyncRunner()
        self.stopping = threading.Event()
        self.limits: TimeLimits[Work] = TimeLimits(settings.handler_timeout_s, self._expired)
        self._rng = random.Random()

    def process(self, work: Work) -> None:
        msg = build_message(work.raw, work.source_topic, self.context)
        key = idempotency_key(msg.headers, msg.origin, self.group)
        if work.timed_out:
            limit = self.settings.handler_timeout_s
            self._failed(
                work, msg, key, HandlerTimeout(f"the handler ran longer than {limit:g}s (abandoned)")
            )
            return
        ref = key_ref(work)
        if (
            self.blocked is not None
            and ref is not None
            and not work.is_retry
            and self.blocked.is_blocked(ref)
        ):
            self.blocked.park(ref, work)
            return
        if self.store is not None and not self.store.claim(key):
            self._done(work, msg, "duplicate_skipped")
            return
        inbox = None
        if isinstance(
            self.store, SQLiteStore
        ):  # message.context.transaction() commits the mark with the effect
            inbox = Inbox(self.store, key)
            msg = dataclasses.replace(msg, context=dataclasses.replace(self.context, _inbox=inbox))
        work.started = time.monotonic()
        self.limits.begin(work, work.started)
        error = self._handle(work, msg)
        if not self.limits.end(work):  # abandoned past its time limit: its successor took the record over
            log.info("an abandoned handler call returned; its outcome is ignored", extra=work.raw.fields())
            return
        work.started = None
        if isinstance(error, AlreadyDone):  # a concurrent or earlier delivery committed it meanwhile
            self._done(work, msg, "duplicate_skipped")
        elif error is None:
            if self.store is not None and (inbox is None or not inbox.committed):
                self.store.mark_done(key)  # returns once durable: only then may the offset move past it
            self._done(work, msg, "success")
        else:
            self._failed(work, msg, key, error)

    def _done(self, work: Work, msg: Message, outcome: str) -> None:
        self._count(msg, outcome)
        self._resolve(work, msg)
        if self._report_done(msg, outcome):
            self.sinks.finish(work)

    def _failed(self, work: Work, msg: Message, key: str, error: BaseException) -> None:
        """Decide once (retry with which delay, or which dead-letter reason), log it, then write it durably."""
        if self.store is not None:
            self.store.release(key)
        verdict = self._verdict(work, msg, error)
        _log_failure(work, msg, error, verdict, self.settings.dlt_for(msg.topic, self.group))
        if not self._durably(msg, lambda: self._fail(work, msg, key, error, verdict)):
            return
        if verdict.reason is None or self._report_done(msg, "dead_lettered"):
            self.sinks.finish(work)

    def _report_done(self, msg: Message, outcome: str) -> bool:
        """Tell the scheduler an awaited occurrence finished, before the offset may move past the record.

        On every final outcome, a duplicate included: the first run may have marked the record done and died
        before its report landed, and a report too many is ignored by the scheduler (it matches the fire id).
        False (offset stays uncommitted, the record reruns and reports then) when stopping before it landed.
        """
        report = done_report(msg.headers)
        if report is None:
            return True
        if not self._durably(msg, lambda: self.sinks.done(*report), "done report"):
            return False
        self.metrics.done_reports.labels(self.group, msg.topic, outcome).inc()
        return True

    def _verdict(self, work: Work, msg: Message, exc: BaseException) -> Verdict:
        policy = (self.handlers[work.source_topic].retry or self.policy).for_exception(exc)
        if isinstance(exc, DeserializationError):
            return Verdict(DltReason.DESERIALIZATION_ERROR, 0.0, policy.max_attempts)
        reason = policy.decide(exc, msg.attempt)
        delay = policy.delay(msg.attempt, self._rng, exc) if reason is None else 0.0
        return Verdict(reason, delay, policy.max_attempts)

    def _expired(self, work: Work, elapsed: float, abandoned: int) -> None:
        """Called by the watchdog (under its lock) for a call past its limit: abandon its worker, fail the record."""
        if not self.sinks.abandon(work, dataclasses.replace(work, started=None, timed_out=True)):
            return
        self.metrics.handler_timeouts.labels(self.group, work.source_topic).inc()
        log.error(
            "a handler ran %.1fs, past handler_timeout_s=%g: its thread is abandoned (%d now), the record goes on "
            "to its retry or dead letter",
            elapsed,
            self.limits.limit_s,
            abandoned,
            extra=work.raw.fields(),
        )

    def _handle(self, work: Work, msg: Message) -> BaseException | None:
        handler = self.handlers[work.source_topic]
        begin = time.perf_counter()
        try:
            if handler.deserializer is not None:
                try:
                    decoded = handler.deserializer(msg.value)
                except Exception as exc:
                    raise DeserializationError(f"{type(exc).__name__}: {exc}") from exc
                msg = dataclasses.replace(msg, decoded=decoded)
            handler.invoke(msg, lambda coro: self.runner.run(coro, self._time_left(work)))
        except Exception as exc:
            return exc
        finally:
            self.metrics.handler_seconds.labels(self.group, msg.topic).observe(time.perf_counter() - begin)
        return None

    def _time_left(self, work: Work) -> float:
        started = work.started if work.started is not None else time.monotonic()
        return max(0.0, self.limits.limit_s - (time.monotonic() - started))

    def _fail(self, work: Work, msg: Message, key: str, exc: BaseException, verdict: Verdict) -> None:
        """Retry through the scheduler, or dead-letter; raises if the write did not reach the broker."""
        reason = verdict.reason
        if reason is None:
            self._schedule_retry(work, msg, key, verdict.delay_s)
            ref = key_ref(work)
            if self.blocked is not None and ref is not None:
                self.blocked.block(ref, msg.offset)
            self._count(msg, "retry_scheduled")
            return
        if isinstance(exc, (DeserializationError, Retry)):
            exc = exc.__cause__ or exc  # the user's class, not a framework wrapper
        failure = Failure(reason, exc, self.group, msg.attempt, int(time.time() * 1000))
        headers = dlt_headers(msg.headers, msg.origin, failure)
        dlt = self.settings.dlt_for(msg.topic, self.group)
        self.sinks.dead_letter(dlt, msg.partition, msg.key, msg.value, headers)
        self._count(msg, "dead_lettered")
        self._resolve(work, msg)

    def _schedule_retry(self, work: Work, msg: Message, key: str, delay_s: float) -> None:
        nxt = msg.attempt + 1
        origin = msg.origin
        scheduler = self.sinks.scheduler()
        scheduler.schedule(
            f"consumer-retry:{self.group}:{origin.topic}:{origin.partition}:{origin.offset}:{nxt}",
            topic=self.settings.retry_for(work.source_topic, self.group),
            value=msg.value,
            key=msg.key,
            headers=list(retry_headers(msg.headers, origin, nxt, key.removeprefix(f"{self.group}|"))),
            delay=timedelta(seconds=delay_s),
            partition=msg.partition,
        )
        remaining = scheduler.flush(30.0)
        if remaining:
            raise TimeoutError(f"retry schedule for {origin} not confirmed by the broker within 30s")

    def _resolve(self, work: Work, msg: Message) -> None:
        """A retry chain ended (success, duplicate or dead letter): unblock the key, release its parked records."""
        ref = key_ref(work)
        if self.blocked is None or not work.is_retry or ref is None:
            return
        parked = self.blocked.unblock(ref, msg.offset)
        if parked:
            self.sinks.requeue_front(work, parked)

    def _durably(self, msg: Message, write: Callable[[], None], what: str = "retry or dead letter") -> bool:
        """Retry a write until it lands; False (offset stays uncommitted) when stopping."""
        delay = 0.5
        while True:
            try:
                write()
                return True
            except Exception:
                log.exception("could not write the %s; the offset stays uncommitted", what)
                self._count(msg, "failed")
                if self.stopping.wait(delay):
                    return False
                delay = min(delay * 2, 30.0)

    def _count(self, msg: Message, outcome: str) -> None:
        self.metrics.outcome(self.group, msg.topic, outcome)


def _log_failure(work: Work, msg: Message, exc: BaseException, verdict: Verdict, dlt: str) -> None:
    """One line per failed attempt: where, which attempt, what follows, and the traceback."""
    fields = {**work.raw.fields(), "attempt": msg.attempt}
    if verdict.reason is None:
        log.warning(
            "handler failed (attempt %d of %d), retry in %.3gs: %s: %s",
            msg.attempt,
            verdict.max_attempts,
            verdict.delay_s,
            type(exc).__name__,
            exc,
            exc_info=exc,
            extra=fields,
        )
    else:
        log.error(
            "handler failed (attempt %d of %d), dead-lettered to %s (%s): %s: %s",
            msg.attempt,
            verdict.max_attempts,
            dlt,
            verdict.reason.value,
            type(exc).__name__,
            exc,
            exc_info=exc,
            extra=fields,
        )


def key_ref(work: Work) -> KeyRef | None:
    """The block-key identity of a keyed record; None for null keys (unordered, never blocked)."""
    topic, partition, key = work.ref
    return (topic, partition, key) if isinstance(key, bytes) else None
