"""The commit protocol of one tick, as its own object; numbered steps mirrored in `run`.

1. begin the transaction
2. produce the fires (payloads to their target topics)
3. produce state writes (puts, tombstones), rejects and dead letters, each state record to its input partition
4. send the input offsets with the consumer's group metadata taken right now (a fenced zombie cannot commit)
5. commit; a retriable error or timeout retries the same call, never switching to abort (KAFKA-17754)
On an abortable error: abort (retrying the abort the same way) and report ABORTED; the caller rewinds.
On a fatal error, or a commit that never resolves: KafkaFatalError; the process must exit (fail closed).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from scheduler.errors import KafkaFatalError
from scheduler.failpoints import failpoint
from scheduler.kafka.clients import kafka_error
from scheduler.model import HEADER_SCHEDULE_ID
from scheduler.records import OutRecord

__all__ = ["FENCING", "UNDELIVERABLE", "Outcome", "TransactionRunner"]

log = logging.getLogger(__name__)
# Delivery errors that say the target itself refuses the record (deleted, ACL revoked, too large): only these count
# toward a dead letter. Anything else (timeouts, a broker down, leader moves) is retried forever: a cluster outage
# must never dead-letter deliverable schedules (G6, G7).
UNDELIVERABLE = {
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.TOPIC_EXCEPTION,
    KafkaError.POLICY_VIOLATION,
}

# Errors that say a newer producer epoch or group generation exists: this instance is a zombie (KIP-447).
FENCING = {
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.FENCED_INSTANCE_ID,
}
# init_transactions: this many calls of this long before one patient call of the runner's timeout (docstring).
INIT_STEPS, INIT_STEP_S = 20, 0.05


class Outcome(enum.Enum):
    COMMITTED = "committed"
    ABORTED = "aborted"
    # aborted because the group moved on (stale generation): the caller rewinds as for ABORTED
    FENCED = "fenced"


class _Abort(Exception):
    """Internal: the transaction must be aborted."""


class TransactionRunner:
    """Runs one transaction at a time on a transactional producer bound to the group consumer."""

    def __init__(
        self, producer: Producer, consumer: Consumer, timeout_s: float = 30.0, retries: int = 10
    ) -> None:
        self._producer = producer
        self._consumer = consumer
        self._timeout = timeout_s
        self._retries = retries
        self.failed_topics: dict[str, str] = {}  # target topic -> delivery error of the last attempt
        self.failed_ids: set[bytes] = set()  # schedule ids whose fire the target refused in the last attempt
        # (topic, key, value) of the fires whose delivery report said the target refuses them
        self._refused_fires: set[tuple[str, bytes | None, bytes | None]] = set()
        self.last_error: KafkaError | None = None  # the error that ended the last attempt, if any
        self._committing = False
        self._commit_retried = False
        self.prepared_in_s = 0.0  # begin -> offsets sent, of the last transaction that got that far
        self._init_thread: threading.Thread | None = None
        self._init_error: BaseException | None = None

    def start_init(self) -> None:
        """Begin `init` on a thread of its own, so it overlaps the start-up checks; `init` then waits for it."""
        self._init_thread = threading.Thread(
            target=self._init_in_background, name="init-transactions", daemon=True
        )
        self._init_thread.start()

    def _init_in_background(self) -> None:
        try:
            self._init()
        except BaseException as exc:  # re-raised by init() on the loop's thread
            self._init_error = exc

    def init(self) -> None:
        """Fences any earlier producer with the same transactional.id and aborts its open transaction."""
        if self._init_thread is None:
            self._init()
            return
        self._init_thread.join()
        self._init_thread = None
        if self._init_error is not None:
            raise self._init_error

    def _init(self) -> None:
        """Asked in short steps first: each call restarts librdkafka's producer-id request at once, where one that
        found no coordinator connection yet otherwise waits for its 500 ms retry timer (a quarter of fresh
        starts met it: init 505 ms instead of 5-55 ms). A call that times out is resumed by the next.
        """
        for _ in range(INIT_STEPS):
            try:
                self._producer.init_transactions(INIT_STEP_S)
                return
            except KafkaException as exc:
                err = kafka_error(exc)
                if err is None or err.code() != KafkaError._TIMED_OUT:
                    break  # classified by the patient call below, as any other error
        self._call("init_transactions", lambda: self._producer.init_transactions(self._timeout))

    def run(
        self,
        fires: Sequence[OutRecord],
        others: Sequence[OutRecord],
        offsets: list[TopicPartition],
        hold: Callable[[], bool] | None = None,
        stamp: int = 0,
    ) -> Outcome:
        """`hold`, called between the offsets and the commit, returns False to abort instead of committing (prepared
        fires wait there for their due time); `stamp`, if set, is every fire's record timestamp (CreateTime)."""
        self.failed_topics = {}
        self.failed_ids = set()
        self._refused_fires = set()
        self.last_error = None
        self._committing = False
        self._commit_retried = False
        try:
            self._producer.begin_transaction()  # 1
            begun = time.monotonic()
            failpoint("after_begin")
            self._produce_all(fires, self._on_fire_delivery, stamp)  # 2
            failpoint("after_fire_produce")
            self._produce_all(others, None)  # 3
            failpoint("after_tombstone_produce")
            metadata = self._consumer.consumer_group_metadata()  # 4: fresh, never cached
            self._producer.send_offsets_to_transaction(offsets, metadata, self._timeout)
            failpoint("after_send_offsets")
            self.prepared_in_s = time.monotonic() - begun
            if hold is not None and not hold():
                log.warning(
                    "the clock went back while prepared fires waited for their due time: aborting them"
                )
                raise _Abort
            failpoint("before_commit")
            self._committing = True
            self._call("commit_transaction", lambda: self._producer.commit_transaction(self._timeout))  # 5
            return Outcome.COMMITTED
        except _Abort:
            pass
        except KafkaException as exc:
            self._classify(exc, "transaction")
        self._committing = False  # the commit was refused: whatever happens next, nothing of it is visible
        self._attribute(fires)
        cause = self.last_error
        try:
            self._call("abort_transaction", lambda: self._producer.abort_transaction(self._timeout))
        except _Abort as exc:
            raise KafkaFatalError(f"abort_transaction failed: {exc.__cause__}") from exc
        self.last_error = cause
        return Outcome.FENCED if self._fenced() else Outcome.ABORTED

    def failure(self) -> str:
        """After `run` raised KafkaFatalError: `fenced`, `indeterminate` (the commit may have happened) or
        `failed`. A fence after a commit attempt timed out is indeterminate: the first EndTxn may have reached the
        coordinator, which then completes it when the newer producer initializes."""
        if self._committing and self._commit_retried:
            return "indeterminate"
        if self._fenced():
            return "fenced"
        return "indeterminate" if self._committing else "failed"

    def _fenced(self) -> bool:
        return self.last_error is not None and self.last_error.code() in FENCING

    def _refused(self, record: OutRecord, err: KafkaError) -> None:
        """The target refuses this fire: it counts toward its schedule's dead letter, not its neighbours'."""
        self.failed_topics.setdefault(record.topic, err.str())
        self.failed_ids.update(v for k, v in record.headers if k == HEADER_SCHEDULE_ID and v is not None)

    def _on_fire_delivery(self, err: KafkaError | None, msg: Any) -> None:
        """One callback for every fire (no closure per record; with delivery.report.only.error, called for
        failures only). A delivery report carries no headers, so the refused record is noted by topic, key and
        value and matched to its fire after the transaction (`_attribute`)."""
        if err is not None and err.code() in UNDELIVERABLE:
            topic = msg.topic()
            self.failed_topics.setdefault(topic, err.str())
            self._refused_fires.add((topic, msg.key(), msg.value()))

    def _attribute(self, fires: Sequence[OutRecord]) -> None:
        """The schedule ids of the fires the target refused (records equal in topic, key and value fail alike:
        a deleted or forbidden topic, a record too large)."""
        refused = self._refused_fires
        if refused:
            for record in fires:
                if (record.topic, record.key, record.value) in refused:
                    self.failed_ids.update(
                        v for k, v in record.headers if k == HEADER_SCHEDULE_ID and v is not None
                    )

    def _produce_all(
        self, records: Sequence[OutRecord], on_delivery: Callable[..., None] | None, stamp: int = 0
    ) -> None:
        """Positional arguments (confluent-kafka's order: topic, value, key, partition, on_delivery, callback,
        timestamp, headers) and no per-record objects: this loop runs once per record of a tick."""
        produce: Callable[..., None] = self._producer.produce
        for record in records:
            topic, key, value, headers, partition = record
            try:
                produce(
                    topic,
                    value,
                    key,
                    -1 if partition is None else partition,
                    on_delivery,
                    None,
                    stamp,
                    headers,
                )
            except (BufferError, KafkaException):
                self._produce(record, on_delivery, stamp)

    def _produce(self, record: OutRecord, on_delivery: Callable[..., None] | None, stamp: int = 0) -> None:
        """One record, waiting out a full local queue; a record refused locally (too large for message.max.bytes,
        unknown topic) counts, for a fire, toward its schedule's dead letter."""
        topic, key, value, headers, partition = record
        while True:
            try:
                self._producer.produce(
                    topic,
                    value,
                    key,
                    -1 if partition is None else partition,
                    on_delivery,
                    None,
                    stamp,
                    cast("list[tuple[str, str | bytes | None]]", headers),
                )
                return
            except BufferError:
                self._producer.poll(0.05)  # the local queue is full: let deliveries drain
            except KafkaException as exc:
                err = kafka_error(exc)
                if on_delivery is None or err is None or err.code() not in UNDELIVERABLE:
                    raise
                self._refused(record, err)
                raise _Abort from exc

    def _call(self, what: str, call: Callable[[], object]) -> None:
        """Retry a resumable call on retriable errors and timeouts; abortable -> _Abort; else fatal."""
        for attempt in range(self._retries):
            try:
                call()
                return
            except KafkaException as exc:
                if not self._classify(exc, what):
                    raise _Abort from exc
                self._commit_retried = self._commit_retried or what == "commit_transaction"
                log.warning("%s: retriable error (attempt %d): %s", what, attempt + 1, exc)
        raise KafkaFatalError(
            f"{what} did not complete after {self._retries} attempts; exiting (fail closed)"
        )

    def _classify(self, exc: KafkaException, what: str) -> bool:
        """True: retry the same call. False: abort. Raises on fatal."""
        err = kafka_error(exc)
        self.last_error = err
        if err is None or err.fatal():
            raise KafkaFatalError(f"{what}: fatal Kafka error: {exc}") from exc
        if err.txn_requires_abort():
            log.warning("%s: aborting the transaction: %s", what, err.str())
            return False
        if err.retriable() or err.code() == KafkaError._TIMED_OUT:
            return True
        raise KafkaFatalError(f"{what}: unexpected Kafka error: {exc}") from exc
