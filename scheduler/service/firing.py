"""Which due schedules a tick fires: the earliest across every serving partition, fresh ones before the backlog.

The rule (docs/architecture.md, "Fire order"):
1. Fresh first: what became due since the previous tick looked (`after` < due <= now) is taken before anything
   older, earliest first across partitions. A burst (one millisecond holding more than half the budget, where
   the budget would run out) counts as older, with everything before it, even in its first tick: so a burst due
   in one millisecond never ranks ahead of what comes due after it, and a schedule due just after it fires in
   the first tick planned after its due time, however large the burst. (A burst spread over milliseconds that
   each hold less than half a tick is drained in due order, fresh ones first from its second tick on.)
2. Then the backlog (due <= `after`: already due when the previous tick looked, left over by the budget), earliest
   first across partitions. While a backlog exists it keeps a quarter of the count budget, so fresh arrivals
   faster than the scheduler can fire cannot stall it for good; fresh ones past their share join the backlog.
3. Across partitions the budget goes to the earliest due times (a merge, not partition order); schedules due in
   the same millisecond in several partitions share the budget evenly, so no partition's burst starves another.
4. While something will come due during a full tick, the backlog part may be capped (`backlog_room`, the loop's
   measured chunk that keeps the drain near its full rate), so the tick ends soon and the schedule coming due
   waits one short tick, not one long one.
Nothing due after `now` is ever taken (G3).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from scheduler.codec import peek_due_ms
from scheduler.service.index import DueIndex

__all__ = ["BACKLOG_SHARE", "earliest", "select_due"]

BACKLOG_SHARE = 4  # while a backlog exists it gets at least 1/BACKLOG_SHARE of each tick's count budget
I64_MIN = -(1 << 63)

Due = tuple[int, bytes, bytes]  # (partition, schedule id, state record)


def select_due(
    indexes: Mapping[int, DueIndex],
    now_ms: int,
    room: int,
    fresh_after_ms: int | None,
    skip: Collection[tuple[int, bytes]] = (),
    backlog_room: int | None = None,
) -> list[Due]:
    """Up to `room` due entries, fresh ones (due after `fresh_after_ms`) first, then at most `backlog_room` of the
    backlog; each part earliest first. `skip`: (partition, id) pairs this tick already decided (by intake)."""
    if room <= 0:
        return []
    if fresh_after_ms is not None and fresh_after_ms >= now_ms:  # the clock stepped back: due order
        return earliest(indexes, None, now_ms, room, skip)
    fresh_after_ms = _past_bursts(indexes, fresh_after_ms, now_ms, room)
    if fresh_after_ms is None:
        return earliest(indexes, None, now_ms, room, skip)
    backlog = sum(index.count_due(fresh_after_ms) for index in indexes.values())
    reserve = min(backlog, room // BACKLOG_SHARE, room if backlog_room is None else backlog_room)
    fresh = earliest(indexes, fresh_after_ms, now_ms, room - reserve, skip)
    if not backlog:
        return fresh
    rest = room - len(fresh) if backlog_room is None else min(room - len(fresh), max(reserve, backlog_room))
    return fresh + earliest(indexes, None, fresh_after_ms, rest, skip)


def _past_bursts(indexes: Mapping[int, DueIndex], after_ms: int | None, now_ms: int, room: int) -> int | None:
    """`after_ms`, moved past every burst that would take the fresh budget: while what is due in (after, now] does
    not fit and the millisecond where the budget runs out holds more than half of it, that millisecond and all
    before it count as backlog (earlier ones drain first there, the burst after them)."""
    while True:
        cut = _cut(indexes, after_ms, now_ms, room)
        if cut is None or _count_at(indexes, cut) <= max(1, room // 2):
            return after_ms
        after_ms = cut


def _counter(indexes: Mapping[int, DueIndex], after_ms: int | None) -> Callable[[int], dict[int, int]]:
    """at_ms -> per partition, how many are due in (after_ms, at_ms]."""
    base = {p: 0 if after_ms is None else index.count_due(after_ms) for p, index in indexes.items()}

    def counts(at_ms: int) -> dict[int, int]:
        if at_ms < I64_MIN:
            return dict.fromkeys(indexes, 0)
        return {p: index.count_due(at_ms) - base[p] for p, index in indexes.items()}

    return counts


def _cut(indexes: Mapping[int, DueIndex], after_ms: int | None, until_ms: int, room: int) -> int | None:
    """The earliest t with at least `room` due in (after_ms, t], by bisection on the native counts; None if
    everything due in (after_ms, until_ms] fits in `room`."""
    counts = _counter(indexes, after_ms)
    if sum(counts(until_ms).values()) <= room:
        return None
    lo = after_ms if after_ms is not None else _first_due(indexes) - 1  # nothing due in (after, lo]
    hi = until_ms  # more than room due in (after, hi]
    while hi - lo > 1:
        mid = lo + (hi - lo) // 2
        if sum(counts(mid).values()) >= room:
            hi = mid
        else:
            lo = mid
    return hi


def earliest(
    indexes: Mapping[int, DueIndex],
    after_ms: int | None,
    until_ms: int,
    room: int,
    skip: Collection[tuple[int, bytes]] = (),
) -> list[Due]:
    """The `room` earliest entries with `after_ms` < due <= `until_ms` across partitions, in due order.

    The cut-off due time is found by bisection on the native per-partition counts (no entry is read to find
    it); entries due exactly at the cut-off are shared evenly among the partitions that have them."""
    if room <= 0 or not indexes:
        return []
    counts = _counter(indexes, after_ms)
    cut = _cut(indexes, after_ms, until_ms, room)
    if cut is None:
        cut, take = until_ms, counts(until_ms)
    else:
        below = counts(cut - 1)  # all of these fit
        at_cut = {p: n - below[p] for p, n in counts(cut).items()}
        share = _even_shares(at_cut, room - sum(below.values()))
        take = {p: below[p] + share[p] for p in indexes}
    skipped: dict[int, int] = {}
    for p, _sid in skip:
        skipped[p] = skipped.get(p, 0) + 1
    out: list[Due] = []
    for p, n in take.items():
        if n <= 0:
            continue
        found = indexes[p].due_between(after_ms, cut, n + skipped.get(p, 0))
        kept = [(p, sid, rec) for sid, rec in found if (p, sid) not in skip] if p in skipped else None
        out.extend(kept[:n] if kept is not None else ((p, sid, rec) for sid, rec in found))
    if len(take) > 1:
        out.sort(key=_due_of)
    return out


def _due_of(entry: Due) -> int:
    return peek_due_ms(entry[2])


def _first_due(indexes: Mapping[int, DueIndex]) -> int:
    dues = [due for index in indexes.values() if (due := index.next_due_ms()) is not None]
    return min(dues, default=I64_MIN)


def _count_at(indexes: Mapping[int, DueIndex], due_ms: int) -> int:
    """How many are due in exactly that millisecond."""
    before = due_ms - 1
    return sum(
        ix.count_due(due_ms) - (ix.count_due(before) if before >= I64_MIN else 0) for ix in indexes.values()
    )


def _even_shares(available: Mapping[int, int], room: int) -> dict[int, int]:
    """`room` split across keys as evenly as `available` allows (water-filling), lowest keys first for the rest."""
    share = dict.fromkeys(available, 0)
    open_ = sorted(k for k, n in available.items() if n > 0)
    while room > 0 and open_:
        each = max(1, room // len(open_))
        for k in list(open_):
            give = min(each, available[k] - share[k], room)
            share[k] += give
            room -= give
            if share[k] >= available[k]:
                open_.remove(k)
            if room <= 0:
                break
    return share
