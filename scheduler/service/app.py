"""Builds the running scheduler from settings: clients, start-up checks, HTTP, signals, the loop."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry

from scheduler.errors import ClusterUnreachable, KafkaFatalError
from scheduler.http import HealthState, HttpServer, serve
from scheduler.kafka.clients import (
    build_admin,
    build_consumer,
    build_producer,
    build_state_reader,
    create,
    producer_config,
)
from scheduler.kafka.reach import BrokerProbe, check_reachable
from scheduler.kafka.txn import TransactionRunner
from scheduler.metrics import SchedulerMetrics
from scheduler.service.fence import DepartedFencer
from scheduler.service.loop import SchedulerLoop
from scheduler.service.partitions import Partitions, Phase
from scheduler.service.routing import Layout
from scheduler.service.targets import TargetCatalog
from scheduler.service.txnlog import TransactionLog
from scheduler.settings import ServiceSettings
from scheduler.topics import TopicCheck, require_valid

__all__ = ["SchedulerService"]

log = logging.getLogger(__name__)
WARM_UP_STEP_S = 0.2


def close_quietly(what: str, close: Callable[[], object]) -> None:
    """Run a shutdown step; log its failure instead of raising it over the error that ended the loop."""
    try:
        close()
    except Exception as exc:
        log.warning("%s: %s: %s", what, type(exc).__name__, exc)


class SchedulerService:
    """One scheduler instance: `run()` blocks until `stop()` or SIGTERM, then leaves the group and returns."""

    def __init__(self, settings: ServiceSettings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = SchedulerMetrics(self.registry)
        self.health = HealthState(liveness_timeout_s=max(30.0, settings.max_wait_ms / 1000 * 10))
        self.stopping = threading.Event()
        self.http: HttpServer | None = None
        self.loop: SchedulerLoop | None = None
        self.on_http_port: Callable[[int], None] | None = None  # a worker tells its unit where it serves

    def install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: FrameType | None) -> None:
            log.info("received signal %d: draining", signum)
            self.stop()

        faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps every thread's stack to stderr
        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def stop(self) -> None:
        """Stop fetching after the current tick; exit within the shutdown deadline or be killed."""
        if self.stopping.is_set():
            return
        self.health.start_draining()
        self.stopping.set()
        timer = threading.Timer(self.settings.shutdown_timeout_s, _overdue_exit)
        timer.daemon = True
        timer.start()

    def run(self) -> None:
        settings = self.settings
        # librdkafka clients connect as they are built: built first, their connections (and TLS, SASL) overlap the
        # topic checks; none joins the group or writes anything until the checks have passed
        consumer = build_consumer(settings)
        reader = build_state_reader(settings)
        producer = build_producer(settings)
        end_warm_up = _warm_up(
            [
                (reader, settings.state),
                (producer, settings.scheduled_topic),
                (consumer, settings.scheduled_topic),
            ]
        )
        txn = TransactionRunner(producer, consumer)
        # While the topics are checked: fence the previous incarnation of this id and abort its open transaction,
        # which the coordinator answers with CONCURRENT_TRANSACTIONS and librdkafka retries 500 ms later (B8).
        txn.start_init()
        try:
            admin, check = self._check_topics()
        except BaseException:
            end_warm_up()  # never close a client another thread is still asking
            for client in (consumer, reader):
                close_quietly("closing a consumer", client.close)
            raise
        for warning in check.problems:
            log.warning("topic check: %s", warning)
        partitions = Partitions(
            consumer,
            reader,
            admin,
            self._layout(check.partitions),
            self.metrics,
            settings.rebuild_stall_timeout_s,
            admin_factory=lambda: build_admin(settings),
        )
        fencer = self._fencer()
        if fencer is not None:
            partitions.on_assigned = fencer.assigned
            fencer.start()
        txn_log = self._transaction_log()
        self.loop = SchedulerLoop(
            settings,
            (consumer, txn, partitions, TargetCatalog(admin, settings)),
            self.metrics,
            self.health.tick,
            txn_log=txn_log,
        )
        self.health.set_ready_check("joined_group", lambda: partitions.joined)
        self.health.set_ready_check(
            "partitions_rebuilt",
            lambda: all(o.phase is Phase.SERVING for o in list(partitions.owned.values())),
        )
        # With every broker down the group and its (possibly zero) partitions look unchanged: ask the cluster.
        probe = BrokerProbe(build_admin(settings), settings.scheduled_topic)
        self.health.set_ready_check("brokers_reachable", probe.reachable)
        self._start_http()
        probe.start()
        self.health.mark_started()
        try:
            self.loop.run(self.stopping)
        finally:
            probe.stop()
            if fencer is not None:
                fencer.close()
            if txn_log is not None:
                txn_log.close()
            end_warm_up()
            # a failure here must not mask the one that ended the loop
            for client in (consumer, reader):
                close_quietly("closing a consumer", client.close)
            # A fenced producer's flush raises KafkaException; one whose delivery callbacks ran into an exception
            # already set (seen in chaos after _FENCED) raises SystemError from inside confluent-kafka.
            close_quietly("flushing the producer", lambda: producer.flush(5))
            if self.http is not None:
                self.http.stop()
        log.info("scheduler stopped cleanly")

    def _transaction_log(self) -> TransactionLog | None:
        settings = self.settings
        if settings.txn_log is None:
            return None
        log.info("logging every transaction to %s", settings.txn_log)
        return TransactionLog(
            settings.txn_log,
            settings.instance_id,
            state_topic=settings.state,
            dlt_topic=settings.dlt,
            history_topic=settings.history_topic,
        )

    def _fencer(self) -> DepartedFencer | None:
        settings = self.settings
        if not settings.fence_departed:
            return None
        base = producer_config(settings)
        return DepartedFencer(
            (settings.scheduled_topic, settings.state),
            settings.group_id,
            settings.transactional_id,
            lambda: build_admin(settings),
            lambda transactional_id: create(Producer, {**base, "transactional.id": transactional_id}),
            self.metrics,
        )

    def _layout(self, count: int) -> Layout:
        """Ids are routed by the partition count of `scheduled` (equal to the state topic's: checked at start)."""
        topic = self.settings.scheduled_topic
        log.info("schedule ids live in partition murmur2(id) %% %d of %s", count, topic)
        return Layout(topic, self.settings.state, count)

    def _start_http(self) -> None:
        if self.settings.http_port is None:
            return
        host, port = self.settings.http_host, self.settings.http_port
        self.http = serve(self.registry, self.health, host, port)
        log.info("metrics and health on http://%s:%d", self.settings.http_host, self.http.port)
        if self.on_http_port is not None:
            self.on_http_port(self.http.port)

    def _check_topics(self) -> tuple[AdminClient, TopicCheck]:
        """The admin client and what the topic checks found (warnings, the partition count); an unreachable
        cluster, bad credentials or a failed TLS handshake end here, within KAFKA_SCHEDULER_REQUEST_TIMEOUT_S,
        with a message that names what to check."""
        try:
            admin = check_reachable(self.settings)
            return admin, require_valid(admin, self.settings)
        except ClusterUnreachable as exc:
            raise KafkaFatalError(str(exc)) from None
        except KafkaException as exc:
            raise KafkaFatalError(
                f"cannot check the scheduler's topics at {self.settings.bootstrap_servers}: {exc}"
            ) from None


def _warm_up(clients: list[tuple[Consumer | Producer, str]]) -> Callable[[], None]:
    """One metadata answer per client, on a thread, while the topics are checked; returns what ends it (within
    WARM_UP_STEP_S). The state reader then knows the state partitions' leaders when a rebuild assigns them
    (librdkafka retries an offset lookup without a leader after 500 ms: a small state took 0.5-1 s to replay
    instead of 60 ms), and the producer and the group consumer have a connection to a broker when
    init_transactions and the join need one. Failures are the checks' to report."""
    stop = threading.Event()

    def run() -> None:
        for client, topic in clients:
            while not stop.is_set():
                try:
                    client.list_topics(topic, timeout=WARM_UP_STEP_S)
                    break
                except KafkaException:
                    continue

    thread = threading.Thread(target=run, name="warm-up", daemon=True)
    thread.start()

    def end() -> None:
        stop.set()
        thread.join()

    return end


def _overdue_exit() -> None:
    log.error("shutdown took longer than the deadline; exiting now")
    os._exit(1)
