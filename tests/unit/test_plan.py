"""plan_tick, table-driven: replace wins, cancel suppresses a due entry, past-due fires at once, budget, rejects."""

from __future__ import annotations

import pytest

from scheduler.codec import decode_state, encode_cancel, encode_schedule, encode_state
from scheduler.model import Rejected, RejectReason, Schedule
from scheduler.service.index import DueIndex
from scheduler.service.plan import InputRecord, TickPlan, plan_tick

NOW = 1_700_000_000_000


def validate(s: Schedule, _size: int) -> Rejected | None:
    return None if s.target_topic == "target" else Rejected(RejectReason.UNKNOWN_TARGET_TOPIC, "no", s.id)


def sched(offset: int, sid: str, due: int, topic: str = "target") -> InputRecord:
    return InputRecord(0, offset, NOW, sid.encode(), encode_schedule(Schedule(sid, topic, due)), [])


def cancel(offset: int, sid: str) -> InputRecord:
    return InputRecord(0, offset, NOW, sid.encode(), encode_cancel(sid), [])


def index_of(*entries: tuple[str, int, int]) -> DueIndex:
    index = DueIndex()
    for sid, due, version in entries:
        index.put(sid.encode(), encode_state(Schedule(sid, "target", due), version))
    return index


def run(records: list[InputRecord], index: DueIndex | None = None, max_fires: int = 100) -> TickPlan:
    return plan_tick(records, {0: index or DueIndex()}, NOW, validate=validate, max_fires=max_fires)


def fired(plan: TickPlan) -> list[tuple[str, int]]:
    return [(f.schedule_id.decode(), decode_state(f.record)[1]) for f in plan.fires]


def writes(plan: TickPlan) -> dict[str, int | None]:
    """id -> the version put, or None for a tombstone."""
    return {
        sid.decode(): None if v is None else decode_state(v)[1] for (_p, sid), v in plan.state_writes.items()
    }


@pytest.mark.parametrize(
    ("records", "index", "fires", "state", "rejects"),
    [
        pytest.param([], index_of(), [], {}, 0, id="nothing"),
        pytest.param([sched(1, "a", NOW + 1)], index_of(), [], {"a": 1}, 0, id="future-put"),
        pytest.param(
            [sched(1, "a", NOW - 5000)],
            index_of(),
            [("a", 1)],
            {"a": None},
            0,
            id="past-due-fires-at-once-tombstone-not-put",
        ),
        pytest.param([sched(1, "a", NOW)], index_of(), [("a", 1)], {"a": None}, 0, id="due-now-fires"),
        pytest.param(
            [sched(1, "a", NOW - 1), sched(2, "a", NOW + 60_000)],
            index_of(),
            [],
            {"a": 2},
            0,
            id="replace-wins-later",
        ),
        pytest.param(
            [sched(1, "a", NOW + 60_000), sched(2, "a", NOW - 1)],
            index_of(),
            [("a", 2)],
            {"a": None},
            0,
            id="replace-wins-earlier",
        ),
        pytest.param(
            [sched(3, "a", NOW + 60_000)],
            index_of(("a", NOW - 1, 1)),
            [],
            {"a": 3},
            0,
            id="replace-suppresses-due-index-entry",
        ),
        pytest.param(
            [cancel(3, "a")],
            index_of(("a", NOW - 1, 1)),
            [],
            {"a": None},
            0,
            id="cancel-suppresses-due-index-entry",
        ),
        pytest.param([cancel(3, "a")], index_of(("a", NOW + 1, 1)), [], {"a": None}, 0, id="cancel-pending"),
        pytest.param([cancel(3, "zz")], index_of(), [], {}, 0, id="cancel-unknown-is-noop"),
        pytest.param(
            [sched(1, "a", NOW - 1), cancel(2, "a")],
            index_of(),
            [],
            {"a": None},
            0,
            id="cancel-after-put-same-tick",
        ),
        pytest.param(
            [cancel(1, "a"), sched(2, "a", NOW - 1)],
            index_of(("a", NOW + 9, 0)),
            [("a", 2)],
            {"a": None},
            0,
            id="put-after-cancel",
        ),
        pytest.param(
            [],
            index_of(("a", NOW - 1, 1), ("b", NOW + 1, 2)),
            [("a", 1)],
            {"a": None},
            0,
            id="index-due-only",
        ),
        pytest.param(
            [sched(1, "a", NOW - 1, topic="nope")], index_of(), [], {}, 1, id="reject-unknown-target"
        ),
        pytest.param(
            [sched(5, "a", NOW + 60_000, topic="nope")],
            index_of(("a", NOW - 1, 1)),
            [("a", 1)],
            {"a": None},
            1,
            id="rejected-replace-keeps-old",
        ),
        pytest.param(
            [InputRecord(0, 1, NOW, None, b"x", [])], index_of(), [], {}, 1, id="reject-missing-key"
        ),
        pytest.param(
            [InputRecord(0, 1, NOW, b"a", b"\xc3\x01garbage", [])],
            index_of(),
            [],
            {},
            1,
            id="reject-undecodable",
        ),
    ],
)
def test_plan(
    records: list[InputRecord],
    index: DueIndex,
    fires: list[tuple[str, int]],
    state: dict[str, int | None],
    rejects: int,
) -> None:
    plan = run(records, index)
    assert fired(plan) == fires
    assert writes(plan) == state
    assert len(plan.rejects) == rejects
    assert bool(plan) == bool(fires or state or rejects)


def test_plan_does_not_touch_the_index() -> None:
    index = index_of(("a", NOW - 1, 1))
    run([cancel(2, "a"), sched(3, "b", NOW - 1)], index)
    assert len(index) == 1 and b"b" not in index


def test_max_fires_budget_overlay_first_then_index_in_due_order() -> None:
    index = index_of(("i1", NOW - 300, 1), ("i2", NOW - 200, 2), ("i3", NOW - 100, 3))
    plan = run(
        [sched(10, "n1", NOW - 1), sched(11, "n2", NOW - 1), sched(12, "n3", NOW + 5)], index, max_fires=3
    )
    assert fired(plan) == [("n1", 10), ("n2", 11), ("i1", 1)]
    # past the budget: the index entries stay for the next tick; a put stays a put
    assert writes(plan) == {"n1": None, "n2": None, "n3": 12, "i1": None}


def test_max_fires_budget_keeps_an_overdue_put_as_a_put() -> None:
    plan = run([sched(1, "a", NOW - 3), sched(2, "b", NOW - 2), sched(3, "c", NOW - 1)], max_fires=2)
    assert fired(plan) == [("a", 1), ("b", 2)]
    assert writes(plan) == {"a": None, "b": None, "c": 3}


def test_counters() -> None:
    plan = run([sched(1, "a", NOW + 9), cancel(2, "a"), cancel(3, "zz"), sched(4, "b", NOW, topic="nope")])
    assert (plan.scheduled, plan.cancels, plan.cancelled, len(plan.rejects)) == (1, 2, 1, 1)
    assert plan.rejects[0].reason is RejectReason.UNKNOWN_TARGET_TOPIC and plan.rejects[0].record.offset == 4


def test_dead_letter_check_marks_the_fire() -> None:
    plan = plan_tick(
        [],
        {0: index_of(("a", NOW - 1, 1))},
        NOW,
        validate=validate,
        max_fires=10,
        dead_letter=lambda _p, _sid, _rec: "unknown_target_topic",
    )
    assert [f.dead_letter for f in plan.fires] == ["unknown_target_topic"]
    assert writes(plan) == {"a": None}


def test_partitions_are_kept_apart() -> None:
    indexes = {0: index_of(("a", NOW - 1, 1)), 1: index_of(("a", NOW - 1, 7))}
    rec = InputRecord(1, 8, NOW, b"a", encode_cancel("a"), [])
    plan = plan_tick([rec], indexes, NOW, validate=validate, max_fires=10)
    assert [(f.partition, decode_state(f.record)[1]) for f in plan.fires] == [(0, 1)]
    assert plan.state_writes == {(0, b"a"): None, (1, b"a"): None}


def test_byte_budget_bounds_a_transaction_but_always_fires_one() -> None:
    index = index_of(*[(f"s{i}", i, 1_000 + i) for i in range(10)])
    record_size = len(index.get(b"s0") or b"")
    plan = plan_tick([], {0: index}, 5_000, validate=validate, max_fires=100, max_bytes=3 * record_size + 1)
    assert [sid for sid, _ in fired(plan)] == ["s0", "s1", "s2"]
    tiny = plan_tick([], {0: index}, 5_000, validate=validate, max_fires=100, max_bytes=1)
    assert len(tiny.fires) == 1  # one oversized fire still goes: a budget never stalls the partition


def test_prefetch_sees_every_candidate_fire_once_before_any_dead_letter_check() -> None:
    """The loop decodes a tick's fires in one native call: the planner hands it every candidate first."""
    index = index_of(*((f"i{i}", 1_000 + i, i) for i in range(4)))
    calls: list[object] = []

    def prefetch(due: object) -> None:
        calls.append(("prefetch", [sid for _p, sid, _rec in due]))  # type: ignore[attr-defined]

    def dead_letter(_p: int, sid: bytes, _rec: bytes) -> str | None:
        calls.append(("check", sid))
        return None

    plan = plan_tick(
        [sched(9, "n", 500)],
        {0: index},
        NOW,
        validate=validate,
        max_fires=3,
        dead_letter=dead_letter,
        prefetch=prefetch,
    )
    assert calls[0] == ("prefetch", [b"n", b"i0", b"i1"])  # the overlay first, then the index, within budget
    assert calls[1:] == [("check", b"n"), ("check", b"i0"), ("check", b"i1")]
    assert [f.schedule_id for f in plan.fires] == [b"n", b"i0", b"i1"]
