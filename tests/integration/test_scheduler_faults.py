"""Exactly once through rebalances, SIGKILL at every named failpoint, and a SIGSTOPped zombie."""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import timedelta

import pytest

from scheduler.client import SchedulerClient
from tests.conftest import wait_until
from tests.integration.scheduler_helpers import Record, Tail, read_all
from tests.scheduler_proc import SchedulerStack


def assert_exactly_once(records: list[Record], expected: int) -> None:
    counts = Counter(r.header("scheduler-fire-id") for r in records)
    duplicates = {fid: n for fid, n in counts.items() if n > 1}
    assert not duplicates, f"fired more than once: {duplicates}"
    assert len(counts) == expected, f"expected {expected} distinct fires, got {len(counts)}"
    for rec in records:
        assert int(rec.header("scheduler-fired-at")) >= int(rec.header("scheduler-due-at")), rec


def pending_in_state(stack: SchedulerStack) -> int:
    """Schedules still pending according to the state topic (last record per key, read_committed)."""
    last: dict[bytes | None, bytes | None] = {}
    for rec in read_all(stack.bootstrap, stack.settings.state):
        last[rec.key] = rec.value
    return sum(v is not None for v in last.values())


def schedule_many(stack: SchedulerStack, target: str, n: int, first_s: float, spread_s: float) -> None:
    with SchedulerClient(settings=stack.client_settings) as client:
        for i in range(n):
            delay = timedelta(seconds=first_s + spread_s * i / max(1, n - 1))
            client.schedule(f"s-{i}", topic=target, value=str(i), key=f"user-{i % 17}", delay=delay)


def test_partitions_move_one_to_two_to_one_while_firing(scheduler_topics: SchedulerStack) -> None:
    stack = scheduler_topics
    target = stack.create_target(f"{stack.scheduled_topic}-target")
    first = stack.start_instance()
    schedule_many(stack, target, 300, 2.0, 12.0)
    time.sleep(3)  # let some fire on one instance before the group grows
    second = stack.start_instance()
    wait_until(
        lambda: second.metric("kafka_scheduler_assigned_partitions") >= 1, 30, "the second owns a partition"
    )
    wait_until(lambda: second.metric("kafka_scheduler_fired_total") > 0, 30, "the second instance fires too")
    assert second.stop() == 0, second.log_tail()
    wait_until(lambda: first.metric("kafka_scheduler_assigned_partitions") == 3, 30, "all back on the first")
    tail = Tail(stack.bootstrap, target)
    tail.poll_until(lambda r: len(r) >= 300, 60, "300 fires")
    tail.close()
    assert_exactly_once(read_all(stack.bootstrap, target), 300)
    wait_until(lambda: pending_in_state(stack) == 0, 30, "state topic drained")


FIRE_FAILPOINTS = [
    "after_begin",
    "after_fire_produce",
    "after_tombstone_produce",
    "after_send_offsets",
    "before_commit",
    "after_commit_before_index",
    "mid_rebuild",
]


@pytest.mark.parametrize("failpoint", FIRE_FAILPOINTS)
def test_sigkill_at_failpoint_then_restart_fires_exactly_once(
    scheduler_topics: SchedulerStack, failpoint: str
) -> None:
    stack = scheduler_topics
    target = stack.create_target(f"{stack.scheduled_topic}-target")
    accepting = stack.start_instance()
    all_due = time.monotonic() + 5.6
    schedule_many(stack, target, 40, 5.0, 0.5)
    wait_until(
        lambda: accepting.metric('kafka_scheduler_commands_total{result="scheduled"}') >= 40, 30, "intake"
    )
    wait_until(lambda: pending_in_state(stack) == 40, 30, "40 pending in the state topic")
    assert accepting.stop() == 0
    time.sleep(max(0.0, all_due - time.monotonic()))  # all due: the next instance's first transaction fires
    doomed = stack.start_instance(wait=False, KAFKA_SCHEDULER_FAILPOINTS=f"{failpoint}=kill@1")
    assert doomed.proc is not None
    wait_until(lambda: doomed.proc.poll() is not None, 60, f"the instance to die at {failpoint}")
    assert doomed.proc.returncode == -signal.SIGKILL, doomed.log_tail()
    survivor = stack.start_instance()
    tail = Tail(stack.bootstrap, target)
    tail.poll_until(
        lambda r: len({x.header("scheduler-fire-id") for x in r}) >= 40, 60, "40 fires after recovery"
    )
    time.sleep(1)  # a duplicate would be produced right behind the fires; give it time to show
    tail.close()
    assert_exactly_once(read_all(stack.bootstrap, target), 40)
    aborted_visible = read_all(stack.bootstrap, target, committed=False)
    assert len(aborted_visible) >= 40  # read_uncommitted also sees what a killed transaction left behind
    wait_until(lambda: pending_in_state(stack) == 0, 30, "state topic drained")
    assert survivor.metric("kafka_scheduler_fired_total") >= (
        0 if failpoint == "after_commit_before_index" else 1
    )


def test_sigstopped_instance_wakes_after_losing_its_partitions_and_fires_nothing(
    scheduler_topics: SchedulerStack,
) -> None:
    stack = scheduler_topics
    target = stack.create_target(f"{stack.scheduled_topic}-target")
    zombie = stack.start_instance()
    schedule_many(stack, target, 60, 3.0, 1.0)
    wait_until(lambda: pending_in_state(stack) == 60, 30, "60 pending")
    zombie.signal(signal.SIGSTOP)
    try:
        heir = stack.start_instance(wait=False)
        wait_until(lambda: heir.metric("kafka_scheduler_assigned_partitions") == 3, 60, "the heir owns all")
        tail = Tail(stack.bootstrap, target)
        tail.poll_until(lambda r: len(r) >= 60, 60, "60 fires by the heir")
    finally:
        zombie.signal(signal.SIGCONT)
    time.sleep(5)  # the zombie wakes with due schedules in its index: whatever it tries must not land
    tail.poll_until(lambda r: True, 1, "")
    tail.close()
    assert_exactly_once(read_all(stack.bootstrap, target), 60)
    assert heir.metric("kafka_scheduler_fired_total") == 60


def test_zombie_frozen_mid_transaction_is_fenced(scheduler_topics: SchedulerStack) -> None:
    """SIGSTOP inside a fire transaction, past session and transaction timeouts: its fires never land."""
    stack = scheduler_topics
    target = stack.create_target(f"{stack.scheduled_topic}-target")
    accepting = stack.start_instance()
    schedule_many(stack, target, 30, 4.0, 0.3)
    wait_until(lambda: pending_in_state(stack) == 30, 30, "30 pending")
    assert accepting.stop() == 0
    zombie = stack.start_instance(wait=False, KAFKA_SCHEDULER_FAILPOINTS="after_fire_produce=pause@1")
    assert zombie.proc is not None
    try:
        wait_until(lambda: _stopped(zombie.proc.pid), 30, "the zombie to freeze inside its fire transaction")
        heir = stack.start_instance(wait=False)
        tail = Tail(stack.bootstrap, target)
        tail.poll_until(lambda r: len(r) >= 30, 90, "30 fires by the heir")
    finally:
        zombie.signal(signal.SIGCONT)
    wait_until(
        lambda: zombie.proc.poll() is not None or not _stopped(zombie.proc.pid), 10, "the zombie wakes"
    )
    time.sleep(5)  # whatever the woken zombie still tries (tombstones, offsets, commit) must not land
    tail.poll_until(lambda r: True, 1, "")
    tail.close()
    assert_exactly_once(read_all(stack.bootstrap, target), 30)
    # The zombie's fires may never have left its client before the freeze; what must hold is that its transaction
    # was refused: aborted after the stale-generation offset commit, or the producer fenced (a fatal exit).
    zombie_log = zombie.log_tail(400)
    fenced = "aborting the transaction" in zombie_log or "fenced" in zombie_log.lower()
    assert fenced or zombie.proc.poll() not in (None, 0), zombie_log
    assert heir.metric("kafka_scheduler_fired_total") == 30


def _stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "T"
    except FileNotFoundError:
        return False
