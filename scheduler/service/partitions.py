"""Owned partitions and their rebuild, stepped from the poll loop so a long replay never breaks max.poll.interval.

Rebuild of input partition p (guarantees.md rule 2), in this order:
1. the committed offset of `scheduled`/p from the read_committed group consumer; it waits while a previous
   owner's transaction is unresolved, and a timeout is retried, never taken for "no offset";
2. the state partition's high watermark, read_uncommitted (above any open transaction of a crashed owner);
3. replay the state partition read_committed from the beginning until position() >= that watermark;
4. only then seek p to its committed offset, resume it, and fire for it.
Nothing fires for p before step 4: p's index is only handed to the planner once p is SERVING (or RELOCATING).
State records of ids whose partition is another (`service.routing`) are kept apart while replaying; p stays
paused, RELOCATING, until the loop has moved them home, so no command of p is forwarded ahead of them.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from scheduler.errors import KafkaFatalError
from scheduler.failpoints import failpoint
from scheduler.kafka.clients import kafka_error
from scheduler.metrics import SchedulerMetrics
from scheduler.service.index import DueIndex, replay_state
from scheduler.service.routing import Layout

__all__ = ["Owned", "Partitions", "Phase"]

log = logging.getLogger(__name__)
REPLAY_BATCH = 10_000
PROGRESS_EVERY_S = 5.0


class Phase(enum.Enum):
    OFFSETS = "offsets"
    REPLAY = "replay"
    RELOCATING = "relocating"  # rebuilt, firing, paused until its misplaced state records have moved home
    RESUMING = "resuming"  # rebuilt; seeking it failed while the group rebalanced: tried again each step
    SERVING = "serving"


@dataclass
class Owned:
    partition: int
    started: float
    phase: Phase = Phase.OFFSETS
    index: DueIndex = field(default_factory=DueIndex)
    committed: int = -1  # input offset the group has committed (where a rewind goes back to)
    position: int = -1  # input offset after the last command this instance consumed
    watermark: int = 0
    replayed: int = 0
    last_progress: float = 0.0
    misplaced: dict[bytes, bytes] = field(default_factory=dict)  # id -> state record, of ids living elsewhere


_REBUILT = (Phase.SERVING, Phase.RELOCATING)


class Partitions:
    """The partitions this instance owns, each rebuilding or serving."""

    def __init__(
        self,
        consumer: Consumer,
        state_reader: Consumer,
        admin: AdminClient,
        layout: Layout,
        metrics: SchedulerMetrics,
        stall_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        admin_factory: Callable[[], AdminClient] | None = None,
    ) -> None:
        self._consumer, self._reader, self._admin = consumer, state_reader, admin
        self._admin_factory = admin_factory
        self._offsets_logged = -1e9
        self.layout = layout
        self._input, self._state = layout.scheduled, layout.state
        self._metrics = metrics
        self._stall = stall_timeout_s
        self._clock = clock
        self.owned: dict[int, Owned] = {}
        self.joined = False  # a first assignment (possibly empty) arrived: this member is in the group
        self._progress_logged = clock()
        self.on_assigned: Callable[[list[int]], None] = lambda _partitions: None  # after each assignment

    def serving(self) -> dict[int, Owned]:
        """Partitions whose index is complete: they fire, and their offsets go with every transaction."""
        return {p: o for p, o in self.owned.items() if o.phase in _REBUILT}

    def rebuilding(self) -> bool:
        return any(o.phase is not Phase.SERVING for o in self.owned.values())

    def assign(self, partitions: list[TopicPartition]) -> None:
        """On assignment: take the partitions but pause them; they serve once rebuilt."""
        self._consumer.incremental_assign(partitions)
        self._consumer.pause(partitions)
        now = self._clock()
        for tp in partitions:
            self.owned[tp.partition] = Owned(tp.partition, started=now, last_progress=now)
        # only now: /readyz reads `joined` and `owned` from another thread, and "joined with nothing owned" reads
        # as "every owned partition rebuilt" (found by the libfaketime test: ready, yet never served)
        self.joined = True
        self._update_gauges()
        log.info("assigned partitions %s; rebuilding", sorted(tp.partition for tp in partitions))
        self.on_assigned([tp.partition for tp in partitions])

    def revoke(self, partitions: list[TopicPartition]) -> None:
        """Drop revoked partitions' indexes; there is never a transaction open between ticks."""
        failpoint("on_revoke_before_commit")
        replaying = []
        for tp in partitions:
            owned = self.owned.pop(tp.partition, None)
            if owned is not None and owned.phase is Phase.REPLAY:
                replaying.append(TopicPartition(self._state, tp.partition))
        if replaying:
            try:
                self._reader.incremental_unassign(replaying)
            except KafkaException as exc:  # already unassigned: nothing left to stop
                log.warning("unassigning the state replay of %s: %s", [tp.partition for tp in replaying], exc)
        failpoint("on_revoke_after_commit")
        self._update_gauges()
        log.info("revoked partitions %s", sorted(tp.partition for tp in partitions))

    def _update_gauges(self) -> None:
        self._metrics.assigned_partitions.set(len(self.owned))
        self._metrics.rebuilding_partitions.set(
            sum(o.phase is not Phase.SERVING for o in self.owned.values())
        )

    def step(self, wait_s: float) -> None:
        """Advance every rebuilding partition a bounded amount; fail closed if one stalls."""
        pending = [o for o in self.owned.values() if o.phase is Phase.OFFSETS]
        if pending:
            self._fetch_offsets(pending)
        if any(o.phase is Phase.REPLAY for o in self.owned.values()):
            self._replay(wait_s)
        for owned in [o for o in self.owned.values() if o.phase is Phase.RESUMING]:
            self._serve(owned)
        now = self._clock()
        for owned in self.owned.values():
            if owned.phase is not Phase.SERVING and now - owned.last_progress > self._stall:
                raise KafkaFatalError(
                    f"rebuild of partition {owned.partition} made no progress for {self._stall:.0f}s "
                    f"(phase {owned.phase.value}, {owned.replayed} records replayed): exiting, fail closed"
                )

    def _fetch_offsets(self, pending: list[Owned]) -> None:
        try:
            committed = self._consumer.committed(
                [TopicPartition(self._input, o.partition) for o in pending], 1.0
            )
            # after committed() (rule 2: the watermark after the committed offset), in one request: the state
            # watermarks, and where `scheduled` starts for a partition the group has never committed
            specs = {TopicPartition(self._state, o.partition): OffsetSpec.latest() for o in pending}  # type: ignore[no-untyped-call]
            for tp in committed:
                if tp.error is None and tp.offset < 0:
                    specs[TopicPartition(self._input, tp.partition)] = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
            futures = self._admin.list_offsets(
                specs, isolation_level=IsolationLevel.READ_UNCOMMITTED, request_timeout=10
            )
            found = {(tp.topic, tp.partition): f.result(timeout=15).offset for tp, f in futures.items()}
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is not None and err.code() == KafkaError.FENCED_LEADER_EPOCH and self._admin_factory:
                # After a broker restart librdkafka's admin client keeps sending the stale leader epoch and never
                # refreshes it: without a fresh client the rebuild stalls until the watchdog kills the process.
                self._admin = self._admin_factory()
            if self._clock() - self._offsets_logged > 5.0:
                self._offsets_logged = self._clock()
                log.info("committed offsets or state watermarks not available yet (retrying): %s", exc)
            return
        for tp in committed:
            owned = self.owned.get(tp.partition)
            if owned is None or tp.error is not None:
                continue
            owned.committed = tp.offset if tp.offset >= 0 else found[(self._input, tp.partition)]
            owned.watermark = found[(self._state, tp.partition)]
            owned.last_progress = self._clock()
            if owned.watermark == 0:
                self._serve(owned)
            else:
                owned.phase = Phase.REPLAY
                self._reader.incremental_assign(
                    [TopicPartition(self._state, owned.partition, OFFSET_BEGINNING)]
                )

    def _fetched(self, wait_s: float) -> list[Message]:
        """What the state reader has fetched, waiting at most `wait_s` for the first record only:
        `consume(n, t)` waits out all of `t` unless n records come, 50 ms per step of a small state's replay."""
        messages = self._reader.consume(REPLAY_BATCH, 0)
        if messages or wait_s <= 0:
            return messages
        first = self._reader.poll(wait_s)
        return [] if first is None else [first, *self._reader.consume(REPLAY_BATCH - 1, 0)]

    def _replay(self, wait_s: float) -> None:
        messages = self._fetched(wait_s)
        now = self._clock()
        targets = {p: (o.index, o.misplaced) for p, o in self.owned.items() if o.phase is Phase.REPLAY}
        # one call into the native core per consumed batch: errors skipped, misplaced ids kept apart, put/remove
        counts, corrupt = replay_state(messages, targets, self.layout.partitions)
        for p, replayed in counts.items():
            owned = self.owned[p]
            owned.replayed += replayed
            owned.last_progress = now
        for key, partition, offset, reason in corrupt:
            log.error("skipping corrupt state record %r at %d/%d: %s", key, partition, offset, reason)
        if messages:
            self._metrics.rebuild_records.inc(len(messages))
            failpoint("mid_rebuild")
        replaying = [o for o in self.owned.values() if o.phase is Phase.REPLAY]
        if now - self._progress_logged > PROGRESS_EVERY_S:
            self._progress_logged = now
            for o in replaying:
                log.info(
                    "rebuilding partition %d: %d of ~%d state records", o.partition, o.replayed, o.watermark
                )
        positions = self._reader.position([TopicPartition(self._state, o.partition) for o in replaying])
        for tp in positions:
            owned = self.owned[int(tp.partition)]
            if tp.offset >= owned.watermark:
                self._reader.incremental_unassign([TopicPartition(self._state, tp.partition)])
                self._replayed(owned)

    def _replayed(self, owned: Owned) -> None:
        if not owned.misplaced:
            self._serve(owned)
            return
        owned.phase, owned.position = Phase.RELOCATING, owned.committed
        self._update_gauges()
        log.warning(
            "partition %d holds %d state records of ids that live in other partitions (written before commands "
            "were routed by id): moving them home before it takes commands",
            owned.partition,
            len(owned.misplaced),
        )

    def relocated(self, owned: Owned, schedule_id: bytes) -> None:
        """A misplaced record's move home committed; the last one lets the partition take commands."""
        owned.misplaced.pop(schedule_id, None)
        owned.last_progress = self._clock()  # the rebuild watchdog: moving is progress
        if not owned.misplaced and owned.phase is Phase.RELOCATING:
            self._serve(owned)

    def _serve(self, owned: Owned) -> None:
        tp = TopicPartition(self._input, owned.partition, owned.committed)
        try:
            self._consumer.seek(tp)
            self._consumer.resume([tp])
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is None or err.fatal():
                raise
            # the group is rebalancing (the partition is being revoked or was lost): the callback that drops it
            # comes with the next poll; until then it neither takes commands nor fires
            owned.phase = Phase.RESUMING
            log.info(
                "partition %d is rebuilt but cannot resume yet (%s): retrying", owned.partition, err.str()
            )
            return
        owned.position = owned.committed
        owned.phase = Phase.SERVING
        seconds = self._clock() - owned.started
        self._metrics.rebuild_seconds.observe(seconds)
        self._update_gauges()
        log.info(
            "partition %d rebuilt in %.2fs: %d state records replayed, %d pending, resuming at offset %d",
            owned.partition,
            seconds,
            owned.replayed,
            len(owned.index),
            owned.committed,
        )
