"""Clock jumps through the real planner and due index (F19-F21 at unit level; the loop's clock is injectable).

Forward jump: everything that became due fires at once, exactly once, in chunks of `max_fires`, each counted late
(fired-at minus due > 0). Backward jump: nothing fires whose due is after the (new) clock; nothing already fired
fires again, because firing removed it from the index in the committed transaction.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.codec import encode_state, peek_due_ms
from scheduler.model import Schedule
from scheduler.service.index import DueIndex
from scheduler.service.plan import plan_tick

T0 = 1_767_225_600_000


def accept(_s: Schedule, _n: int) -> None:
    return None


class Sim:
    """A partition's index plus the loop's apply-after-commit step; every tick commits."""

    def __init__(self, dues: list[int], max_fires: int = 50) -> None:
        self.index = DueIndex()
        self.max_fires = max_fires
        for i, due in enumerate(dues):
            self.index.put(f"s{i}".encode(), encode_state(Schedule(f"s{i}", "t", due, b"x"), i))
        self.fired: Counter[bytes] = Counter()
        self.late: list[int] = []  # what the loop observes into fire_lateness_seconds (ms here)

    def tick(self, now: int) -> int:
        plan = plan_tick([], {0: self.index}, now, validate=accept, max_fires=self.max_fires)
        for fire in plan.fires:
            due = peek_due_ms(fire.record)
            assert due <= now, f"fired early: due {due} > clock {now}"
            self.fired[fire.schedule_id] += 1
            self.late.append(now - due)
        for (_p, sid), value in plan.state_writes.items():  # the transaction committed: apply
            assert value is None
            self.index.remove(sid)
        return len(plan.fires)


def test_forward_jump_fires_everything_due_once_and_counts_it_late() -> None:
    dues = [T0 + i * 1000 for i in range(500)]  # one per second for 500 s
    sim = Sim(dues)
    assert sim.tick(T0 - 1) == 0
    jumped = T0 + 3_600_000  # the clock jumps an hour ahead
    ticks = 0
    while sim.tick(jumped):
        ticks += 1
    assert ticks == 10  # 500 fires in chunks of max_fires=50
    assert set(sim.fired.values()) == {1} and len(sim.fired) == 500
    assert min(sim.late) > 0 and max(sim.late) == 3_600_000


def test_backward_jump_fires_nothing_early_and_nothing_twice() -> None:
    dues = [T0 + i * 100 for i in range(100)]  # 0..9.9 s
    sim = Sim(dues)
    while sim.tick(T0 + 5_000):
        pass
    fired_before = dict(sim.fired)
    assert len(fired_before) == 51
    back = T0 + 1_000  # the clock steps back 4 s
    assert sim.tick(back) == 0  # nothing left is due before the new clock, and fired ones are gone
    assert sim.tick(T0 + 5_000) == 0
    assert sim.tick(T0 + 5_100) == 1
    while sim.tick(T0 + 20_000):
        pass
    assert set(sim.fired.values()) == {1} and len(sim.fired) == 100


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(min_value=-5_000, max_value=20_000), min_size=1, max_size=60),
    st.lists(st.integers(min_value=-30_000, max_value=30_000), min_size=1, max_size=40),
    st.integers(min_value=1, max_value=20),
)
def test_any_clock_path_never_early_never_twice_and_all_fire_in_the_end(
    offsets: list[int], steps: list[int], max_fires: int
) -> None:
    sim = Sim([T0 + o for o in offsets], max_fires)
    now = T0
    for step in steps:  # forward and backward jumps of up to 30 s
        now += step
        sim.tick(now)  # asserts never early
    final = T0 + 60_000
    while sim.tick(final):
        pass
    assert len(sim.fired) == len(offsets) and set(sim.fired.values()) == {1}
    assert len(sim.index) == 0


def test_the_real_loop_on_an_injected_clock_jumping_forward_then_back() -> None:
    """SchedulerLoop(clock=...) on the in-memory transactional Kafka of the core state machine test."""
    from tests.unit.test_core_state_machine import NAMES, TARGET, Sim, header

    sim = Sim()
    t0 = sim.cluster.now_ms

    def run_ticks(n: int = 6) -> None:
        for _ in range(n):
            for name in NAMES:
                sim.tick(name)

    def fired() -> Counter[str]:
        return Counter((header(r, "scheduler-fire-id") or b"").decode() for r in sim.cluster.visible(TARGET))

    for i in range(20):
        sim.command(f"j{i}", "schedule", 1_000 + 100 * i)
    run_ticks()
    assert not fired()
    sim.cluster.now_ms = t0 + 3_600_000  # forward an hour
    run_ticks()
    assert len(fired()) == 20 and set(fired().values()) == {1}
    lateness = [
        int(header(r, "scheduler-fired-at") or b"0") - int(header(r, "scheduler-due-at") or b"0")
        for r in sim.cluster.visible(TARGET)
    ]
    assert min(lateness) > 3_500_000  # counted late
    observed = {"_count": 0.0, "_sum": 0.0}
    for name in NAMES:
        instance = sim.instances[name]
        assert instance is not None
        for sample in instance.loop._metrics.fire_lateness.collect()[0].samples:
            for suffix in observed:
                if sample.name.endswith(suffix):
                    observed[suffix] += sample.value
    assert (
        observed["_count"] == 20 and observed["_sum"] > 20 * 3_500
    )  # the loop's lateness histogram, seconds
    sim.cluster.now_ms = t0 + 500  # back, below every due time of the next batch
    for i in range(10):
        sim.command(f"k{i}", "schedule", 1_000 + 100 * i)  # due t0+1.5 s .. t0+2.4 s on the new clock
    run_ticks()
    assert len(fired()) == 20  # nothing early on the stepped-back clock, nothing fired twice
    sim.cluster.now_ms = t0 + 5_000
    run_ticks()
    assert len(fired()) == 30 and set(fired().values()) == {1}
    sim.check()  # never early relative to the clock at commit; every fire the newest version
