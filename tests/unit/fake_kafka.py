"""An in-memory Kafka with transactions, read_committed, control markers and group generations.

Duck-typed to exactly what `scheduler.service.loop`, `.partitions` and `scheduler.kafka.txn` call. Never blocks:
timeouts are ignored and the test owns the clock (`cluster.now_ms`). What it models, because the core relies on it:
- a log per (topic, partition); a transactional record is pending until its transaction commits or aborts, and
  each transaction end writes one control marker per partition it touched (markers take offsets, so the end offset
  is not "last record + 1"); read_committed readers stop at the first pending record (the LSO), skip aborted
  records and markers;
- a consumer group whose generation the test bumps with `cluster.rebalance`; each member learns of it (revoke or
  lost, then assign callbacks, and its new generation) at the start of its next `consume()`, as librdkafka does
  inside poll; `defer_callbacks` makes a member a zombie for one consume;
- `committed()` fails with a timeout while a pending transaction holds offsets for the partition (KIP-447
  require_stable), and a commit whose group metadata is from an older generation, or whose member no longer owns
  an offset's partition, fails with an abortable ILLEGAL_GENERATION;
- transactional ids with epochs: `init_transactions` aborts the previous producer's open transaction and fences it
  (its next call raises a fatal error);
- opt-in blocking (`FakeConsumer.blocking`): `consume(n, timeout)` then behaves as librdkafka's, returning once n
  messages are there or the timeout passed, and the simulated clock advances while it waits, running the
  arrivals the test scheduled with `cluster.at(ms, fn)` on the way.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from scheduler.model import Rejected, RejectReason, Schedule
from scheduler.partitioner import partition_for

OFFSET_BEGINNING = -2
OFFSET_INVALID = -1001


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp: int
    txn: Txn | None = None
    status: str = "committed"  # committed | pending | aborted | marker
    committed_at: int | None = None  # the simulated clock when its transaction committed


class Msg:
    """What consume() returns: a read-only view of a Rec with confluent_kafka.Message's method names."""

    def __init__(self, rec: Rec) -> None:
        self._r = rec

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._r.topic

    def partition(self) -> int:
        return self._r.partition

    def offset(self) -> int:
        return self._r.offset

    def key(self) -> bytes | None:
        return self._r.key

    def value(self) -> bytes | None:
        return self._r.value

    def headers(self) -> list[tuple[str, bytes | None]]:
        return list(self._r.headers)

    def timestamp(self) -> tuple[int, int]:
        return (1, self._r.timestamp)


@dataclass
class Txn:
    producer: FakeProducer
    records: list[Rec] = field(default_factory=list)
    offsets: list[tuple[TopicPartition, Any]] = field(default_factory=list)  # (tp, group metadata)


@dataclass(frozen=True)
class GroupMetadata:
    member: str
    generation: int


class FakeCluster:
    def __init__(self, topics: dict[str, int], now_ms: int = 1_700_000_000_000) -> None:
        self.logs = {(t, p): [] for t, n in topics.items() for p in range(n)}  # type: ignore[var-annotated]
        self.partitions = dict(topics)
        self.now_ms = now_ms
        self.generation = 0
        self.owner: dict[tuple[str, int], str] = {}  # (topic, partition) -> member id
        self.members: dict[str, FakeConsumer] = {}
        self.group_offsets: dict[tuple[str, int], int] = {}
        self.epochs: dict[str, int] = {}
        self.open_txns: dict[str, Txn] = {}  # transactional.id -> the current epoch's open transaction
        self.stats = {"commits": 0, "aborts": 0, "fenced": 0, "rejected_commits": 0, "unstable_offsets": 0}
        self._member_ids = itertools.count(1)
        self.arrivals: list[
            tuple[int, int, Callable[[], object]]
        ] = []  # (at ms, order, action), for blocking

    def at(self, ms: int, action: Callable[[], object]) -> None:
        """Run `action` (produce a command, say) when the simulated clock reaches `ms` in a blocking consume."""
        self.arrivals.append((ms, len(self.arrivals), action))
        self.arrivals.sort(key=lambda a: (a[0], a[1]))

    def next_arrival(self, until_ms: int) -> bool:
        """Advance the clock to the next arrival at or before `until_ms` and run it; False if there is none."""
        if not self.arrivals or self.arrivals[0][0] > until_ms:
            return False
        ms, _order, action = self.arrivals.pop(0)
        self.now_ms = max(self.now_ms, ms)
        action()
        return True

    # -- logs
    def advance(self, seconds: float) -> None:
        """Time passes (an injected sleep): at least one millisecond, so a wait always ends."""
        self.now_ms += max(1, math.ceil(seconds * 1000))

    def log(self, topic: str, partition: int) -> list[Rec]:
        return self.logs[(topic, partition)]

    def append(self, topic: str, partition: int, key: bytes | None, value: bytes | None, **kw: Any) -> Rec:
        log = self.logs[(topic, partition)]
        timestamp = kw.pop("timestamp", None)
        headers = list(kw.pop("headers", None) or [])
        rec = Rec(topic, partition, len(log), key, value, headers, timestamp or self.now_ms, **kw)
        log.append(rec)
        return rec

    def end_offset(self, topic: str, partition: int) -> int:
        return len(self.logs[(topic, partition)])  # the high watermark, pending records and markers included

    def visible(self, topic: str) -> list[Rec]:
        """Every read_committed-visible record of `topic`, partition by partition."""
        return [r for (t, _p), log in self.logs.items() if t == topic for r in log if r.status == "committed"]

    def produce_plain(
        self, topic: str, key: bytes, value: bytes | None, headers: Any = None, partition: int | None = None
    ) -> Rec:
        """A non-transactional client command, keyed like Java/murmur2 producers unless `partition` is given
        (another partitioner, or an explicit partition)."""
        if partition is None:
            partition = partition_for(key, self.partitions[topic])
        return self.append(topic, partition, key, value, headers=headers)

    # -- transactions
    def end_txn(self, txn: Txn, commit: bool) -> None:
        touched = set()
        for rec in txn.records:
            rec.status = "committed" if commit else "aborted"
            rec.committed_at = self.now_ms if commit else None
            touched.add((rec.topic, rec.partition))
        for topic, partition in sorted(touched):
            self.append(topic, partition, None, None, status="marker")
        if commit:
            for tp, _meta in txn.offsets:
                self.group_offsets[(tp.topic, tp.partition)] = tp.offset
        self.stats["commits" if commit else "aborts"] += 1
        self.open_txns.pop(txn.producer.transactional_id, None)

    def pending_offsets(self, topic: str, partition: int) -> bool:
        return any(
            (tp.topic, tp.partition) == (topic, partition)
            for t in self.open_txns.values()
            for tp, _ in t.offsets
        )

    # -- group
    def join(self, consumer: FakeConsumer, name: str) -> str:
        member = f"{name}#{next(self._member_ids)}"
        self.members[member] = consumer
        return member

    def leave(self, member: str) -> None:
        self.members.pop(member, None)

    def rebalance(self, assignment: dict[str, list[int]], topic: str, lost: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        """New generation: each member in the group learns its revoked and new partitions on its next consume."""
        self.generation += 1
        new_owner = {(topic, p): m for m, parts in assignment.items() for p in parts}
        for member, consumer in self.members.items():
            before = {tp for tp, m in self.owner.items() if m == member}
            after = {tp for tp, m in new_owner.items() if m == member}
            consumer.events.append(
                (self.generation, sorted(before - after), sorted(after - before), member in lost)
            )
        self.owner = new_owner


class FakeConsumer:
    """A group member (`name` given) or, without a group, the state reader (assign/consume/position only)."""

    def __init__(self, cluster: FakeCluster, name: str | None = None) -> None:
        self.cluster = cluster
        self.member = cluster.join(self, name) if name is not None else ""
        self.generation = 0
        self.events: list[tuple[int, list[tuple[str, int]], list[tuple[str, int]], bool]] = []
        self.defer_callbacks = False
        self.assigned: dict[tuple[str, int], int] = {}  # -> position (OFFSET_INVALID: fetch from committed)
        self.paused: set[tuple[str, int]] = set()
        self.callbacks: dict[str, Callable[..., None]] = {}
        self.closed = False
        self.blocking = False  # True: consume waits (in simulated time) as librdkafka's does

    def subscribe(
        self, topics: list[str], on_assign: Any = None, on_revoke: Any = None, on_lost: Any = None
    ) -> None:
        self.callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}

    def _deliver(self) -> None:
        if self.defer_callbacks:
            self.defer_callbacks = False
            return
        while self.events:
            generation, revoked, assigned, lost = self.events.pop(0)
            if revoked:
                self.callbacks["lost" if lost else "revoke"](self, [TopicPartition(t, p) for t, p in revoked])
                self.incremental_unassign([TopicPartition(t, p) for t, p in revoked])  # the client does it
            self.generation = generation
            if assigned:
                tps = [TopicPartition(t, p) for t, p in assigned]
                self.callbacks["assign"](self, tps)
                missing = [tp for tp in tps if (tp.topic, tp.partition) not in self.assigned]
                if missing:
                    self.incremental_assign(missing)

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Msg]:
        assert not self.closed, "consume on a closed consumer"
        if self.callbacks:
            self._deliver()
        out: list[Msg] = []
        self._collect(num_messages, out)
        if self.blocking and timeout > 0:
            deadline = self.cluster.now_ms + int(timeout * 1000)
            while len(out) < num_messages and self.cluster.next_arrival(deadline):
                self._collect(num_messages, out)
            if len(out) < num_messages:
                self.cluster.now_ms = max(self.cluster.now_ms, deadline)
        return out

    def _collect(self, num_messages: int, out: list[Msg]) -> None:
        for key in sorted(self.assigned):
            if key in self.paused:
                continue
            if self.assigned[key] < 0:
                committed = self.cluster.group_offsets.get(key)
                self.assigned[key] = committed if committed is not None else 0
            for rec in self.cluster.log(*key)[self.assigned[key] :]:
                if rec.status == "pending" or len(out) >= num_messages:
                    break  # the LSO: read_committed stops at the first open transaction
                self.assigned[key] = rec.offset + 1
                if rec.status == "committed":
                    out.append(Msg(rec))

    def poll(self, timeout: float = -1) -> Msg | None:
        """One record, as consume(1) (never blocks: the fake's time is its cluster's)."""
        out = self.consume(1, timeout)
        return out[0] if out else None

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        for tp in partitions:
            if self.cluster.pending_offsets(tp.topic, tp.partition):
                self.cluster.stats["unstable_offsets"] += 1
                raise KafkaException(
                    KafkaError(KafkaError._TIMED_OUT, "unstable offset commit", retriable=True)
                )
        return [
            TopicPartition(
                tp.topic,
                tp.partition,
                self.cluster.group_offsets.get((tp.topic, tp.partition), OFFSET_INVALID),
            )
            for tp in partitions
        ]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(
                tp.topic, tp.partition, self.assigned.get((tp.topic, tp.partition), OFFSET_INVALID)
            )
            for tp in partitions
        ]

    def seek(self, tp: TopicPartition) -> None:
        key = (tp.topic, tp.partition)
        assert key in self.assigned, f"seek on unassigned {key}"
        assert tp.offset >= 0, f"seek to an invalid offset {tp.offset}"
        self.assigned[key] = tp.offset

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused.update((tp.topic, tp.partition) for tp in partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused.difference_update((tp.topic, tp.partition) for tp in partitions)

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            # OFFSET_BEGINNING is the log start: 0, nothing is compacted here
            offset = 0 if tp.offset == OFFSET_BEGINNING else tp.offset
            self.assigned[(tp.topic, tp.partition)] = offset if offset >= 0 else OFFSET_INVALID

    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.assigned.pop((tp.topic, tp.partition), None)
            self.paused.discard((tp.topic, tp.partition))

    def get_watermark_offsets(
        self, tp: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]:
        return 0, self.cluster.end_offset(tp.topic, tp.partition)

    def consumer_group_metadata(self) -> GroupMetadata:
        return GroupMetadata(self.member, self.generation)

    def close(self) -> None:
        self.closed = True
        self.cluster.leave(self.member)


class _Offset:
    def __init__(self, offset: int) -> None:
        self.offset = offset

    def result(self, timeout: float | None = None) -> _Offset:
        return self


_EARLIEST = type(OffsetSpec.earliest())  # type: ignore[no-untyped-call]


class FakeAdmin:
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    def list_offsets(self, specs: dict[TopicPartition, Any], **_kw: Any) -> dict[TopicPartition, _Offset]:
        """Latest (read_uncommitted) or, for OffsetSpec.earliest(), the log start: 0, nothing is compacted here."""
        return {
            tp: _Offset(0 if isinstance(spec, _EARLIEST) else self.cluster.end_offset(tp.topic, tp.partition))
            for tp, spec in specs.items()
        }


def _error(code: int, reason: str, **kw: bool) -> KafkaException:
    return KafkaException(KafkaError(code, reason, **kw))


class FakeProducer:
    def __init__(self, cluster: FakeCluster, transactional_id: str) -> None:
        self.cluster = cluster
        self.transactional_id = transactional_id
        self.epoch = -1
        self.txn: Txn | None = None

    def _check(self) -> None:
        if self.epoch != self.cluster.epochs.get(self.transactional_id):
            self.cluster.stats["fenced"] += 1
            raise _error(KafkaError._FENCED, "producer fenced by a newer instance", fatal=True)

    def init_transactions(self, timeout: float = -1) -> None:
        old = self.cluster.open_txns.get(self.transactional_id)
        if old is not None:
            self.cluster.end_txn(old, commit=False)  # the coordinator aborts the previous epoch's transaction
        self.epoch = self.cluster.epochs[self.transactional_id] = (
            self.cluster.epochs.get(self.transactional_id, -1) + 1
        )

    def begin_transaction(self) -> None:
        self._check()
        assert self.txn is None, "begin_transaction while a transaction is open"
        self.txn = self.cluster.open_txns[self.transactional_id] = Txn(self)

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int = -1,
                on_delivery: Any = None, callback: Any = None, timestamp: int = 0,
                headers: Any = None) -> None:  # fmt: skip  # confluent-kafka's positional order
        self._check()
        assert self.txn is not None, "produce outside a transaction"
        if partition < 0:
            partition = partition_for(key, self.cluster.partitions[topic]) if key else 0
        rec = self.cluster.append(
            topic, partition, key, value, headers=headers, txn=self.txn, status="pending", timestamp=timestamp
        )
        self.txn.records.append(rec)

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], metadata: GroupMetadata, timeout: float = -1
    ) -> None:
        self._check()
        assert self.txn is not None, "send_offsets outside a transaction"
        for tp in offsets:
            assert tp.offset >= 0, f"rule 1: invalid offset {tp} is silently ignored by librdkafka"
        self.txn.offsets.extend((tp, metadata) for tp in offsets)

    def commit_transaction(self, timeout: float = -1) -> None:
        self._check()
        txn, self.txn = self.txn, None
        assert txn is not None, "commit without a transaction"
        cluster = self.cluster
        for tp, meta in txn.offsets:
            owner = cluster.owner.get((tp.topic, tp.partition))
            if meta.generation != cluster.generation or owner != meta.member:
                self.txn = txn  # still open: the caller must abort it
                cluster.stats["rejected_commits"] += 1
                raise _error(
                    KafkaError.ILLEGAL_GENERATION, f"stale generation {meta}", txn_requires_abort=True
                )
        cluster.end_txn(txn, commit=True)

    def abort_transaction(self, timeout: float = -1) -> None:
        self._check()
        txn, self.txn = self.txn, None
        if txn is not None:
            self.cluster.end_txn(txn, commit=False)

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = -1) -> int:
        return 0


@dataclass(frozen=True)
class _Info:
    exists: bool


class FakeTargets:
    """TargetCatalog's surface: known topics exist; anything else is rejected at intake."""

    def __init__(self, known: set[str]) -> None:
        self.known = known

    def validate(self, schedule: Schedule, state_size: int) -> Rejected | None:
        if schedule.target_topic in self.known:
            return None
        return Rejected(RejectReason.UNKNOWN_TARGET_TOPIC, f"{schedule.target_topic} unknown", schedule.id)

    def info(self, topic: str, max_age_s: float | None = None) -> _Info:
        return _Info(topic in self.known)

    def prepares(self, topic: str) -> bool:
        return topic in self.known

    def limit(self, topic: str) -> int:
        return 1_000_000 - 512
