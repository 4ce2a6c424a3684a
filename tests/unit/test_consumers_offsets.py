"""The offset tracker commits only up to the lowest unfinished record."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumers.offsets import OffsetTracker


def test_nothing_seen_means_nothing_to_commit() -> None:
    assert OffsetTracker().committable() is None


def test_out_of_order_finish_holds_the_commit_at_the_lowest_unfinished() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.add(offset)
    tracker.finish(12)
    tracker.finish(11)
    assert tracker.committable() == 10
    tracker.finish(10)
    assert tracker.committable() == 13
    assert tracker.pending() == 0


def test_finishing_unknown_or_twice_is_harmless() -> None:
    tracker = OffsetTracker()
    tracker.add(5)
    tracker.finish(99)
    tracker.finish(5)
    tracker.finish(5)
    assert tracker.committable() == 6


@given(st.permutations(list(range(30))), st.integers(min_value=0, max_value=30))
def test_committable_is_the_lowest_unfinished_for_any_finish_order(order: list[int], done: int) -> None:
    tracker = OffsetTracker()
    for offset in range(30):
        tracker.add(offset)
    finished = set(order[:done])
    for offset in order[:done]:
        tracker.finish(offset)
    unfinished = [o for o in range(30) if o not in finished]
    assert tracker.committable() == (min(unfinished) if unfinished else 30)
