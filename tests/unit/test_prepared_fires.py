"""Prepared fires (`prepare_ahead_ms`): produced before their due time, committed at it, never visible early.

The real loop, planner and transaction runner on the in-memory transactional Kafka of the core state machine
test; its clock is the cluster's, and the loop's injected sleep moves it, so a transaction held open until a due
time commits exactly when the cluster's clock reaches it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.test_core_state_machine import NAMES, TARGET, Sim, header, home


@pytest.fixture
def sim() -> Iterator[Sim]:
    world = Sim()
    for _ in range(4):  # every partition rebuilt and serving
        tick_all(world)
    set_window(world, 5.0)  # as if a transaction took 5 ms from begin to offsets sent (fake ones take none)
    yield world
    world.close()


def set_window(sim: Sim, ms: float) -> None:
    for instance in sim.instances.values():
        assert instance is not None
        instance.loop._window = ms


def tick_all(sim: Sim) -> None:
    for name in NAMES:
        sim.tick(name)


def fires(sim: Sim) -> list[tuple[str, int, int, int, int | None]]:
    """(id, due-at, fired-at, record timestamp, committed at) of every visible fire."""
    out = []
    for rec in sim.cluster.visible(TARGET):
        due, fired_at = (
            int(header(rec, "scheduler-due-at") or b"0"),
            int(header(rec, "scheduler-fired-at") or b"0"),
        )
        sid = (header(rec, "scheduler-schedule-id") or b"").decode()
        out.append((sid, due, fired_at, rec.timestamp, rec.committed_at))
    return out


def test_a_fire_due_within_the_window_commits_at_its_due_time_stamped_with_it(sim: Sim) -> None:
    sim.command("soon", "schedule", 3)  # due in 3 ms: inside the default 5 ms window
    start = sim.cluster.now_ms
    tick_all(sim)
    [(sid, due, fired_at, stamp, committed)] = fires(sim)
    assert sid == "soon" and due == start + 3
    assert committed == due, "the transaction was held open until the due time, and committed then"
    assert fired_at == due and stamp == due, (
        "fired-at and the record timestamp are the due time, never before"
    )
    assert sim.cluster.now_ms == due  # the loop waited exactly as long as needed
    sim.check()


def test_nothing_beyond_the_window_is_prepared(sim: Sim) -> None:
    sim.command("later", "schedule", 40)
    start = sim.cluster.now_ms
    tick_all(sim)
    assert fires(sim) == [] and sim.cluster.now_ms == start  # no transaction held open for it
    sim.cluster.now_ms = start + 40
    tick_all(sim)
    assert [f[0] for f in fires(sim)] == ["later"]
    sim.check()


def test_a_log_append_time_target_is_never_prepared(sim: Sim) -> None:
    """The broker stamps such a record when it appends it: produced ahead, it would be stamped early (G3)."""
    for name in NAMES:
        instance = sim.instances[name]
        assert instance is not None
        instance.loop._targets.prepares = lambda _topic: False  # type: ignore[attr-defined]
    sim.command("append-time", "schedule", 3)
    start = sim.cluster.now_ms
    tick_all(sim)
    assert fires(sim) == [] and sim.cluster.now_ms == start
    sim.cluster.now_ms = start + 3
    tick_all(sim)
    [(_sid, due, fired_at, _stamp, committed)] = fires(sim)
    assert committed is not None and committed >= due and fired_at >= due
    sim.check()


def test_a_clock_stepping_back_while_a_fire_is_held_aborts_it_and_it_fires_once_later(sim: Sim) -> None:
    sim.command("held", "schedule", 3)
    start = sim.cluster.now_ms

    def step_back(_seconds: float) -> None:
        sim.cluster.now_ms -= 60_000  # the wall clock is stepped back a minute while the fire waits

    for name in NAMES:
        instance = sim.instances[name]
        assert instance is not None
        instance.loop._sleep = step_back
    tick_all(sim)
    assert fires(sim) == []  # aborted: nothing of the held transaction is visible
    aborted = sum(
        instance.loop._metrics.transactions.labels("aborted")._value.get()
        for instance in sim.instances.values()
        if instance is not None
    )
    assert aborted >= 1
    for name in NAMES:
        instance = sim.instances[name]
        assert instance is not None
        instance.loop._sleep = sim.cluster.advance
    sim.cluster.now_ms = start + 10
    tick_all(sim)
    assert [f[0] for f in fires(sim)] == ["held"]
    sim.check()


def test_a_cancel_consumed_before_the_prepared_transaction_suppresses_the_fire(sim: Sim) -> None:
    sim.command("cancelled", "schedule", 3)
    sim.command("cancelled", "cancel")
    tick_all(sim)
    sim.cluster.now_ms += 10
    tick_all(sim)
    assert fires(sim) == []
    sim.check()


def test_prepared_fires_are_counted(sim: Sim) -> None:
    a, b = next((f"a{i}", f"b{i}") for i in range(100) if home(f"a{i}") == home(f"b{i}"))  # one partition
    sim.command(a, "schedule", 2)
    sim.command(b, "schedule", 4)
    tick_all(sim)
    assert sorted(f[0] for f in fires(sim)) == [a, b]
    counted = sum(
        instance.loop._metrics.prepared._value.get()
        for instance in sim.instances.values()
        if instance is not None
    )
    assert counted == 2
    assert all(f[2] == sim.cluster.now_ms for f in fires(sim))  # one transaction, committed at the later due


def test_the_window_follows_what_a_transaction_takes_to_prepare(sim: Sim) -> None:
    """Fires due before a transaction could commit anyway are prepared; nothing later, so an overdue fire in the
    same transaction is not held back: with transactions that take no time, the window is its 1 ms floor."""
    set_window(sim, 0.0)
    sim.command("in-3ms", "schedule", 3)
    start = sim.cluster.now_ms
    tick_all(sim)
    assert fires(sim) == [] and sim.cluster.now_ms == start
    sim.command("in-1ms", "schedule", 1)
    tick_all(sim)
    assert [f[0] for f in fires(sim)] == ["in-1ms"] and sim.cluster.now_ms == start + 1


def test_a_backlog_is_drained_without_holding_transactions_for_fires_not_yet_due(sim: Sim) -> None:
    """More due than one transaction takes (here 2): the next tick follows at once, nothing is prepared, even a
    schedule that just arrived (this tick's own intake goes first)."""
    ids = [f"x{i}" for i in range(400) if home(f"x{i}") == home("soon")][:5]
    start = sim.cluster.now_ms
    for sid in ids:
        sim.command(sid, "schedule", 10)
    tick_all(sim)  # taken in, not due
    sim.cluster.now_ms = start + 20
    tick_all(sim)  # two of them fire; three are left behind, a backlog
    assert len(fires(sim)) == 2
    sim.command("soon", "schedule", 3)
    tick_all(sim)
    assert sim.cluster.now_ms == start + 20, "no transaction was held open for a fire not yet due"
    assert "soon" not in [f[0] for f in fires(sim)]
    sim.cluster.now_ms = start + 23
    for _ in range(4):
        tick_all(sim)
    assert sorted(f[0] for f in fires(sim)) == sorted([*ids, "soon"])
    sim.check()
