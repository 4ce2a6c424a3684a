"""The core, proven at unit level: the REAL SchedulerLoop + Partitions + TransactionRunner against a fake Kafka.

A Hypothesis state machine runs two instances over three partitions of `scheduled` and interleaves client commands
(schedules due in [-2 s, +5 s], cancels; ids from a small alphabet so replaces and cancels collide; some sent to
a partition other than their id's, as a producer with another partitioner does, and forwarded home; some ids'
state left by an older scheduler in the wrong partition, moved home at rebuild), clock steps,
ticks, rebalances, crashes at every failpoint (with and without an immediate restart, and with the crashed process
still running after its replacement fenced it), and zombies (partitions moved away while the instance runs one
more tick on stale ownership). After every step: no fire id twice, never early, every fire is a commanded version
that was still the id's newest command at the fire transaction's input position (G5), and every fire transaction
carried the input offset of its partition (rule 1). At teardown everything is drained by one healthy instance:
every id's newest schedule fired exactly once, the state topic holds nothing pending, every poison command was
rejected exactly once, and the group's offsets reached the end of `scheduled`.

A failing example prints a `@reproduce_failure(...)` decorator; paste it above `TestCore` to replay it, or run
`pytest tests/unit/test_core_state_machine.py --hypothesis-seed=<n>` with the seed Hypothesis reports.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from prometheus_client import CollectorRegistry

from scheduler import failpoints
from scheduler.codec import decode_command, encode_cancel, encode_schedule, encode_state
from scheduler.errors import KafkaFatalError
from scheduler.failpoints import FailpointError
from scheduler.kafka.txn import TransactionRunner
from scheduler.metrics import SchedulerMetrics
from scheduler.model import HEADER_FORWARDED_FROM, HEADER_RELOCATED_FROM, Relocated, Schedule
from scheduler.partitioner import partition_for
from scheduler.service.loop import SchedulerLoop
from scheduler.service.partitions import Partitions
from scheduler.service.routing import Layout
from scheduler.service.txnlog import TransactionLog
from scheduler.settings import ServiceSettings
from tests.chaos.attempts import check_attempts, load_attempts
from tests.unit.fake_kafka import FakeAdmin, FakeCluster, FakeConsumer, FakeProducer, FakeTargets, Rec

SCHEDULED, STATE, REJECTED, DLT, TARGET = (
    "scheduled",
    "scheduled.state",
    "scheduled.rejected",
    "scheduled.dlt",
    "target",
)
PARTS = 3
IDS = ["a", "b", "c", "d", "e"]
# Ids an older scheduler (before commands were routed by id) kept in the partition after their own: their state is
# there at start, and their producer keeps sending them there.
LEGACY = ["L0", "L1", "L2", "L3", "L5"]  # L1, L2, L3, L5 share partition 1: moved in several transactions
NAMES = ["x", "y"]
CRASH_POINTS = [
    "after_begin",
    "after_fire_produce",
    "after_tombstone_produce",
    "after_send_offsets",
    "before_commit",
    "after_commit_before_index",
    "mid_rebuild",
]


def header(rec: Rec, name: str) -> bytes | None:
    return next((v for k, v in rec.headers if k == name), None)


class Instance:
    """One scheduler process: built like `service.app`, started like `SchedulerLoop.run`, ticked by the test."""

    def __init__(
        self,
        cluster: FakeCluster,
        name: str,
        log_dir: Path,
        incarnation: int = 0,
        misrouted: str = "forward",
        max_fires: int = 2,
    ) -> None:
        self.name = name
        self.settings = ServiceSettings(
            scheduled_topic=SCHEDULED,
            instance_id=name,
            max_fires_per_transaction=max_fires,
            http_port=None,
            max_wait_ms=200,
            misrouted=misrouted,
        )
        self.consumer = FakeConsumer(cluster, name)
        self.reader = FakeConsumer(cluster)
        self.producer = FakeProducer(cluster, self.settings.transactional_id)
        metrics = SchedulerMetrics(CollectorRegistry())
        self.partitions = Partitions(
            self.consumer,  # type: ignore[arg-type]
            self.reader,  # type: ignore[arg-type]
            FakeAdmin(cluster),  # type: ignore[arg-type]
            Layout(SCHEDULED, STATE, PARTS),
            metrics,
            stall_timeout_s=1e9,
            clock=lambda: cluster.now_ms / 1000,
        )
        txn = TransactionRunner(self.producer, self.consumer)  # type: ignore[arg-type]
        clients = (self.consumer, txn, self.partitions, FakeTargets({TARGET}))
        # the per-transaction log the chaos checker reads; one process per incarnation (pid is shared here)
        self.txn_log = TransactionLog(
            log_dir / f"instance-{name}.txn.jsonl", f"{name}~{incarnation}", state_topic=STATE, dlt_topic=DLT
        )
        self.loop = SchedulerLoop(
            self.settings,
            clients,  # type: ignore[arg-type]
            metrics,
            clock=lambda: cluster.now_ms,
            txn_log=self.txn_log,
            sleep=cluster.advance,  # prepared fires wait for their due time on the cluster's clock
        )
        stop = threading.Event()
        stop.set()
        self.loop.run(
            stop
        )  # exactly run()'s start-up (init_transactions, subscribe with its callbacks), no tick

    @property
    def member(self) -> str:
        return self.consumer.member


def home(sid: str) -> int:
    return partition_for(sid.encode(), PARTS)


def legacy_partition(sid: str) -> int:
    return (home(sid) + 1) % PARTS


Effective = dict[tuple[int, int], tuple[str, str, int | None]]


class Sim:
    """The world: a fake cluster, the instances by name, and every command sent (the reference model's input)."""

    def __init__(self, legacy: tuple[tuple[str, int], ...] = (), misrouted: str = "forward") -> None:
        self.misrouted = misrouted
        self.cluster = FakeCluster({SCHEDULED: PARTS, STATE: PARTS, REJECTED: 1, DLT: 1, TARGET: 2})
        self.instances: dict[str, Instance | None] = {}
        self.commands: list[tuple[int, int, str, str, int | None]] = []  # partition, offset, id, kind, due
        self.legacy = {sid for sid, _ in legacy}
        self.zombie_rejected = 0
        self.crashed = 0
        self._log_dir = tempfile.TemporaryDirectory(prefix="core-sm-")
        self.log_dir = Path(self._log_dir.name)
        self.incarnations: Counter[str] = Counter()
        self.every: list[Instance] = []
        for sid, delta in legacy:
            self._legacy_schedule(sid, delta)
        for name in NAMES:
            self.instances[name] = self._new(name)
        self.rebalance({p: NAMES[p % len(NAMES)] for p in range(PARTS)})

    def _new(self, name: str) -> Instance:
        self.incarnations[name] += 1
        instance = Instance(self.cluster, name, self.log_dir, self.incarnations[name], self.misrouted)
        self.every.append(instance)
        return instance

    def prepared(self) -> int:
        """Fires every incarnation produced ahead of their due time (prepare_ahead_ms) in a transaction it ran."""
        return int(sum(i.loop._metrics.prepared._value.get() for i in self.every))

    def close(self) -> None:
        for instance in self.instances.values():
            if instance is not None:
                instance.txn_log.close()
        self._log_dir.cleanup()

    def live(self) -> list[str]:
        return [n for n, i in self.instances.items() if i is not None]

    def _legacy_schedule(self, sid: str, delta_ms: int) -> None:
        """What an older scheduler left: the command in the wrong partition, consumed, its state record there."""
        p, due = legacy_partition(sid), self.cluster.now_ms + delta_ms
        schedule = Schedule(sid, TARGET, due, payload=sid.encode(), target_key=sid.encode())
        rec = self.cluster.produce_plain(SCHEDULED, sid.encode(), encode_schedule(schedule), partition=p)
        self.commands.append((p, rec.offset, sid, "schedule", due))
        self.cluster.append(STATE, p, sid.encode(), encode_state(schedule, rec.offset))
        self.cluster.group_offsets[(SCHEDULED, p)] = self.cluster.end_offset(SCHEDULED, p)

    def command(self, sid: str, kind: str, delta_ms: int = 0, partition: int | None = None) -> None:
        """kind: schedule | cancel | poison (a schedule to an unknown target: rejected at intake). `partition`:
        sent there instead of the id's partition (another partitioner); legacy ids always go to theirs."""
        now = self.cluster.now_ms
        if kind == "cancel":
            value, due = encode_cancel(sid), None
        else:
            due = now + delta_ms
            topic = TARGET if kind == "schedule" else "no-such-topic"
            value = encode_schedule(Schedule(sid, topic, due, payload=sid.encode(), target_key=sid.encode()))
        if sid in self.legacy:
            partition = legacy_partition(sid)
        rec = self.cluster.produce_plain(SCHEDULED, sid.encode(), value, partition=partition)
        self.commands.append((rec.partition, rec.offset, sid, kind, due))

    def effective(self) -> Effective:
        """(partition, offset) -> (id, kind, due) of every command where it takes effect: in its id's partition,
        sent there directly or as the scheduler's committed copy (forwarded, or a relocated state record)."""
        sent = {(p, o): (sid, kind, due) for p, o, sid, kind, due in self.commands}
        out: Effective = {}
        for p in range(PARTS):
            for rec in self.cluster.log(SCHEDULED, p):
                if rec.status != "committed":
                    continue
                origin = header(rec, HEADER_FORWARDED_FROM)
                if origin is not None:
                    source, offset = (int(x) for x in origin.split(b"/"))
                    out[(p, rec.offset)] = sent[(source, offset)]
                elif header(rec, HEADER_RELOCATED_FROM) is not None:
                    moved = decode_command(rec.key, rec.value, rec.headers, rec.timestamp)
                    assert isinstance(moved, Relocated), moved
                    out[(p, rec.offset)] = (moved.id, "schedule", moved.schedule.due_ms)
                elif (p, rec.offset) in sent and home(sent[(p, rec.offset)][0]) == p:
                    out[(p, rec.offset)] = sent[(p, rec.offset)]
        return out

    def rebalance(self, owners: dict[int, str], lost: tuple[str, ...] = ()) -> None:
        live = self.live()
        assignment: dict[str, list[int]] = {self.instances[n].member: [] for n in live}  # type: ignore[union-attr]
        for p, wanted in owners.items():
            name = wanted if wanted in live else live[p % len(live)]
            assignment[self.instances[name].member].append(p)  # type: ignore[union-attr]
        lost_members = {self.instances[n].member for n in lost}  # type: ignore[union-attr]
        self.cluster.rebalance(assignment, SCHEDULED, lost=lost_members)

    def owners(self) -> dict[int, str]:
        by_member = {i.member: n for n, i in self.instances.items() if i is not None}
        return {p: by_member.get(m, "") for (_t, p), m in self.cluster.owner.items()}

    def tick(self, name: str) -> None:
        instance = self.instances[name]
        if instance is not None:
            instance.loop.tick_once()

    def kill(self, name: str) -> Instance | None:
        """The process dies (or hangs): it leaves the group view of the test; its open transaction stays open."""
        instance = self.instances[name]
        self.instances[name] = None
        if instance is not None:
            self.cluster.leave(instance.member)
        return instance

    def restart(self, name: str) -> None:
        """Same transactional.id: init fences the old producer and aborts its transaction; the new member rejoins."""
        owners = self.owners()
        old_member_parts = [p for (_t, p), m in self.cluster.owner.items() if m not in self.cluster.members]
        self.instances[name] = self._new(name)
        for p in old_member_parts:
            owners[p] = name
        self.rebalance(owners)

    def crash(self, name: str, point: str, restart: bool) -> Instance | None:
        """Tick `name` (up to 3 times) until the failpoint raises; the process is gone either way."""
        failpoints.configure(f"{point}=raise@1")
        try:
            for _ in range(3):
                self.tick(name)
        except FailpointError:
            self.crashed += 1
        finally:
            failpoints.configure(None)
        old = self.kill(name)
        if restart:
            self.restart(name)
        return old

    def zombie(self, name: str, new_owner_first: bool) -> None:
        """Move `name`'s partitions away (it is lost from the group) but let it tick once on stale ownership."""
        other = next(n for n in self.live() if n != name)
        owners = {p: (other if n == name else n) for p, n in self.owners().items()}
        self.rebalance(owners, lost=(name,))
        if new_owner_first:
            for _ in range(3):
                self.tick(other)
        instance = self.instances[name]
        assert instance is not None
        instance.consumer.defer_callbacks = True
        before = self.cluster.stats["rejected_commits"]
        instance.loop.tick_once()
        self.zombie_rejected += self.cluster.stats["rejected_commits"] - before

    # -- checks
    def check(self) -> None:
        fires = self.cluster.visible(TARGET)
        counts = Counter(header(r, "scheduler-fire-id") for r in fires)
        dupes = {k: n for k, n in counts.items() if n > 1}
        assert not dupes, f"duplicate fires: {dupes}"
        by_offset = self.effective()
        for rec in fires:
            fid = (header(rec, "scheduler-fire-id") or b"").decode()
            due = int(header(rec, "scheduler-due-at") or b"0")
            fired_at = int(header(rec, "scheduler-fired-at") or b"0")
            assert fired_at >= due, f"{fid} fired early: fired_at {fired_at} < due {due}"
            assert rec.committed_at is not None and rec.committed_at >= due, f"{fid} committed early"
            sid, version = fid.rsplit("@", 1)
            partition = partition_for(sid.encode(), PARTS)
            assert by_offset.get((partition, int(version))) == (sid, "schedule", due), (
                f"{fid} never commanded"
            )
            self._check_newest_at_fire(rec, sid, partition, int(version), by_offset)
        self._check_attempts()

    def _check_attempts(self) -> None:
        """The transaction log agrees with the log: committed attempts visible, refused ones never, none torn."""
        attempts = load_attempts(self.log_dir)
        assert attempts is not None, "no transaction log written"
        visible = {
            (header(r, "scheduler-fire-id") or b"").decode()
            for topic in (TARGET, DLT)
            for r in self.cluster.visible(topic)
        }
        anomalies, stats = check_attempts(attempts, visible)
        assert not anomalies, anomalies
        self.attempt_outcomes = stats["attempt_outcomes"]

    def _check_newest_at_fire(
        self, rec: Rec, sid: str, partition: int, version: int, effective: Effective
    ) -> None:
        """G5 + rule 1: the fire's transaction carried its partition's offset O, and the fired version was the
        id's newest accepted command below O (a cancel or replace consumed before the fire suppresses it)."""
        assert rec.txn is not None
        offsets = [
            tp.offset for tp, _ in rec.txn.offsets if (tp.topic, tp.partition) == (SCHEDULED, partition)
        ]
        assert offsets, f"rule 1: the fire of {sid}@{version} committed without its input partition's offset"
        below = [
            o
            for (p, o), (s, kind, _) in effective.items()
            if s == sid and p == partition and o < offsets[0] and kind != "poison"
        ]
        assert below and max(below) == version, (
            f"{sid}@{version} fired after being superseded at {max(below)}"
        )

    def _check_routed(self) -> None:
        """Every command sent outside its id's partition was copied home exactly once; every legacy state record
        was moved home exactly once."""
        copies: Counter[bytes] = Counter()
        moved: Counter[bytes] = Counter()
        for p in range(PARTS):
            for rec in self.cluster.log(SCHEDULED, p):
                if rec.status == "committed" and (origin := header(rec, HEADER_FORWARDED_FROM)) is not None:
                    copies[origin] += 1
                if rec.status == "committed" and header(rec, HEADER_RELOCATED_FROM) is not None:
                    assert rec.key is not None
                    moved[rec.key] += 1
        self._check_source_order()
        legacy_first = {sid: min(o for p, o, s, *_ in self.commands if s == sid) for sid in self.legacy}
        expected = Counter(
            b"%d/%d" % (p, o)
            for p, o, sid, _kind, _due in self.commands
            if p != home(sid) and legacy_first.get(sid) != o
        )
        assert copies == expected, f"forwarded copies {copies} != misrouted commands {expected}"
        assert moved == Counter(sid.encode() for sid in self.legacy), f"relocations {moved}"
        self.routed = {"forwarded": sum(copies.values()), "relocated": sum(moved.values())}

    def _check_source_order(self) -> None:
        """Commands one producer sent to one partition take effect in the order it sent them, wherever they were
        forwarded: a legacy id's state moved home ahead of every command sent after it."""
        legacy_first = {sid: min(o for p, o, s, *_ in self.commands if s == sid) for sid in self.legacy}
        seen: dict[tuple[str, int], int] = {}
        for p in range(PARTS):
            for rec in self.cluster.log(SCHEDULED, p):
                if rec.status != "committed" or rec.key is None:
                    continue
                sid = rec.key.decode()
                if (origin := header(rec, HEADER_FORWARDED_FROM)) is not None:
                    source, offset = (int(x) for x in origin.split(b"/"))
                elif header(rec, HEADER_RELOCATED_FROM) is not None:
                    source, offset = legacy_partition(sid), legacy_first[sid]
                elif home(sid) == p:
                    source, offset = p, rec.offset
                else:
                    continue
                last = seen.get((sid, source), -1)
                assert offset > last, f"{sid}: command {source}/{offset} took effect after {source}/{last}"
                seen[(sid, source)] = offset

    def drain(self) -> None:
        for name in NAMES:
            if self.instances[name] is None:
                self.restart(name)
        self.rebalance(dict.fromkeys(range(PARTS), NAMES[0]))
        dues = [due for *_, due in self.commands if due is not None]
        self.cluster.now_ms = max([self.cluster.now_ms, *dues]) + 1
        for _ in range(20):
            for name in NAMES:
                self.tick(name)
        self.check()
        self._check_final()

    def _check_final(self) -> None:
        fired = Counter(
            (header(r, "scheduler-fire-id") or b"").decode() for r in self.cluster.visible(TARGET)
        )
        effective = self.effective()
        newest: dict[str, tuple[int, str]] = {}
        for (_p, offset), (sid, kind, _due) in sorted(effective.items()):
            if kind != "poison":
                newest[sid] = (offset, kind)
        for sid, (offset, kind) in newest.items():
            if kind == "schedule":
                assert fired[f"{sid}@{offset}"] == 1, f"lost: {sid}@{offset} (newest schedule) never fired"
        state: dict[tuple[int, bytes | None], bytes | None] = {}
        for rec in self.cluster.visible(STATE):
            assert rec.key is not None
            at_home = rec.partition == partition_for(rec.key, PARTS)
            moved_away = rec.value is None and rec.key.decode() in self.legacy
            assert rec.txn is None or at_home or moved_away, f"rule 7: {rec.key!r} put in {rec.partition}"
            state[(rec.partition, rec.key)] = rec.value
        pending = {k for k, v in state.items() if v is not None}
        assert not pending, f"state topic still holds {pending} after the drain"
        rejects = Counter(
            (
                int(header(r, "scheduler-reject-partition") or b"-1"),
                int(header(r, "scheduler-reject-offset") or b"-1"),
            )
            for r in self.cluster.visible(REJECTED)
        )
        poison = {pos for pos, (_s, kind, _d) in effective.items() if kind == "poison"}
        assert set(rejects) == poison and all(n == 1 for n in rejects.values()), (
            f"rejects {rejects} != {poison}"
        )
        self._check_routed()
        assert not self.cluster.open_txns, "a transaction is still open"
        for p in range(PARTS):
            committed = self.cluster.group_offsets.get((SCHEDULED, p), 0)
            assert committed == self.cluster.end_offset(SCHEDULED, p), f"offsets of {p} stuck at {committed}"


STATS: Counter[str] = Counter()


class CoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        failpoints.configure(None)

    @initialize(
        legacy=st.lists(
            st.tuples(st.sampled_from(LEGACY), st.integers(-2000, 5000)), max_size=5, unique_by=lambda t: t[0]
        )
    )
    def start(self, legacy: list[tuple[str, int]]) -> None:
        self.sim = Sim(tuple(legacy))

    def teardown(self) -> None:
        try:
            self.sim.drain()
        finally:
            failpoints.configure(None)
            STATS.update(self.sim.cluster.stats)
            STATS["zombie_rejected"] += self.sim.zombie_rejected
            STATS["crashes"] += self.sim.crashed
            STATS["runs"] += 1
            STATS["prepared_fires"] += self.sim.prepared()
            STATS.update(getattr(self.sim, "routed", {}))
            for outcome, n in getattr(self.sim, "attempt_outcomes", {}).items():
                STATS[f"attempt_{outcome}"] += n
            self.sim.close()

    @rule(
        sid=st.sampled_from(IDS + LEGACY),
        delta=st.integers(-2000, 5000),
        kind=st.sampled_from(["schedule"] * 4 + ["poison"]),
        partition=st.one_of(st.none(), st.integers(0, PARTS - 1)),
    )
    def schedule(self, sid: str, delta: int, kind: str, partition: int | None) -> None:
        self.sim.command(sid, kind, delta, partition)

    @rule(sid=st.sampled_from(IDS + LEGACY), delta=st.integers(1, 3))
    def schedule_soon(self, sid: str, delta: int) -> None:
        """Due within the loop's preparation window (at least 1 ms; up to prepare_ahead_ms while the fake
        transactions take no time): the next tick may produce it ahead of its due time and hold the transaction
        open until then, the clock moving through the loop's sleep."""
        self.sim.command(sid, "schedule", delta)

    @rule(sid=st.sampled_from(IDS + LEGACY), partition=st.one_of(st.none(), st.integers(0, PARTS - 1)))
    def cancel(self, sid: str, partition: int | None) -> None:
        self.sim.command(sid, "cancel", partition=partition)

    @rule(
        cmds=st.lists(
            st.tuples(st.sampled_from(IDS + LEGACY), st.integers(-2000, 5000), st.booleans(), st.booleans()),
            max_size=4,
        ),
        ms=st.integers(0, 3000),
    )
    def burst(self, cmds: list[tuple[str, int, bool, bool]], ms: int) -> None:
        """Several commands, a clock step, then every live instance ticks: the traffic that makes fires."""
        for sid, delta, cancel, elsewhere in cmds:
            kind = "cancel" if cancel and delta % 3 == 0 else "schedule"
            self.sim.command(sid, kind, delta, (home(sid) + 1 + delta % 2) % PARTS if elsewhere else None)
        self.sim.cluster.now_ms += ms
        for name in self.sim.live():
            self.sim.tick(name)

    @rule(ms=st.integers(1, 3000))
    def advance(self, ms: int) -> None:
        self.sim.cluster.now_ms += ms

    @rule(name=st.sampled_from(NAMES), times=st.integers(1, 3))
    def tick(self, name: str, times: int) -> None:
        for _ in range(times):
            self.sim.tick(name)

    @rule(owners=st.lists(st.sampled_from(NAMES), min_size=PARTS, max_size=PARTS))
    def rebalance(self, owners: list[str]) -> None:
        if self.sim.live():
            self.sim.rebalance(dict(enumerate(owners)))

    @precondition(lambda self: bool(self.sim.live()))
    @rule(
        data=st.data(), point=st.sampled_from(CRASH_POINTS), restart=st.booleans(), fenced_runs=st.booleans()
    )
    def crash(self, data: st.DataObject, point: str, restart: bool, fenced_runs: bool) -> None:
        name = data.draw(st.sampled_from(self.sim.live()))
        old = self.sim.crash(name, point, restart)
        if restart and fenced_runs and old is not None:
            # the "crashed" process was only paused: it resumes after its replacement fenced it (F10)
            with contextlib.suppress(KafkaFatalError):
                old.loop.tick_once()

    @precondition(lambda self: any(i is None for i in self.sim.instances.values()))
    @rule(data=st.data())
    def restart(self, data: st.DataObject) -> None:
        self.sim.restart(data.draw(st.sampled_from([n for n, i in self.sim.instances.items() if i is None])))

    @precondition(lambda self: len(self.sim.live()) == 2)
    @rule(name=st.sampled_from(NAMES), new_owner_first=st.booleans(), abort_crash=st.booleans())
    def zombie(self, name: str, new_owner_first: bool, abort_crash: bool) -> None:
        if abort_crash:
            failpoints.configure("after_abort_before_seek=raise@1")
        try:
            self.sim.zombie(name, new_owner_first)
        except FailpointError:
            self.sim.kill(name)
            self.sim.restart(name)
        finally:
            failpoints.configure(None)

    @invariant()
    def safe(self) -> None:
        self.sim.check()


CoreMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestCore = CoreMachine.TestCase


def test_machine_exercised_faults() -> None:
    """Runs after TestCore in file order: a fault run in which nothing aborted or fenced is inconclusive."""
    if STATS["runs"] == 0:
        pytest.skip("TestCore did not run in this session")
    assert STATS["aborts"] > 0 and STATS["rejected_commits"] > 0 and STATS["zombie_rejected"] > 0, STATS
    assert STATS["forwarded"] > 0 and STATS["relocated"] > 0, STATS  # commands and state records routed home
    assert STATS["prepared_fires"] > 0, STATS  # transactions held open until their fires' due time
    # the per-transaction log names what happened: zombies fenced, crashed attempts left in flight
    assert (
        STATS["attempt_committed"] > 0 and STATS["attempt_fenced"] > 0 and STATS["attempt_in_flight"] > 0
    ), STATS
    # fencing of a resumed old producer and unstable committed offsets are rare in random runs: the
    # deterministic scenarios below assert both


# -- deterministic scenarios (independent of Hypothesis)


def serve_all(sim: Sim, name: str, ticks: int = 5) -> None:
    sim.rebalance(dict.fromkeys(range(PARTS), name))
    for _ in range(ticks):
        for n in sim.live():
            sim.tick(n)


def test_zombie_commit_is_rejected_and_invisible() -> None:
    sim = Sim()
    serve_all(sim, "x")
    sim.command("a", "schedule", 1000)
    sim.tick("x")
    sim.cluster.now_ms += 1500
    aborts = sim.cluster.stats["aborts"]
    sim.zombie(
        "x", new_owner_first=True
    )  # y rebuilds, fires a@...; x then plans the same fire on stale state
    assert sim.zombie_rejected == 1
    assert sim.cluster.stats["aborts"] == aborts + 1
    sim.check()
    assert len(sim.cluster.visible(TARGET)) == 1
    sim.drain()


def test_zombie_first_commit_rejected_then_new_owner_fires_once() -> None:
    sim = Sim()
    serve_all(sim, "x")
    sim.command("a", "schedule", 1000)
    sim.tick("x")
    sim.cluster.now_ms += 1500
    sim.zombie("x", new_owner_first=False)
    assert sim.zombie_rejected == 1
    assert sim.cluster.visible(TARGET) == []
    sim.drain()
    assert len(sim.cluster.visible(TARGET)) == 1


@pytest.mark.parametrize("point", CRASH_POINTS[:5])
def test_crash_mid_fire_leaves_nothing_visible_and_fires_once_after_recovery(point: str) -> None:
    sim = Sim()
    serve_all(sim, "x")
    sim.command("a", "schedule", 500)
    sim.tick("x")
    sim.cluster.now_ms += 1000
    old = sim.crash("x", point, restart=False)
    assert old is not None
    assert sim.cluster.visible(TARGET) == [], "an open transaction's fire became visible"
    assert sim.cluster.open_txns, "the crashed instance left its transaction open"
    # the other instance takes over; once the open transaction holds a state record (the LSO stops the replay)
    # or the input offsets (committed() is unstable), it must wait until that transaction resolves
    serve_all(sim, "y")
    if point in ("after_tombstone_produce", "after_send_offsets", "before_commit"):
        assert sim.cluster.visible(TARGET) == []
        assert partition_for(b"a", PARTS) not in sim.instances["y"].partitions.serving()  # type: ignore[union-attr]
    if point in ("after_send_offsets", "before_commit"):
        assert sim.cluster.stats["unstable_offsets"] > 0
    sim.restart("x")  # init_transactions aborts the stale transaction
    fenced = sim.cluster.stats["fenced"]
    try:
        old.loop.tick_once()  # the old process resumes: fenced, fail closed
    except KafkaFatalError:
        assert sim.cluster.stats["fenced"] == fenced + 1
    sim.drain()
    assert len(sim.cluster.visible(TARGET)) == 1


def test_crash_after_commit_before_index_does_not_refire() -> None:
    sim = Sim()
    serve_all(sim, "x")
    sim.command("a", "schedule", 500)
    sim.tick("x")
    sim.cluster.now_ms += 1000
    sim.crash("x", "after_commit_before_index", restart=True)
    assert len(sim.cluster.visible(TARGET)) == 1
    sim.drain()
    assert len(sim.cluster.visible(TARGET)) == 1


def test_cancel_in_the_same_tick_suppresses_a_due_fire() -> None:
    sim = Sim()
    serve_all(sim, "x")
    sim.command("a", "schedule", 500)
    sim.tick("x")
    sim.cluster.now_ms += 1000
    sim.command("a", "cancel")
    sim.tick("x")
    assert sim.cluster.visible(TARGET) == []
    sim.drain()
    assert sim.cluster.visible(TARGET) == []
