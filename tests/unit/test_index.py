"""DueIndex, table-driven: put/replace/remove, due ordering, stale pointers, next_due, count_due_within."""

from __future__ import annotations

import pytest

from scheduler.codec import encode_state
from scheduler.model import Schedule
from scheduler.service.index import DueIndex

T0 = 1_700_000_000_000


def rec(sid: str, due: int, version: int = 0) -> bytes:
    return encode_state(Schedule(sid, "target", due), version)


def build(ops: list[tuple[str, str, int]]) -> DueIndex:
    """ops: ("put", id, due) or ("rm", id, 0)."""
    index = DueIndex()
    for op, sid, due in ops:
        if op == "put":
            index.put(sid.encode(), rec(sid, due))
        else:
            index.remove(sid.encode())
    return index


@pytest.mark.parametrize(
    ("ops", "now", "budget", "expected"),
    [
        pytest.param([], T0, 10, [], id="empty"),
        pytest.param([("put", "a", T0 + 1)], T0, 10, [], id="not-yet-due"),
        pytest.param([("put", "a", T0)], T0, 10, ["a"], id="due-exactly-now"),
        pytest.param(
            [("put", "b", T0 + 500), ("put", "a", T0 + 100)], T0 + 999, 10, ["a", "b"], id="sorted-in-bucket"
        ),
        pytest.param(
            [("put", "late", T0 + 3000), ("put", "early", T0 - 5000)],
            T0 + 3000,
            10,
            ["early", "late"],
            id="across-buckets",
        ),
        pytest.param(
            [("put", "a", T0 + 100), ("put", "b", T0 + 900)], T0 + 500, 10, ["a"], id="stops-inside-a-bucket"
        ),
        pytest.param(
            [("put", "a", T0), ("put", "b", T0 + 1), ("put", "c", T0 + 2)],
            T0 + 10,
            2,
            ["a", "b"],
            id="budget",
        ),
        pytest.param([("put", "a", T0), ("put", "a", T0 + 5000)], T0 + 10, 10, [], id="replace-moves-later"),
        pytest.param(
            [("put", "a", T0 + 5000), ("put", "a", T0)], T0 + 10, 10, ["a"], id="replace-moves-earlier"
        ),
        pytest.param(
            [("put", "a", T0 + 300), ("put", "b", T0 + 200), ("put", "a", T0 + 100)],
            T0 + 999,
            10,
            ["a", "b"],
            id="replace-same-bucket-resorts",
        ),
        pytest.param([("put", "a", T0), ("rm", "a", 0)], T0 + 10, 10, [], id="removed"),
        pytest.param(
            [("put", "a", T0), ("rm", "a", 0), ("put", "a", T0 + 1)],
            T0 + 10,
            10,
            ["a"],
            id="re-put-after-remove-once",
        ),
        pytest.param(
            [("put", "a", T0), ("put", "a", T0 + 2000), ("put", "a", T0)],
            T0 + 10,
            10,
            ["a"],
            id="stale-pointer-no-dup",
        ),
        pytest.param([("put", "a", T0 - 10**6), ("put", "b", 0)], T0, 10, ["b", "a"], id="long-past-due"),
    ],
)
def test_due(ops: list[tuple[str, str, int]], now: int, budget: int, expected: list[str]) -> None:
    index = build(ops)
    got = index.due(now, budget)
    assert [sid.decode() for sid, _ in got] == expected
    assert all(index.get(sid) == record for sid, record in got)
    assert index.due(now, budget) == got, "due() removes nothing and is repeatable"


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        pytest.param([], None, id="empty"),
        pytest.param([("put", "a", T0 + 5), ("put", "b", T0 + 2)], T0 + 2, id="earliest"),
        pytest.param(
            [("put", "a", T0 + 5), ("put", "b", T0 + 2), ("rm", "b", 0)], T0 + 5, id="removed-skipped"
        ),
        pytest.param([("put", "a", T0 + 2), ("put", "a", T0 + 9000)], T0 + 9000, id="stale-pointer-skipped"),
        pytest.param([("put", "a", T0), ("rm", "a", 0)], None, id="all-removed"),
    ],
)
def test_next_due(ops: list[tuple[str, str, int]], expected: int | None) -> None:
    assert build(ops).next_due_ms() == expected


def test_put_get_len_contains_items() -> None:
    index = build([("put", "a", T0), ("put", "b", T0 + 1), ("put", "a", T0 + 2)])
    assert len(index) == 2 and b"a" in index and b"c" not in index
    assert index.get(b"a") == rec("a", T0 + 2)
    assert dict(index.items()) == {b"a": rec("a", T0 + 2), b"b": rec("b", T0 + 1)}
    assert index.remove(b"a") == rec("a", T0 + 2)
    assert index.remove(b"a") is None
    assert len(index) == 1


def test_replaced_version_is_what_due_returns() -> None:
    index = DueIndex()
    index.put(b"a", rec("a", T0, version=1))
    index.put(b"a", rec("a", T0, version=7))
    assert index.due(T0, 10) == [(b"a", rec("a", T0, version=7))]


def test_count_due_within_windows() -> None:
    index = build(
        [("put", "over", T0 - 10_000), ("put", "soon", T0 + 30_000), ("put", "hour", T0 + 1_800_000)]
    )
    counts = index.count_due_within(T0)
    assert counts == {"1m": 2, "5m": 2, "1h": 3, "6h": 3, "24h": 3}
    assert build([]).count_due_within(T0) == dict.fromkeys(counts, 0)


def test_many_ids_come_out_in_due_order() -> None:
    index = DueIndex()
    dues = [(T0 + (i * 7919) % 20_000, f"id{i}") for i in range(200)]
    for due, sid in dues:
        index.put(sid.encode(), rec(sid, due))
    got = index.due(T0 + 20_000, 1000)
    assert [peek for peek in (sid.decode() for sid, _ in got)] == [sid for _d, sid in sorted(dues)]
