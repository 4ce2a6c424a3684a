"""Failover in seconds: a departed owner's open transaction is fenced at once; a static restart keeps the group."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scheduler.partitioner import partition_for
from tests.conftest import wait_until
from tests.integration.scheduler_helpers import Tail, read_all
from tests.integration.test_scheduler_faults import assert_exactly_once, pending_in_state, schedule_many
from tests.scheduler_proc import SchedulerProcess, SchedulerStack

PARTITIONS = 4
TXN_TIMEOUT_MS = 60_000  # far beyond the session timeout (6 s): waiting it out would be unmistakable


@pytest.fixture
def stack(kafka_bootstrap: str, unique: Callable[[str], str], tmp_path: Path) -> Iterator[SchedulerStack]:
    """Fresh topics of 4 partitions; every instance with a 60 s transaction timeout; none started."""
    made = SchedulerStack(
        kafka_bootstrap,
        unique("failover"),
        tmp_path,
        partitions=PARTITIONS,
        extra_env={"KAFKA_SCHEDULER_TRANSACTION_TIMEOUT_MS": str(TXN_TIMEOUT_MS)},
    ).create()
    try:
        yield made
    finally:
        made.close()


def owned(instance: SchedulerProcess) -> set[int]:
    """Partitions an instance serves, from its pending gauge (one series per owned partition)."""
    try:
        _status, text = instance.get("/metrics")
    except OSError:
        return set()
    return {
        int(line.split('partition="', 1)[1].split('"', 1)[0])
        for line in text.splitlines()
        if line.startswith("kafka_scheduler_pending_schedules{") and 'partition="' in line
    }


def two_members(stack: SchedulerStack, **second_env: str) -> tuple[SchedulerProcess, SchedulerProcess]:
    """i0 then i1, each serving half of the partitions."""
    first = stack.start_instance()
    second = stack.start_instance(wait=False, **second_env)
    wait_until(
        lambda: len(owned(first)) == len(owned(second)) == PARTITIONS // 2 and second.ready(),
        60,
        "two members serving two partitions each",
    )
    return first, second


def stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "T"


def ids_in(partitions: set[int], n: int) -> set[str]:
    return {f"s-{i}" for i in range(n) if partition_for(f"s-{i}".encode(), PARTITIONS) in partitions}


def test_an_owner_killed_mid_transaction_is_fenced_and_its_partitions_fire_before_the_timeout(
    stack: SchedulerStack,
) -> None:
    target = stack.create_target(f"{stack.scheduled_topic}-target", PARTITIONS)
    # the victim's first transaction (intake) commits, stamping its id on its offsets; the second stops after
    # producing and sending its offsets: open, pinning its state partitions' last stable offset
    survivor, victim = two_members(stack, KAFKA_SCHEDULER_FAILPOINTS="after_send_offsets=pause@2")
    victims = owned(victim)
    schedule_many(stack, target, 40, 4.0, 1.0)
    assert victim.proc is not None
    wait_until(lambda: stopped(victim.proc.pid), 30, "the victim to stop inside its fire transaction")
    victim.kill()  # SIGKILL with the transaction open
    killed_at = time.monotonic()
    tail = Tail(stack.bootstrap, target)
    # the session (6 s) + a rebuild; waiting for the transaction timeout would take 60 s
    tail.poll_until(lambda r: len({x.header("scheduler-fire-id") for x in r}) >= 40, 25, "all 40 fires")
    took = time.monotonic() - killed_at
    tail.poll_for(1.0)  # a duplicate would come right behind
    tail.close()
    assert took < 20, f"fires of the killed partitions came {took:.1f}s after the kill"
    assert_exactly_once(read_all(stack.bootstrap, target), 40)
    assert survivor.metric("kafka_scheduler_fenced_departed_total") == 1, survivor.log_tail()
    assert survivor.metric("kafka_scheduler_assigned_partitions") == PARTITIONS and victims
    wait_until(lambda: pending_in_state(stack) == 0, 30, "state topic drained")


def test_a_static_restart_gets_its_partitions_back_without_a_rebalance(stack: SchedulerStack) -> None:
    target = stack.create_target(f"{stack.scheduled_topic}-target", PARTITIONS)
    survivor, victim = two_members(stack)
    theirs, mine = owned(victim), owned(survivor)
    log_lines = len(survivor.log_path.read_text().splitlines())
    victim.kill()
    restarted = SchedulerProcess(victim.env, stack.workdir / "restarted.log")  # same instance id: i1
    stack.instances.append(restarted)
    restarted.start()
    started = time.monotonic()
    schedule_many(stack, target, 40, 1.0, 0.5)
    expected = len(ids_in(theirs, 40))
    # before the dead member's session (6 s) could expire: only a static rejoin serves this early
    wait_until(
        lambda: restarted.metric('kafka_scheduler_fired_total{result="ok"}') >= expected,
        5.5,
        f"the restarted instance to fire its {expected} schedules",
    )
    assert time.monotonic() - started < 5.5
    tail = Tail(stack.bootstrap, target)
    tail.poll_until(lambda r: len(r) >= 40, 30, "all 40 fires")
    tail.close()
    assert_exactly_once(read_all(stack.bootstrap, target), 40)
    wait_until(lambda: owned(restarted) == theirs, 10, "the restarted instance to own what the victim owned")
    assert owned(survivor) == mine
    later = survivor.log_path.read_text().splitlines()[log_lines:]
    assert not [line for line in later if "assigned partitions" in line or "revoked partitions" in line], (
        later
    )


def test_partitions_moved_from_a_live_member_fence_nobody(stack: SchedulerStack) -> None:
    target = stack.create_target(f"{stack.scheduled_topic}-target", PARTITIONS)
    first = stack.start_instance()
    schedule_many(stack, target, 200, 1.0, 8.0)  # firing throughout: i0 commits transactions as i1 joins
    wait_until(lambda: first.metric("kafka_scheduler_fired_total") > 0, 30, "the first instance fires")
    second = stack.start_instance(wait=False)
    wait_until(lambda: len(owned(second)) == PARTITIONS // 2, 60, "the second takes half the partitions")
    third = stack.start_instance(wait=False)
    wait_until(lambda: len(owned(third)) >= 1, 60, "the third takes a share")
    tail = Tail(stack.bootstrap, target)
    tail.poll_until(lambda r: len(r) >= 200, 60, "all 200 fires")
    tail.close()
    assert_exactly_once(read_all(stack.bootstrap, target), 200)
    for instance in (first, second, third):
        assert instance.proc is not None and instance.proc.poll() is None, instance.log_tail()
        assert instance.metric("kafka_scheduler_fenced_departed_total") == 0, instance.log_tail()


def test_a_twin_with_a_live_instance_id_ends_one_of_the_two_fail_closed(stack: SchedulerStack) -> None:
    """F10 with static membership: the second join with one group.instance.id fences the first member (and the
    second's init_transactions its producer); one process exits non-zero, the other serves, nothing fires twice."""
    target = stack.create_target(f"{stack.scheduled_topic}-target", PARTITIONS)
    first = stack.start_instance()
    schedule_many(stack, target, 60, 2.0, 6.0)
    twin = SchedulerProcess(first.env, stack.workdir / "twin.log")  # the same instance id, i0
    stack.instances.append(twin)
    twin.start()
    assert first.proc is not None and twin.proc is not None
    procs = (first.proc, twin.proc)
    wait_until(lambda: any(p.poll() is not None for p in procs), 40, "one of the twins to exit")
    ended = [p for p in procs if p.poll() is not None]
    assert len(ended) == 1 and ended[0].returncode != 0, (first.log_tail(), twin.log_tail())
    tail = Tail(stack.bootstrap, target)
    tail.poll_until(lambda r: len({x.header("scheduler-fire-id") for x in r}) >= 60, 60, "all 60 fires")
    tail.poll_for(1.0)
    tail.close()
    assert_exactly_once(read_all(stack.bootstrap, target), 60)
