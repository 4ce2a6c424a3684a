"""The poll loop of a running App: fetch, dispatch, backpressure, commit, rebalance, drain.

Commit protocol (every `commit_interval_s`, on revoke, on shutdown):
1. For each owned partition take the tracker's committable offset (lowest unfinished, else highest + 1).
2. A record counts as finished only after its effect is durable: handler returned and marked done, or its retry
   schedule / dead letter / blocked marker was flushed to the broker.
3. Commit those offsets synchronously; a failed commit is retried at the next interval (records re-run are
   skipped by the idempotency store).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING

from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

from consumers import kafka_config, kafka_io
from consumers.blocking import BlockedKeys
from consumers.executor import KeyOrderedExecutor
from consumers.handlers import Hook, run_hook
from consumers.headers import RawHeaders
from consumers.idempotency import IdempotencyStore
from consumers.message import RawRecord
from consumers.metrics import ConsumerMetrics
from consumers.offsets import OffsetTracker
from consumers.processor import Processor, Sinks, Work
from consumers.shutdown import Deadline, ShutdownIncomplete, report_abandoned
from scheduler.errors import KafkaFatalError
from scheduler.http import HealthState, HttpServer

if TYPE_CHECKING:
    from consumers.app import App

__all__ = ["Runtime"]

log = logging.getLogger(__name__)
TP = tuple[str, int]
WAITING_NOTE_S = 5.0
PARTITION_BY_KEY = -1  # librdkafka's RD_KAFKA_PARTITION_UA: the partitioner chooses


class Runtime:
    """One run of an App; built fresh by App.run so a stopped app can run again."""

    def __init__(self, app: App, stop: threading.Event) -> None:
        self.app, self.stop, self.settings, self.group = app, stop, app.settings, app.group_id
        self.registry = self.settings.registry or CollectorRegistry()
        self.metrics = ConsumerMetrics(self.registry)
        self.health = HealthState(self.settings.liveness_timeout_s)
        self.source_of = {t: t for t in app.handlers} | {
            self.settings.retry_for(t, self.group): t for t in app.handlers
        }
        self.admin = kafka_config.connect_admin(self.settings)  # or one line naming the unreachable address
        self.producer = kafka_config.new_producer(self.settings)
        self.blocked: BlockedKeys[Work] | None = (
            BlockedKeys(self._write_marker) if app.ordering == "block-key" else None
        )
        sinks = Sinks(
            lambda: app.scheduler,
            self._dead_letter,
            self._finish,
            self._requeue_front,
            self._abandon,
            self._report_done,
        )
        chain = tuple(app.middlewares)
        handlers = {t: dataclasses.replace(h, middleware=chain) for t, h in app.handlers.items()}
        self.processor = Processor(
            self.group, handlers, app.retry, app.store, self.blocked, sinks, self.settings, self.metrics
        )
        self.executor: KeyOrderedExecutor[Work] = KeyOrderedExecutor(
            self.processor.process, app.concurrency, name=self.group
        )
        self.lock = threading.Lock()
        self.trackers: dict[TP, OffsetTracker] = {}
        self.timestamps: dict[TP, dict[int, float]] = {}
        self.committed: dict[TP, int] = {}
        self.paused: dict[TP, Work | None] = {}
        self.assigned_once = False
        self.closing: Deadline | None = None  # from the start of shutdown: close()'s revoke waits no more
        self._nulls = itertools.count()

    # -- sinks called from workers -------------------------------------------------------------------------
    def _write_marker(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        blocked = self.settings.blocked_for(topic, self.group)
        kafka_io.produce_sync(self.producer, blocked, partition, key, value, ())

    def _dead_letter(
        self, topic: str, partition: int, key: bytes | None, value: bytes | None, h: RawHeaders
    ) -> None:
        kafka_io.produce_sync(self.producer, topic, partition, key, value, h)

    def _report_done(self, schedule_id: bytes, h: RawHeaders) -> None:
        """A done command on `scheduled`, in the id's partition (the producer's murmur2 partitioner)."""
        kafka_io.produce_sync(
            self.producer, self.settings.scheduled_topic, PARTITION_BY_KEY, schedule_id, b"", h
        )

    def _finish(self, work: Work) -> None:
        tp = (work.raw.topic, work.raw.partition)
        with self.lock:
            tracker = self.trackers.get(tp)
            if tracker is not None:
                tracker.finish(work.raw.offset)
                self.timestamps[tp].pop(work.raw.offset, None)

    def _requeue_front(self, work: Work, parked: list[Work]) -> None:
        self.executor.push_front(work.ref, parked)

    def _abandon(self, work: Work, successor: Work) -> bool:
        return self.executor.abandon(work, successor)

    # -- the loop -------------------------------------------------------------------------------------------
    def run(self) -> None:
        self._prepare()
        stats = self.metrics.stats_callback(self.group)
        consumer = kafka_config.new_consumer(self.settings, self.group, stats)
        http = self._start_http()
        self.processor.limits.start()
        try:
            consumer.subscribe(
                sorted(self.source_of),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            self.health.mark_started()
            self._loop(consumer)
        finally:
            abandoned = self._shutdown(consumer, http)
        if abandoned:
            raise ShutdownIncomplete(
                f"{abandoned} record(s) unfinished at the shutdown deadline (shutdown_timeout_s="
                f"{self.settings.shutdown_timeout_s:g}), named in the log; they run again after a restart"
            )
        log.info("stopped cleanly: every fetched record finished and committed")

    def _prepare(self) -> None:
        """Derived topics checked or created, startup hooks run; the start line says what will run."""
        for topic in self.app.handlers:
            derived = {
                self.settings.retry_for(topic, self.group): False,
                self.settings.dlt_for(topic, self.group): False,
            }
            if self.blocked is not None:
                derived[self.settings.blocked_for(topic, self.group)] = True
            kafka_io.ensure_topics(self.admin, topic, derived, self.settings.create_topics)
        log.info(
            "consumer group %s on %s: handlers for %s, concurrency %d, ordering %s, idempotency %s, "
            "handler time limit %gs, shutdown within %gs",
            self.group,
            self.settings.bootstrap_servers,
            ", ".join(sorted(self.app.handlers)),
            self.app.concurrency,
            self.app.ordering,
            _describe(self.app.store),
            self.settings.handler_timeout_s,
            self.settings.shutdown_timeout_s,
        )
        try:
            self._run_hooks(self.app.startup_hooks, None)  # a failing startup hook stops the start
        except Exception:
            self.processor.runner.stop()
            raise

    def _loop(self, consumer: Consumer) -> None:
        subscribed = last_commit = time.monotonic()
        waiting_noted = False
        while not self.stop.is_set():
            self.health.tick()
            self._poll(consumer)
            self._backpressure(consumer)
            now = time.monotonic()
            if now - last_commit >= self.settings.commit_interval_s:
                self._commit(consumer, None)
                last_commit = time.monotonic()
            if not waiting_noted and not self.assigned_once and now - subscribed > WAITING_NOTE_S:
                waiting_noted = True
                log.info(
                    "no partitions assigned after %gs: the group is rebalancing; a member that died without "
                    "leaving keeps its partitions until its session times out (session.timeout.ms=%s)",
                    WAITING_NOTE_S,
                    kafka_config.consumer_config(self.settings, self.group)["session.timeout.ms"],
                )
            self._gauges()

    def _poll(self, consumer: Consumer) -> None:
        for msg in consumer.consume(self.settings.poll_batch, 0.1):
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaFatalError(
                        f"fatal consumer error: {err.str()}; the consumer must be recreated"
                    )
                log.warning("consumer error: %s", err)
                continue
            self._dispatch(kafka_io.to_raw(msg), consumer)

    def _dispatch(self, raw: RawRecord, consumer: Consumer) -> None:
        tp = (raw.topic, raw.partition)
        source = self.source_of[raw.topic]
        key = raw.key if raw.key is not None else next(self._nulls)
        work = Work(raw, source, (source, raw.partition, key))
        with self.lock:
            tracker = self.trackers.setdefault(tp, OffsetTracker())
            tracker.add(raw.offset)
            self.timestamps.setdefault(tp, {})[raw.offset] = (raw.timestamp_ms or 0) / 1000
        queued = self.executor.submit(work.ref, work)
        if queued > self.settings.max_queued_per_key and tp not in self.paused:
            consumer.pause([TopicPartition(*tp)])
            self.paused[tp] = work

    def _backpressure(self, consumer: Consumer) -> None:
        limit = self.settings.max_pending_per_partition
        with self.lock:
            pending = {tp: t.pending() for tp, t in self.trackers.items()}
        for tp, count in pending.items():
            if count > limit and tp not in self.paused:
                consumer.pause([TopicPartition(*tp)])
                self.paused[tp] = None
        for tp, hot in list(self.paused.items()):
            key_ok = hot is None or self.executor.queue_len(hot.ref) <= self.settings.max_queued_per_key // 2
            if pending.get(tp, 0) <= limit // 2 and key_ok:
                consumer.resume([TopicPartition(*tp)])
                del self.paused[tp]

    def _commit(self, consumer: Consumer, only: set[TP] | None) -> None:
        offsets: list[TopicPartition] = []
        with self.lock:
            for tp, tracker in self.trackers.items():
                offset = tracker.committable()
                if (only is None or tp in only) and offset is not None and self.committed.get(tp) != offset:
                    offsets.append(TopicPartition(tp[0], tp[1], offset))
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("offset commit failed, retrying at the next interval: %s", exc)
            return
        with self.lock:
            self.committed.update({(o.topic, o.partition): o.offset for o in offsets})

    # -- rebalance ------------------------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalance(self.group, "assigned")
        self.assigned_once = True
        log.info("assigned %s", _partitions(partitions))
        for tp in partitions:
            if self.blocked is not None and tp.topic in self.app.handlers:
                topic = self.settings.blocked_for(tp.topic, self.group)
                conf = kafka_config.reader_config(self.settings)
                markers = kafka_io.read_markers(conf, topic, tp.partition)
                self.blocked.load(tp.topic, tp.partition, markers)
                if markers:
                    log.info(
                        "%d key(s) of %s[%d] still wait for a retry", len(markers), tp.topic, tp.partition
                    )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalance(self.group, "revoked")
        log.info("revoked %s", _partitions(partitions))
        self._release(consumer, {(tp.topic, tp.partition) for tp in partitions}, commit=True)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalance(self.group, "lost")
        log.warning("lost %s (session timed out): their offsets are not committed", _partitions(partitions))
        self._release(consumer, {(tp.topic, tp.partition) for tp in partitions}, commit=False)

    def _release(self, consumer: Consumer, parts: set[TP], commit: bool) -> None:
        """Drop queued work of `parts`, wait (bounded) for what runs, commit, forget their state."""

        def owned(w: Work) -> bool:
            return (w.raw.topic, w.raw.partition) in parts

        self.executor.drop(owned)
        if self.closing is None and not self.executor.wait_idle(owned, self.settings.revoke_timeout_s):
            log.warning(
                "revoke: in-flight work of %s still running after %gs",
                sorted(parts),
                self.settings.revoke_timeout_s,
            )
        if commit:
            self._commit(consumer, parts)
        with self.lock:
            for tp in parts:
                self.trackers.pop(tp, None)
                self.timestamps.pop(tp, None)
                self.committed.pop(tp, None)
                self.paused.pop(tp, None)
        if self.blocked is not None:
            self.blocked.forget(parts)

    # -- health, metrics, shutdown ----------------------------------------------------------------------------
    def _start_http(self) -> HttpServer | None:
        limits = self.processor.limits
        self.health.set_live_check("no_stuck_handler", lambda: not limits.overdue(time.monotonic()))
        if self.settings.metrics_port is None:
            return None
        http = HttpServer(self.registry, self.health, self.settings.metrics_host, self.settings.metrics_port)
        http.start()
        log.info("metrics and health on http://%s:%d", self.settings.metrics_host, http.port)
        return http

    def _run_hooks(self, hooks: list[Hook], deadline: Deadline | None) -> None:
        """Startup hooks raise; shutdown hooks are logged and the next one runs (async ones within the deadline)."""
        for hook in hooks:
            try:
                run_hook(
                    hook, lambda coro: self.processor.runner.run(coro, deadline.left() if deadline else None)
                )
            except Exception:
                if deadline is None:
                    raise
                log.exception("shutdown hook %s failed", getattr(hook, "__qualname__", hook))

    def _gauges(self) -> None:
        now_wall, now = time.time(), time.monotonic()
        with self.lock:
            pending = sum(t.pending() for t in self.trackers.values())
            lag = {tp: now_wall - min(ts.values()) if ts else 0.0 for tp, ts in self.timestamps.items()}
        self.metrics.in_flight.labels(self.group).set(pending)
        self.metrics.keys_blocked.labels(self.group).set(self.blocked.count() if self.blocked else 0)
        self.metrics.abandoned_threads.labels(self.group).set(self.processor.limits.abandoned())
        starts = [w.started for w in self.executor.running() if w.started is not None]
        self.metrics.oldest_in_flight_seconds.labels(self.group).set(now - min(starts) if starts else 0.0)
        for (topic, partition), seconds in lag.items():
            self.metrics.lag_seconds.labels(self.group, topic, str(partition)).set(max(0.0, seconds))

    def _shutdown(self, consumer: Consumer, http: HttpServer | None) -> int:
        """Within shutdown_timeout_s in all; returns how many records were abandoned.

        1. readiness 503, stop fetching 2. let queued and running work finish until the drain deadline
        3. name what is left, stop taking work 4. commit 5. close the consumer (its revoke waits no more)
        6. stop workers, the async loop and the producer with whatever time is left.
        """
        deadline = self.closing = Deadline.after(self.settings.shutdown_timeout_s)
        self.health.start_draining()
        try:
            consumer.pause(consumer.assignment())
        except KafkaException as exc:
            log.warning("could not pause on shutdown: %s", exc)
        abandoned = 0
        if not self.executor.wait_idle(lambda _w: True, deadline.left(deadline.drain_until)):
            queued = self.executor.drop(lambda _w: True)
            abandoned = report_abandoned(self.executor.running(), queued, self.settings.shutdown_timeout_s)
        self.processor.limits.stop()  # time limits apply while draining, not to what was just abandoned
        self.processor.stopping.set()
        self._commit(consumer, None)
        consumer.close()
        # abandoned handlers will not return in time: do not wait for their threads
        self.executor.stop(0.0 if abandoned else deadline.left())
        self._run_hooks(self.app.shutdown_hooks, deadline)
        self.processor.runner.stop(0.0 if abandoned else deadline.left())
        self.producer.flush(deadline.left())
        if http is not None:
            http.stop()
        return abandoned


def _partitions(partitions: list[TopicPartition]) -> str:
    """`orders[0,1], orders.g.retry[0,1]`."""
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return (
        ", ".join(f"{t}[{','.join(map(str, sorted(p)))}]" for t, p in sorted(by_topic.items())) or "nothing"
    )


def _describe(store: IdempotencyStore | None) -> str:
    if store is None:
        return "off"
    path = getattr(store, "path", None)
    return f"{type(store).__name__}({path})" if path is not None else type(store).__name__
