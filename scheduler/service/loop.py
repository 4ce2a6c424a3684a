"""The scheduler's poll loop: one thread, one transaction per tick, the index changed only after commit.

Each tick: poll `scheduled` (for at most the time until the next due schedule), step any rebuild, plan intake and
due fires for SERVING partitions (`plan_tick`, pure), run the plan as one transaction carrying the input offsets
of every serving partition with fresh group metadata, then, and only if it committed, apply it to the indexes.
After an abort, every serving partition is rewound to its committed offset; the indexes are untouched.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from scheduler.codec import ROUTING_HEADERS, decode_state, decode_states, encode_schedule
from scheduler.errors import CorruptStateRecord, KafkaFatalError
from scheduler.failpoints import failpoint
from scheduler.kafka.txn import Outcome, TransactionRunner
from scheduler.metrics import PartitionSnapshot, SchedulerMetrics, observe_many
from scheduler.model import (
    HEADER_FIRE_ID,
    HEADER_FORWARDED_FROM,
    HEADER_FORWARDED_TIMESTAMP,
    HEADER_OCCURRENCE_AT,
    HEADER_RELOCATED_FROM,
    RejectReason,
    Schedule,
    occurrence_fire_id,
)
from scheduler.records import (
    OutRecord,
    dead_letter_record,
    fired_records,
    fit_reject,
    history_record,
    occurrence_record,
    record_size,
    reject_headers,
)
from scheduler.service.firing import BACKLOG_SHARE
from scheduler.service.occurrences import RecurringRules, Stepped
from scheduler.service.pacing import DRAIN_KEEP, INTAKE_BATCH, INTAKE_HOLD_MS, MIN_INTAKE, TickCost
from scheduler.service.partitions import Owned, Partitions, Phase
from scheduler.service.plan import (
    Decoded,
    Fire,
    InputRecord,
    Relocation,
    Route,
    TickPlan,
    command_due_ms,
    decode_batch,
    plan_tick,
)
from scheduler.service.routing import MisrouteNotice
from scheduler.service.targets import TargetCatalog
from scheduler.service.txnlog import TransactionLog
from scheduler.settings import ServiceSettings

__all__ = ["SchedulerLoop"]

log = logging.getLogger(__name__)
IDLE_WAIT_MS = 20  # owning nothing (starting, standing by): how soon a new assignment starts its rebuild
FIRE_CHECK_TTL_S = 1.0  # a target deleted longer ago than this is dead-lettered without a failed transaction
SNAPSHOT_EVERY_MS = 2000  # scrapes read a snapshot the loop publishes; the index is the loop thread's alone
JOINING_WAIT_S = 0.01  # the longest tick before the first assignment: its rebuild starts at most this late


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class SchedulerLoop:
    """Owns the consume-plan-transact-apply cycle; built and run by `service.app`."""

    def __init__(
        self,
        settings: ServiceSettings,
        clients: tuple[Consumer, TransactionRunner, Partitions, TargetCatalog],
        metrics: SchedulerMetrics,
        tick: Callable[[], None] = lambda: None,
        clock: Callable[[], int] = wall_ms,
        txn_log: TransactionLog | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._settings = settings
        self._consumer, self._txn, self.partitions, self._targets = clients
        self._metrics = metrics
        self._tick = tick
        self._clock = clock
        self._txn_log = txn_log
        # Prepared fires hold a transaction open until the clock reaches their due time: an injected clock needs
        # the matching sleep (one that moves it), or they are off.
        self._sleep = sleep if sleep is not None else (time.sleep if clock is wall_ms else None)
        self._ahead_ms = settings.prepare_ahead_ms if self._sleep is not None else 0
        # How far ahead a tick prepares: what a transaction takes from begin to offsets sent (a moving average,
        # within 1 ms .. prepare_ahead_ms). A fire due by then could not commit sooner anyway, so preparing it
        # delays none of the overdue fires it shares the transaction with.
        self._window = float(self._ahead_ms)
        self._prepared_topics: dict[str, bool] = {}
        self._failures: dict[tuple[int, bytes], int] = {}
        # this tick's due state records, decoded once (by the dead-letter check, for the fired record), and
        # whether each target topic exists (asked once per topic and tick); both emptied at each tick's start
        self._decoded: dict[tuple[int, bytes], tuple[Schedule, int] | CorruptStateRecord] = {}
        self._exists: dict[str, bool] = {}
        self._lateness: list[float] = []  # fired-at minus due-at of the fires `_build` built last, in seconds
        self._fired: list[Schedule] = []  # and those fires' schedules
        self._snapshot: list[PartitionSnapshot] = []
        self._snapshot_at = -SNAPSHOT_EVERY_MS
        forward = settings.misrouted == "forward"
        self._route = Route(self.partitions.layout.home, forward, self._forwardable)
        self._misroutes = MisrouteNotice(settings.misrouted)
        # consumed, decoded commands not yet planned (in consume order), each with the Owned it was consumed for
        self._held: list[tuple[Owned, InputRecord, Decoded, int]] = []  # ... and when it arrived (the clock)
        self._fresh_after: int | None = None  # `now` of the last tick that left nothing due behind but budget
        self._cost = TickCost()
        self._rules = RecurringRules(
            settings.min_interval_ms, settings.missed_grace_ms, settings.catch_up_ms, settings.max_backfill
        )

    def run(self, stop: threading.Event) -> None:
        # the join runs in librdkafka's threads while init_transactions fences: an assignment is taken (and
        # rebuilt) only in the first tick's consume(), after init; its rebuild's committed() waits for a fenced
        # transaction's abort
        self._consumer.subscribe(
            [self._settings.scheduled_topic],
            on_assign=lambda _c, parts: self.partitions.assign(parts),
            on_revoke=lambda _c, parts: self.partitions.revoke(parts),
            on_lost=lambda _c, parts: self.partitions.revoke(parts),
        )
        self._txn.init()
        self._metrics.set_pending_source(lambda: self._snapshot)
        while not stop.is_set():
            self.tick_once()
        log.info("stopping: no transaction is open between ticks; leaving the group")

    def tick_once(self) -> None:
        self._gather()
        self._tick()
        now = self._clock()  # the injected clock, so tests that drive time also drive the snapshots
        if abs(now - self._snapshot_at) > SNAPSHOT_EVERY_MS:
            self._snapshot, self._snapshot_at = self.snapshot(), now
        taking = {p for p, o in self.partitions.owned.items() if o.phase is Phase.SERVING}  # before step()
        if self.partitions.rebuilding():
            self.partitions.step(min(self._wait_ms(now) / 1000, 0.05))
        started = time.perf_counter()  # the tick's own work: the wait and the rebuild step left out
        serving = self.partitions.serving()
        self._held = [h for h in self._held if serving.get(h[1].partition) is h[0]]  # revoked: re-read
        now = self._clock()
        records, decoded = self._intake_share(serving, now)
        if not records and not serving:
            return
        later = {held[1].partition for held in self._held}  # positions stay at the held
        stepped = self._step_positions(serving, taking - later)
        now = self._clock()
        moves, moved_bytes = self._relocations(serving)
        self._decoded, self._exists, self._prepared_topics = {}, {}, {}
        plan = plan_tick(
            records,
            {p: o.index for p, o in serving.items()},
            now,
            validate=self._targets.validate,
            max_fires=self._settings.max_fires_per_transaction - len(moves),
            max_bytes=self._settings.max_transaction_bytes - moved_bytes,
            dead_letter=self._dead_letter_reason,
            prefetch=self._prefetch,
            route=self._route,
            relocate=moves,
            decoded=decoded,
            fresh_after_ms=self._fresh_after,
            backlog_room=self._backlog_room(serving, now),
            horizon_ms=self._horizon(serving, now),
            prepares=self._prepares,
            recur=self._rules,
            advance=self._advance,
        )
        # a batch of no-op commands (cancels of nothing), or only a transaction marker passed, still commits
        if plan or records or stepped:
            if self._transact(plan, now):
                self._fresh_after = now
                self._cost.add(time.perf_counter() - started, len(records) + len(plan.fires))
        else:
            self._fresh_after = now  # nothing was due: nothing is left behind

    def _gather(self) -> None:
        """Consume until the wake-up instant: the earliest due in the indexes, or of a command that arrives while
        waiting (a short delay), capped by max_wait_ms; commands arriving due later are only collected, so ticks
        stay batched. No wait while partitions rebuild or commands left by the last tick wait for intake."""
        leftover = bool(self._held)
        earliest = self._take(self._consumer.consume(self._room(), 0.0))
        if leftover or self.partitions.rebuilding():
            return
        now = self._clock()
        deadline = now + self._wait_ms(now)
        if earliest is not None:
            deadline = min(deadline, earliest - self._ahead())
        while len(self._held) < INTAKE_BATCH:
            remaining = deadline - self._clock()
            if remaining <= 0:
                return
            messages = self._consumer.consume(1, remaining / 1000)  # returns at the first arrival
            if not messages:
                return  # waited it out (or only callbacks ran: a rebalance); tick
            messages.extend(self._consumer.consume(self._room() - 1, 0.0))  # and whatever came with it
            earliest = self._take(messages)
            if earliest is not None:
                deadline = min(deadline, earliest - self._ahead())
            if self.partitions.rebuilding():
                return  # partitions were assigned: rebuild them now

    def _backlog_room(self, serving: dict[int, Owned], now: int) -> int | None:
        """While a schedule comes due during what a full tick would take, the backlog goes in the chunks that keep
        its drain at DRAIN_KEEP of the full rate: the one coming due waits for a short tick, not a full one."""
        full = self._settings.max_fires_per_transaction
        soon = now + int(self._cost.predict_ms(full))
        if any(o.index.due_between(now, soon, 1) for o in serving.values()):
            # at least a quarter of the budget: a poor fit of the cost never slows the drain to a crawl
            return self._cost.chunk(full, DRAIN_KEEP, least=full // BACKLOG_SHARE)
        return None

    def _room(self) -> int:
        """Commands to consume now: up to a batch held, and never nothing (consume serves the group callbacks)."""
        return max(MIN_INTAKE, INTAKE_BATCH - len(self._held))

    def _wait_ms(self, now: int) -> int:
        if (
            not self.partitions.joined
        ):  # consume() hands over the first assignment, then waits out its timeout
            return int(JOINING_WAIT_S * 1000)
        if not self.partitions.owned:  # standing by: a new assignment arrives inside consume() too
            return min(self._settings.max_wait_ms, IDLE_WAIT_MS)
        horizon = self._settings.max_wait_ms
        for owned in self.partitions.serving().values():
            due = owned.index.next_due_ms()
            if due is not None:  # wake early enough to prepare it (`prepare_ahead_ms`)
                horizon = min(horizon, max(0, due - self._ahead() - now))
        return horizon

    def _intake_share(
        self, serving: dict[int, Owned], now: int
    ) -> tuple[list[InputRecord], list[Decoded] | None]:
        """The held commands this tick takes in (a prefix: offset order per partition holds): all of them, unless
        a fire is due before their measured plan-and-commit cost would let this tick end; then as many as fit in
        the time left, at least MIN_INTAKE (intake always progresses under a permanent backlog), and every command
        held longer than INTAKE_HOLD_MS (arrivals faster than the bounded share would pile up for good). The rest
        wait for the next tick, their offsets uncommitted."""
        held = self._held
        if not held:
            return [], None
        dues = [d for o in serving.values() if (d := o.index.next_due_ms()) is not None]
        n = len(held)
        if dues:
            fits = self._cost.records_within(min(dues) - now)
            overdue = bisect.bisect_right(held, now - INTAKE_HOLD_MS, key=lambda h: h[3])
            n = min(n, max(MIN_INTAKE, fits, overdue))
        taken, self._held = held[:n], held[n:]
        for owned, record, _decoded, _arrived in taken:
            owned.position = record.offset + 1
        return [h[1] for h in taken], [h[2] for h in taken]

    def _take(self, messages: list[Any]) -> int | None:
        """Hold consumed commands of serving partitions, decoded once; the earliest due among them, if any."""
        # only partitions serving before this tick's rebuild step: a message of one that became serving in it
        # (or is relocating, paused) was fetched before the pause or the seek took effect; it is read again
        serving = {p: o for p, o in self.partitions.owned.items() if o.phase is Phase.SERVING}
        taking = [(serving[p], m) for m in messages if self._usable(m) and (p := m.partition()) in serving]
        if not taking:
            return None
        records = []
        for _owned, msg in taking:
            _ts_type, ts = msg.timestamp()
            records.append(
                InputRecord(msg.partition(), msg.offset(), ts, msg.key(), msg.value(), msg.headers())
            )
        decoded = decode_batch(records)
        arrived = itertools.repeat(self._clock(), len(records))
        self._held.extend(zip((o for o, _m in taking), records, decoded, arrived, strict=True))
        dues = [due for d in decoded if (due := command_due_ms(d)) is not None]
        return min(dues, default=None)

    @staticmethod
    def _usable(msg: Any) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.fatal():
            raise KafkaFatalError(f"consumer: fatal error: {err}")
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer error: %s", err)
        return False

    def _step_positions(self, serving: dict[int, Owned], taking: set[int]) -> bool:
        """Take the consumer's positions, which step over transaction markers (forwarded commands are written
        transactionally; committing offset + 1 of the last record would leave the group one behind for good, as
        Java's consumer.position() avoids too). True if one moved with no record to commit it with."""
        parts = [p for p in serving if p in taking]
        if not parts:
            return False
        topic, stepped = self._settings.scheduled_topic, False
        for tp in self._consumer.position([TopicPartition(topic, p) for p in parts]):
            owned = serving[tp.partition]
            if tp.offset > owned.position:
                stepped = stepped or owned.position == owned.committed
                owned.position = tp.offset
        return stepped

    def _relocations(self, serving: dict[int, Owned]) -> tuple[list[Relocation], int]:
        """The next misplaced state records to move home, within one transaction's fire and byte budgets (they
        take their share of both), and their bytes."""
        out: list[Relocation] = []
        room, budget = (
            self._settings.max_fires_per_transaction // 2,
            self._settings.max_transaction_bytes // 2,
        )
        home, size = self.partitions.layout.home, 0
        for p, owned in serving.items():
            if owned.phase is not Phase.RELOCATING:
                continue
            for sid, record in list(itertools.islice(owned.misplaced.items(), max(0, room - len(out)))):
                if size + len(record) > budget and out:
                    return out, size
                try:
                    schedule, _version = decode_state(record)
                except CorruptStateRecord as exc:
                    log.error("dropping corrupt misplaced state record %r in partition %d: %s", sid, p, exc)
                    self.partitions.relocated(owned, sid)  # as the replay skips a corrupt record at home
                    continue
                out.append(Relocation(p, sid, encode_schedule(schedule), home(sid)))
                size += len(record)
        return out, size

    def _forwardable(self, record: InputRecord) -> bool:
        headers = [
            *(record.headers or ()),
            (HEADER_FORWARDED_FROM, b"%d/%d" % (1 << 31, 1 << 62)),
            (HEADER_FORWARDED_TIMESTAMP, b"%d" % (1 << 62)),
        ]
        limit: int = self._targets.limit(self._settings.scheduled_topic)
        return record_size(record.key, record.value, headers) <= limit

    def _prefetch(self, due: Sequence[tuple[int, bytes, bytes]]) -> None:
        """The planner's candidates for this tick's fires, decoded in one native call, for the checks and `_build`."""
        decoded = decode_states([record for _p, _sid, record in due])
        self._decoded.update(zip([(p, sid) for p, sid, _record in due], decoded, strict=True))

    def _decoded_of(
        self, partition: int, sid: bytes, record: bytes
    ) -> tuple[Schedule, int] | CorruptStateRecord:
        """A candidate's state record decoded once per tick (the prefetch usually did it already)."""
        found = self._decoded.get((partition, sid))
        if found is None:
            try:
                found = self._decoded[(partition, sid)] = decode_state(record)
            except CorruptStateRecord as exc:
                found = self._decoded[(partition, sid)] = exc
        return found

    def _advance(self, partition: int, sid: bytes, record: bytes, now: int, room: int) -> Stepped | None:
        """A due recurring record's step (None for a one-time schedule, or one that does not decode: it is
        dead-lettered as one)."""
        found = self._decoded_of(partition, sid, record)
        if isinstance(found, CorruptStateRecord) or found[0].recurrence is None:
            return None
        return self._rules.step(found[0], found[1], now, room, record)

    def _dead_letter_reason(self, partition: int, sid: bytes, record: bytes) -> str | None:
        """Called by the planner once per fire; keeps the decoded record for `_build`."""
        found = self._decoded_of(partition, sid, record)
        decoded = None if isinstance(found, CorruptStateRecord) else found
        if self._failures and self._failures.get((partition, sid), 0) >= self._settings.fire_attempts:
            return "delivery_failed"
        if decoded is None:
            return "corrupt_state_record"
        topic = decoded[0].target_topic
        exists = self._exists.get(topic)
        if exists is None:
            exists = self._exists[topic] = self._targets.info(topic, max_age_s=FIRE_CHECK_TTL_S).exists
        return None if exists else "unknown_target_topic"

    def _prepares(self, partition: int, sid: bytes, _record: bytes) -> bool:
        """May this fire, due within `prepare_ahead_ms`, be produced now and committed at its due time? Only to a
        CreateTime target (asked once per topic and tick), never a retried one (a failing target is not hurried)."""
        decoded = self._decoded.get((partition, sid))
        if decoded is None or isinstance(decoded, CorruptStateRecord):
            return False
        if self._failures and (partition, sid) in self._failures:
            return False
        topic = decoded[0].target_topic
        ok = self._prepared_topics.get(topic)
        if ok is None:
            ok = self._prepared_topics[topic] = self._targets.prepares(topic)
        return ok

    def _horizon(self, serving: dict[int, Owned], now: int) -> int | None:
        """How far this tick prepares fires: `_ahead()` past now, unless more is due than one transaction takes
        (a backlog: the next tick follows at once, and a held commit would only slow the drain)."""
        if not self._ahead_ms:
            return None
        room = self._settings.max_fires_per_transaction
        due = 0
        for owned in serving.values():
            due += owned.index.count_due(now)
            if due >= room:
                return None
        return now + self._ahead()

    def _ahead(self) -> int:
        return min(self._ahead_ms, max(1, round(self._window))) if self._ahead_ms else 0

    def _hold(self, commit_at: int) -> bool:
        """Wait until the clock reaches `commit_at` (the latest due time among a prepared transaction's fires).
        False if the clock went back so far that waiting would outlast the preparation window (a clock step): the
        caller aborts, nothing of it was visible, and the next tick plans on the new clock."""
        assert self._sleep is not None
        limit = commit_at - self._clock()
        if limit > self._ahead_ms + 50:
            return False
        while (left := commit_at - self._clock()) > 0:
            if left > limit + 50:
                return False
            self._sleep(left / 1000)
        return True

    def _decode(self, fire: Fire) -> tuple[Schedule, int] | CorruptStateRecord:
        occurrence = fire.occurrence
        decoded = (
            None
            if occurrence is not None and occurrence.backfill
            else self._decoded.get((fire.partition, fire.schedule_id))
        )
        if decoded is not None:
            return decoded
        try:
            return decode_state(fire.record)
        except CorruptStateRecord as exc:
            return exc

    def _transact(self, plan: TickPlan, now: int) -> bool:
        """True if it committed."""
        serving = self.partitions.serving()
        fires, others, sent, fired_at = self._build(plan, now)
        # the committer's transactional id rides as offset metadata: a new owner can fence it if it departs
        topic, committer = self._settings.scheduled_topic, self._settings.transactional_id
        offsets = [TopicPartition(topic, p, o.position, committer) for p, o in serving.items()]
        prepared = fired_at > now  # fires not yet due: produced now, committed at fired_at, stamped with it
        attempt = None
        if self._txn_log is not None:
            attempt = self._txn_log.begin(fires, others, offsets)
        started = time.monotonic()
        try:
            if prepared:
                self._metrics.prepared.inc(sum(1 for schedule in self._fired if schedule.due_ms > now))
                outcome = self._txn.run(
                    fires, others, offsets, hold=lambda: self._hold(fired_at), stamp=fired_at
                )
            else:
                outcome = self._txn.run(fires, others, offsets)
        except KafkaFatalError as exc:
            verdict = self._txn.failure()
            self._metrics.transactions.labels(verdict).inc()
            self._log_outcome(attempt, verdict, str(exc))
            raise
        self._metrics.transaction_seconds.observe(time.monotonic() - started)
        self._metrics.transactions.labels(outcome.value).inc()
        cause = self._txn.last_error
        self._log_outcome(attempt, outcome.value, None if cause is None else cause.str())
        if outcome is Outcome.COMMITTED:
            self._window += 0.2 * (1000 * self._txn.prepared_in_s - self._window)
            failpoint("after_commit_before_index")
            self._apply(plan, serving)
            return True
        failpoint("after_abort_before_seek")
        self._rewind(serving)
        refused, failed = self._txn.failed_ids, self._txn.failed_topics
        if failed:
            for fire, record in zip(sent, fires, strict=True):
                # only the fires the target refused, not the others retried with them
                if record.topic in failed and fire.schedule_id in refused:
                    key = (fire.partition, fire.schedule_id)
                    self._failures[key] = self._failures.get(key, 0) + 1
        for topic, error in failed.items():
            log.warning("fire to %s failed: %s (attempts counted toward a dead letter)", topic, error)
        return False

    def _log_outcome(self, attempt: str | None, outcome: str, error: str | None) -> None:
        if attempt is not None and self._txn_log is not None:
            self._txn_log.end(attempt, outcome, error)

    def _build(self, plan: TickPlan, now: int) -> tuple[list[OutRecord], list[OutRecord], list[Fire], int]:
        """The fired records (and the fires they are, in the same order), everything else, and the fire time: now,
        or the latest due time among prepared fires (the transaction commits no sooner)."""
        others: list[OutRecord] = []
        sent: list[Fire] = []
        decoded: list[tuple[Schedule, int]] = []
        state, history = self._settings.state, self._settings.history_topic
        for fire in plan.fires:
            schedule = self._decode(fire)
            if fire.dead_letter or isinstance(schedule, CorruptStateRecord):
                others.append(self._dead_letter(fire, schedule, now))
            else:
                sent.append(fire)
                decoded.append(schedule)
        fired_at = max([now, *(schedule.due_ms for schedule, _version in decoded)])
        source = self._settings.scheduled_topic
        if any(fire.occurrence is not None for fire in sent):  # recurring occurrences: each its own headers
            fires = []
            self._lateness = []
            for fire, (one, version) in zip(sent, decoded, strict=True):
                occurrence = fire.occurrence
                if occurrence is None:
                    fires.extend(fired_records([(one, version)], fired_at, source))
                    self._lateness.append((fired_at - one.due_ms) / 1000)
                else:
                    fires.append(occurrence_record(one, occurrence, fired_at, source))
                    if not occurrence.backfill:
                        self._lateness.append((fired_at - occurrence.at_ms) / 1000)
        else:
            fires = fired_records(decoded, fired_at, source)
            self._lateness = [(fired_at - schedule.due_ms) / 1000 for schedule, _version in decoded]
        self._fired = [schedule for schedule, _version in decoded]
        if history:  # in the fires' transaction: the history holds exactly the committed fires
            others.extend(history_record(history, record) for record in fires)
        for (partition, sid), value in plan.state_writes.items():
            others.append(OutRecord(state, sid, value, [], partition))
        others.extend(self._routed(plan))
        for reject in plan.rejects:
            rec = reject.record
            headers = reject_headers(
                rec.headers,
                reason=reject.reason.value,
                message=reject.message,
                source=(self._settings.scheduled_topic, rec.partition, rec.offset, rec.timestamp_ms),
                rejected_at_ms=now,
            )
            limit = self._targets.limit(self._settings.rejected)
            key, value, headers = fit_reject(rec.key, rec.value, headers, limit)
            others.append(OutRecord(self._settings.rejected, key, value, headers))
        return fires, others, sent, fired_at

    def _routed(self, plan: TickPlan) -> list[OutRecord]:
        """Relocated state records, then forwarded commands (as consumed, with their timestamps) to `scheduled`."""
        topic = self._settings.scheduled_topic
        out = [
            OutRecord(topic, m.schedule_id, m.command, [(HEADER_RELOCATED_FROM, b"%d" % m.partition)], m.home)
            for m in plan.relocations
        ]
        for forward in plan.forwards:
            rec = forward.record
            headers = [(k, v) for k, v in rec.headers or () if k not in ROUTING_HEADERS]
            headers.append((HEADER_FORWARDED_FROM, b"%d/%d" % (rec.partition, rec.offset)))
            # the base of a delay travels in a header: a record timestamp could be refused or overwritten
            # (message.timestamp.*.max.ms, LogAppendTime)
            headers.append((HEADER_FORWARDED_TIMESTAMP, b"%d" % rec.timestamp_ms))
            out.append(OutRecord(topic, rec.key, rec.value, headers, forward.partition))
        return out

    def _dead_letter(
        self, fire: Fire, decoded: tuple[Schedule, int] | CorruptStateRecord, now: int
    ) -> OutRecord:
        if isinstance(decoded, CorruptStateRecord):
            headers: list[tuple[str, bytes | None]] = [
                ("scheduler-dlt-reason", b"corrupt_state_record"),
                ("scheduler-dlt-message", str(decoded).encode()),
            ]
            return OutRecord(self._settings.dlt, fire.schedule_id, fire.record, headers)
        schedule, version = decoded
        message = f"could not deliver to {schedule.target_topic}"
        reason = fire.dead_letter or "corrupt_state_record"
        record = dead_letter_record(self._settings.dlt, schedule, version, reason, message, now)
        occurrence = fire.occurrence
        if occurrence is None:
            return record
        fid = occurrence_fire_id(schedule.id, occurrence.version, occurrence.at_ms).encode()
        ours: list[tuple[str, bytes | None]] = [
            (HEADER_FIRE_ID, fid),
            (HEADER_OCCURRENCE_AT, b"%d" % occurrence.at_ms),
        ]
        kept = [(k, v) for k, v in record.headers if k not in (HEADER_FIRE_ID, HEADER_OCCURRENCE_AT)]
        return record._replace(headers=kept + ours)

    def _apply(self, plan: TickPlan, serving: dict[int, Any]) -> None:
        """The transaction committed: now, and only now, the indexes and metrics change."""
        writes: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for (partition, sid), value in plan.state_writes.items():
            writes.setdefault(partition, []).append((sid, value))
        for partition, batch in writes.items():
            owned = serving.get(partition)
            if owned is not None:
                owned.index.apply(batch)  # one call into the native index per partition
        for owned in serving.values():
            owned.committed = owned.position
        for move in plan.relocations:
            owned = serving.get(move.partition)
            if owned is not None:
                self.partitions.relocated(owned, move.schedule_id)
        self._count(plan)

    def _count(self, plan: TickPlan) -> None:
        m = self._metrics
        failures = self._failures
        occurrences = backfilled = 0
        for fire in plan.fires:
            if failures:
                failures.pop((fire.partition, fire.schedule_id), None)
            if fire.occurrence is not None:
                if fire.occurrence.backfill:
                    backfilled += 1
                else:
                    occurrences += 1
            if fire.dead_letter:
                m.fired.labels("dead_lettered").inc()
                m.dead_letters.labels(fire.dead_letter).inc()
        if occurrences or backfilled:
            m.occurrences.labels("fired").inc(occurrences)
            m.occurrences.labels("backfilled").inc(backfilled)
        lateness = self._lateness  # of this plan's fired records: `_build` made them for this transaction
        if lateness:  # once per tick: labels() per fire was 5% of a drain, observe() per fire 10%
            m.fired.labels("ok").inc(len(lateness))
            observe_many(m.fire_lateness, lateness)
        m.commands.labels("scheduled").inc(plan.scheduled)
        m.commands.labels("cancelled").inc(plan.cancels)
        m.cancelled.inc(plan.cancelled)
        m.commands.labels("forwarded").inc(len(plan.forwards))
        m.commands.labels("relocated").inc(plan.relocated)
        if plan.recurring or plan.controls or plan.stale_done or plan.skipped or plan.missed or plan.ended:
            self._count_recurring(plan)
        misrouted = [f.record for f in plan.forwards] + [
            r.record for r in plan.rejects if r.reason is RejectReason.WRONG_PARTITION
        ]
        if misrouted:
            first = misrouted[0]
            self._misroutes.add(len(misrouted), f"key {first.key!r} in partition {first.partition}")
        for reject in plan.rejects:
            m.commands.labels("rejected").inc()
            m.rejected.labels(reject.reason.value).inc()

    def _count_recurring(self, plan: TickPlan) -> None:
        m = self._metrics
        m.commands.labels("recurring").inc(plan.recurring)
        for word, count in plan.controls.items():
            m.commands.labels(word).inc(count)
        m.commands.labels("stale_done").inc(plan.stale_done)
        m.occurrences.labels("skipped").inc(plan.skipped)
        m.occurrences.labels("missed").inc(plan.missed)
        m.recurring_ended.inc(plan.ended)

    def _rewind(self, serving: dict[int, Any]) -> None:
        self._held = []  # beyond the committed offsets: consumed again after the seek
        for partition, owned in serving.items():
            self._consumer.seek(TopicPartition(self._settings.scheduled_topic, partition, owned.committed))
            owned.position = owned.committed

    def snapshot(self) -> list[PartitionSnapshot]:
        """Pending count and next due per owned partition; called on the loop thread only."""
        now = self._clock()
        overdue = 0
        out = []
        for p, owned in list(self.partitions.owned.items()):
            index = owned.index
            due = index.next_due_ms()
            if due is not None and due <= now:
                overdue += index.count_due(now)
            out.append(PartitionSnapshot(p, len(index), due, index.count_due_within(now), index.recurring()))
        self._metrics.overdue.set(overdue)
        return out
