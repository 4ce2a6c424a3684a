"""The fire path's scheduling, through the real loop, planner and due index against the fake Kafka (simulated time).

- A command that arrives while the loop waits, due before the planned wake-up, wakes it at its due time; commands
  due later are only collected, so the wait still ends in one transaction.
- The fire budget goes to the earliest due across partitions (a merge), ties shared evenly.
- A burst does not starve what comes due just after it (fresh first), and the backlog keeps its share.
- Intake is bounded while fires are due, yet always progresses, and survives an abort exactly once.
Orders and counts only: the clock is the fake's, nothing here is timed.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.codec import decode_state, encode_schedule, encode_state, peek_due_ms
from scheduler.model import HEADER_SCHEDULE_ID, Schedule
from scheduler.partitioner import partition_for
from scheduler.service.firing import BACKLOG_SHARE, select_due
from scheduler.service.index import DueIndex
from scheduler.service.pacing import INTAKE_HOLD_MS, MIN_INTAKE, TickCost
from scheduler.service.plan import plan_tick
from tests.unit.fake_kafka import FakeCluster
from tests.unit.test_core_state_machine import DLT, PARTS, REJECTED, SCHEDULED, STATE, TARGET, Instance

T = 1_800_000_000_000


def accept(_s: Schedule, _n: int) -> None:
    return None


def world(
    tmp_path: Path, max_fires: int = 2000, burst: int = 0, burst_at: int = T
) -> tuple[FakeCluster, Instance]:
    """One instance serving all partitions, `burst` state records due at `burst_at` already in the state topic."""
    cluster = FakeCluster({SCHEDULED: PARTS, STATE: PARTS, REJECTED: 1, DLT: 1, TARGET: 2}, now_ms=T - 10_000)
    for i in range(burst):
        sid = f"b{i:06d}"
        record = encode_state(Schedule(sid, TARGET, burst_at, b"x"), i)
        cluster.append(STATE, partition_for(sid.encode(), PARTS), sid.encode(), record)
    instance = Instance(cluster, "x", tmp_path, max_fires=max_fires)
    cluster.rebalance({instance.member: list(range(PARTS))}, SCHEDULED)
    for _ in range(20):
        instance.loop.tick_once()
    assert len(instance.partitions.serving()) == PARTS
    return cluster, instance


def send(cluster: FakeCluster, sid: str, due: int) -> None:
    cluster.produce_plain(SCHEDULED, sid.encode(), encode_schedule(Schedule(sid, TARGET, due, b"y")))


def fired(cluster: FakeCluster) -> dict[str, int]:
    """Schedule id -> the simulated clock when its fire's transaction committed."""
    out = {}
    for rec in cluster.visible(TARGET):
        sid = dict(rec.headers)[HEADER_SCHEDULE_ID]
        assert sid is not None and rec.committed_at is not None
        out[sid.decode()] = rec.committed_at
    return out


def intaken(cluster: FakeCluster) -> int:
    return sum(cluster.group_offsets.get((SCHEDULED, p), 0) for p in range(PARTS))


# ---------------------------------------------------------------------------------------------------- wake-up


def test_a_short_delay_sent_mid_wait_wakes_the_loop_at_its_due_time(tmp_path: Path) -> None:
    cluster, instance = world(tmp_path)
    instance.consumer.blocking = True
    now = cluster.now_ms
    send(cluster, "later", now + 10_000)
    instance.loop.tick_once()  # takes "later" in; the loop now waits on it (capped by max_wait_ms, 200 ms)
    start = cluster.now_ms
    cluster.at(start + 10, lambda: send(cluster, "short", start + 60))  # a 50 ms delay, sent during the wait
    instance.loop.tick_once()
    got = fired(cluster)
    assert got == {"short": start + 60}, "fired at its due time, not at the end of the 200 ms wait"


def test_commands_due_after_the_wake_up_keep_the_wait_batched(tmp_path: Path) -> None:
    cluster, instance = world(tmp_path)
    instance.consumer.blocking = True
    start = cluster.now_ms
    for i in range(10):
        cluster.at(start + 10 * (i + 1), lambda i=i: send(cluster, f"far{i}", start + 60_000))
    commits = cluster.stats["commits"]
    instance.loop.tick_once()
    assert cluster.stats["commits"] == commits + 1, "ten arrivals during one wait: one transaction"
    assert intaken(cluster) == 10
    assert cluster.now_ms == start + 200  # the whole max_wait_ms: nothing was due sooner


def test_a_command_due_now_sent_mid_wait_fires_at_once(tmp_path: Path) -> None:
    cluster, instance = world(tmp_path)
    instance.consumer.blocking = True
    start = cluster.now_ms
    cluster.at(start + 30, lambda: send(cluster, "now", start + 30))
    instance.loop.tick_once()
    assert fired(cluster) == {"now": start + 30}


# ---------------------------------------------------------------------------------------------------- merge


def index(entries: list[tuple[str, int]]) -> DueIndex:
    ix = DueIndex()
    for n, (sid, due) in enumerate(entries):
        ix.put(sid.encode(), encode_state(Schedule(sid, TARGET, due, b"x"), n))
    return ix


def test_the_budget_goes_to_the_earliest_due_across_partitions() -> None:
    late = index([(f"late{i}", T - 100 + i) for i in range(100)])  # partition 0: due in the last 100 ms
    early = index([(f"early{i}", T - 1000 + i) for i in range(100)])  # partition 1: due a second ago
    plan = plan_tick([], {0: late, 1: early}, T, validate=accept, max_fires=100)
    assert {f.partition for f in plan.fires} == {1}
    dues = [peek_due_ms(f.record) for f in plan.fires]
    assert dues == sorted(dues)


def test_a_burst_due_in_one_millisecond_is_shared_evenly_across_partitions() -> None:
    indexes = {p: index([(f"p{p}-{i}", T) for i in range(1000)]) for p in range(3)}
    got = Counter(p for p, _sid, _rec in select_due(indexes, T, 300, None))
    assert got == {0: 100, 1: 100, 2: 100}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.integers(-50, 50), max_size=30), min_size=1, max_size=4),
    st.integers(0, 60),
    st.none() | st.integers(-60, 40),
)
def test_selection_matches_a_model(dues: list[list[int]], room: int, fresh_after: int | None) -> None:
    """Never early; fresh (due > fresh_after) before the backlog, each part the earliest across partitions; the
    backlog keeps its share; nothing is taken twice."""
    now = T
    indexes = {p: index([(f"{p}-{i}", now + d) for i, d in enumerate(ds)]) for p, ds in enumerate(dues)}
    after = None if fresh_after is None else now + fresh_after
    got = select_due(indexes, now, room, after)
    assert len({(p, sid) for p, sid, _ in got}) == len(got)
    got_dues = [peek_due_ms(rec) for _p, _sid, rec in got]
    assert all(d <= now for d in got_dues)
    due = sorted(now + d for ds in dues for d in ds if d <= 0)
    if after is None or after < now:
        while True:  # a burst where the budget runs out, and all before it, count as backlog
            window = [d for d in due if after is None or d > after]
            if len(window) <= room or due.count(window[room - 1] if room else window[0]) <= max(1, room // 2):
                break
            after = window[room - 1] if room else window[0]
    if after is None or after >= now:
        assert got_dues == due[:room]
        return
    fresh = [d for d in due if d > after]
    backlog = [d for d in due if d <= after]
    reserve = min(len(backlog), room // BACKLOG_SHARE)
    want_fresh = fresh[: room - reserve]
    assert got_dues == want_fresh + backlog[: room - len(want_fresh)]


# ---------------------------------------------------------------------------------------------------- bursts


def test_a_schedule_due_during_the_first_burst_tick_is_not_starved(tmp_path: Path) -> None:
    cluster, instance = world(tmp_path, max_fires=500, burst=5000)
    cluster.now_ms = T - 100
    send(cluster, "fresh", T + 3)
    instance.loop.tick_once()
    cluster.now_ms = (
        T + 5
    )  # the first tick after the burst instant sees the burst and "fresh" come due together
    instance.loop.tick_once()
    got = fired(cluster)
    assert got["fresh"] == T + 5 and len(got) == 500


def test_a_burst_does_not_starve_a_schedule_due_just_after_it(tmp_path: Path) -> None:
    cluster, instance = world(tmp_path, max_fires=500, burst=5000)
    cluster.now_ms = T - 100
    send(cluster, "fresh", T + 5)
    instance.loop.tick_once()  # taken in before the burst
    cluster.now_ms = T
    instance.loop.tick_once()  # a chunk of the burst ("fresh" comes due soon: a short tick)
    cluster.now_ms = T + 10
    instance.loop.tick_once()
    got = fired(cluster)
    assert got["fresh"] == T + 10, "fired in the first tick after its due time"
    ticks = 2
    while len(fired(cluster)) < 5001:
        cluster.now_ms += 10
        instance.loop.tick_once()
        ticks += 1
    assert ticks <= 12  # 5001 fires in ticks of 500 take 11: the burst drained at nearly the full rate


def test_a_burst_behind_a_fresh_stream_in_the_same_tick_waits_its_turn() -> None:
    """The burst is neither the earliest pending millisecond nor before the previous tick: still backlog."""
    stream = index([(f"s{i}", T - 50 + i * 10) for i in range(6)])  # T-50 .. T: some due before the burst
    burst = index([(f"b{i}", T - 20) for i in range(1000)])
    got = select_due({0: stream, 1: burst}, T, 100, T - 60)
    assert Counter(p for p, _sid, _rec in got) == {0: 6, 1: 94}
    # those before the burst drain first in the backlog part, those after it in the fresh part: all in this tick
    assert {sid for p, sid, _rec in got if p == 0} == {f"s{i}".encode() for i in range(6)}


def test_the_backlog_keeps_its_share_under_a_flood_of_fresh_schedules() -> None:
    backlog = index([(f"old{i}", T - 2000) for i in range(1000)])
    fresh = index([(f"new{i}", T - 999 + i) for i in range(1000)])  # one per millisecond: a stream, no burst
    got = select_due({0: backlog, 1: fresh}, T, 100, T - 1000)
    assert Counter(p for p, _sid, _rec in got) == {1: 100 - 100 // BACKLOG_SHARE, 0: 100 // BACKLOG_SHARE}


def test_while_something_comes_due_the_backlog_goes_in_short_ticks(tmp_path: Path) -> None:
    cluster, instance = world(tmp_path, max_fires=2000, burst=20_000)
    for i in range(50):
        send(cluster, f"stream{i}", T + 1 + i)  # one every millisecond after the burst
    cluster.now_ms = T - 100
    instance.loop.tick_once()
    cluster.now_ms = T
    instance.loop.tick_once()
    first = len(fired(cluster))
    assert 2000 // BACKLOG_SHARE <= first < 2000, "a backlog chunk: the schedule due next waits a short tick"
    cluster.now_ms = T + 20
    instance.loop.tick_once()
    got = fired(cluster)
    # due by T + 20, and those the tick prepared (due within its window, committed when the clock, moved by the
    # loop's sleep, reached them)
    assert T + 20 <= cluster.now_ms <= T + 20 + instance.settings.prepare_ahead_ms
    expected = {f"stream{i}" for i in range(50) if T + 1 + i <= cluster.now_ms}
    assert {sid for sid in got if sid.startswith("stream")} == expected


# ---------------------------------------------------------------------------------------------------- intake


def test_intake_is_bounded_while_fires_are_due_and_still_progresses(tmp_path: Path) -> None:
    cluster, instance = world(tmp_path, max_fires=500, burst=20_000)
    for i in range(3000):
        send(cluster, f"c{i:05d}", T + 3_600_000)
    cluster.now_ms = T
    instance.loop.tick_once()
    assert len(fired(cluster)) == 500
    assert intaken(cluster) == MIN_INTAKE, "the fire transaction carried only the minimum intake"
    for _ in range(3000 // MIN_INTAKE):
        cluster.now_ms += 5
        instance.loop.tick_once()
    assert intaken(cluster) == 3000, "a permanent backlog of fires never stops intake"


def test_commands_held_past_the_hold_limit_are_all_taken_in_while_fires_stay_due(tmp_path: Path) -> None:
    """Sustained load keeps fires due every tick: the bounded share alone would let arrivals pile up for good."""
    cluster, instance = world(tmp_path, max_fires=500, burst=20_000)
    for i in range(3000):
        send(cluster, f"c{i:05d}", T + 3_600_000)
    cluster.now_ms = T
    instance.loop.tick_once()
    assert intaken(cluster) == MIN_INTAKE  # fresh arrivals: the bounded share
    cluster.now_ms += INTAKE_HOLD_MS + 1
    instance.loop.tick_once()
    assert intaken(cluster) >= 2000, "every command held past the limit went into this tick"
    assert len(fired(cluster)) == 1000  # and the fires went on


def test_held_commands_are_taken_in_exactly_once_across_an_abort(tmp_path: Path) -> None:
    cluster, instance = world(tmp_path, max_fires=500, burst=20_000)
    for i in range(1500):
        send(cluster, f"c{i:05d}", T + 3_600_000)
    cluster.now_ms = T
    instance.loop.tick_once()  # MIN_INTAKE in, the rest held
    cluster.rebalance({instance.member: list(range(PARTS))}, SCHEDULED)  # a new generation ...
    instance.consumer.defer_callbacks = (
        True  # ... that this member learns of one consume late: the commit fails
    )
    aborts = cluster.stats["aborts"]
    instance.loop.tick_once()
    assert cluster.stats["aborts"] == aborts + 1
    for _ in range(10):
        cluster.now_ms += 5
        instance.loop.tick_once()
    assert intaken(cluster) == 1500
    puts = Counter(
        decode_state(r.value)[0].id for r in cluster.visible(STATE) if r.value and r.key and r.key[:1] == b"c"
    )
    assert len(puts) == 1500 and set(puts.values()) == {1}


@pytest.mark.parametrize(
    ("samples", "fixed_ms", "per_us"),
    [
        ([(10, 0.0071), (2000, 0.0871), (500, 0.0271), (50, 0.0091)] * 10, 7.0, 40.0),
        ([(1000, 0.05)] * 20, 0.0, 50.0),  # one size only: the slope is kept, the line goes through the mean
    ],
)
def test_tick_cost_fits_fixed_and_per_record_parts(
    samples: list[tuple[int, float]], fixed_ms: float, per_us: float
) -> None:
    cost = TickCost(per_record_s=50e-6)
    for records, seconds in samples:
        cost.add(seconds, records)
    assert cost.fixed_s * 1000 == pytest.approx(fixed_ms, abs=0.5)
    assert cost.per_record_s * 1e6 == pytest.approx(per_us, rel=0.05)
    chunk = cost.chunk(2000, 0.9)
    full, short = 2000 / cost.predict_ms(2000), chunk / cost.predict_ms(chunk)
    assert short >= 0.9 * full and chunk <= 2000
