"""The native DueIndex against a plain-Python model under random put/replace/remove/due/apply/replay sequences.

The model is what the index promises, written the obvious way: a dict id -> (due, put number, record) and a sort.
Due order is earliest first, ties in put order (a replace is a new put); a record whose due does not read is held
for get/remove, never due, and raises CorruptStateRecord; nothing is removed by `due`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.codec import decode_state, encode_state, peek_due_ms
from scheduler.errors import CorruptStateRecord
from scheduler.model import Recurrence, Schedule
from scheduler.partitioner import partition_for
from scheduler.service.index import WINDOWS, DueIndex, replay_state

PARTITIONS = 3
IDS = st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h"])
# few distinct dues (ties, and the same due again after a replace) and a wide range (every window, far future)
DUES = st.one_of(st.integers(min_value=-3, max_value=3), st.integers(min_value=-2_000, max_value=90_000_000))
CORRUPT = [b"", b"garbage", b"\xc3\x01" + b"f" * 8, b"\xc3\x01" + b"f" * 8 + b"\xff"]


@dataclass
class Model:
    """The reference index."""

    records: dict[bytes, tuple[int | None, int, bytes]] = field(default_factory=dict)
    puts: int = 0

    def put(self, sid: bytes, rec: bytes) -> bool:
        """False when the record is corrupt (it is held, never due)."""
        try:
            due: int | None = peek_due_ms(rec)
        except CorruptStateRecord:
            due = None
        self.puts += 1
        self.records[sid] = (due, self.puts, rec)
        return due is not None

    def remove(self, sid: bytes) -> bytes | None:
        entry = self.records.pop(sid, None)
        return None if entry is None else entry[2]

    def due(self, now: int) -> list[tuple[bytes, bytes]]:
        ready = sorted(
            (d, n, sid, rec) for sid, (d, n, rec) in self.records.items() if d is not None and d <= now
        )
        return [(sid, rec) for _d, _n, sid, rec in ready]


def state(
    sid: bytes, due: int, version: int, embedded: bytes | None = None, recurring: bool = False
) -> bytes:
    """A real state record; `embedded` puts another id inside it than the key it is stored under; `recurring`
    makes it an `every` schedule's."""
    spec = Recurrence(every_ms=60_000, occurrence_ms=due) if recurring else None
    return encode_state(
        Schedule(id=(embedded or sid).decode(), target_topic="t", due_ms=due, payload=b"p", recurrence=spec),
        version,
    )


def is_recurring(rec: bytes) -> bool:
    try:
        return decode_state(rec)[0].recurrence is not None
    except CorruptStateRecord:
        return False


def values(sid: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.builds(lambda d, v: state(sid, d, v), DUES, st.integers(min_value=0, max_value=10**6)),
        st.builds(lambda d: state(sid, d, 1, recurring=True), DUES),
        st.builds(lambda d: state(sid, d, 0, embedded=b"other-id"), DUES),
        st.sampled_from(CORRUPT),
    )


def writes() -> st.SearchStrategy[tuple[bytes, bytes | None]]:
    return IDS.flatmap(lambda sid: st.tuples(st.just(sid), st.one_of(st.none(), values(sid))))


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), writes().filter(lambda w: w[1] is not None)),
        st.tuples(st.just("remove"), IDS),
        st.tuples(st.just("due"), st.tuples(DUES, st.integers(min_value=0, max_value=9))),
        st.tuples(st.just("apply"), st.lists(writes(), max_size=8)),
    ),
    max_size=50,
)


def agrees(index: DueIndex, model: Model, now: int) -> None:
    assert len(index) == len(model.records)
    dues = [d for d, _n, _r in model.records.values() if d is not None]
    assert index.next_due_ms() == min(dues, default=None)
    assert index.count_due(now) == sum(d <= now for d in dues)
    assert index.count_due_within(now) == {
        label: sum(d <= now + span for d in dues) for label, span in WINDOWS.items()
    }
    assert dict(index.items()) == {sid: rec for sid, (_d, _n, rec) in model.records.items()}
    assert index.recurring() == sum(is_recurring(rec) for _d, _n, rec in model.records.values())
    for sid in [b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h", b"other-id"]:
        assert index.get(sid) == (model.records[sid][2] if sid in model.records else None)
        assert (sid in index) == (sid in model.records)


@settings(max_examples=300)
@given(OPS)
def test_matches_the_model(ops: list[tuple[str, object]]) -> None:
    index, model = DueIndex(), Model()
    now = 0
    for op, arg in ops:
        if op == "put":
            sid, rec = arg  # type: ignore[misc]
            if model.put(sid, rec):
                index.put(sid, rec)
            else:
                with pytest.raises(CorruptStateRecord):
                    index.put(sid, rec)
        elif op == "remove":
            assert index.remove(arg) == model.remove(arg)  # type: ignore[arg-type]
        elif op == "apply":
            batch: list[tuple[bytes, bytes | None]] = arg  # type: ignore[assignment]
            corrupt = False
            for sid, rec in batch:
                if rec is None:
                    model.remove(sid)
                elif not model.put(sid, rec):
                    corrupt = True
            if not corrupt:
                index.apply(batch)
            else:
                with pytest.raises(CorruptStateRecord):
                    index.apply(batch)  # every other write of the batch is applied all the same
        else:
            now, limit = arg  # type: ignore[misc]
            got = index.due(now, limit)
            assert got == model.due(now)[:limit]
            assert index.due(now, limit) == got, "due() removes nothing"
        agrees(index, model, now)


class Msg:
    """The part of confluent_kafka.Message that replay reads."""

    def __init__(
        self, partition: int, offset: int, key: bytes | None, value: bytes | None, error: bool
    ) -> None:
        self._p, self._o, self._k, self._v, self._e = partition, offset, key, value, error

    def error(self) -> object:
        return "broker said no" if self._e else None

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes | None:
        return self._v


MESSAGES = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=PARTITIONS - 1),
        st.one_of(st.none(), IDS),
        st.booleans(),
        st.integers(min_value=0, max_value=10),
    ).flatmap(
        lambda t: st.tuples(
            st.just(t[0]),
            st.just(t[1]),
            st.none() if t[1] is None else st.one_of(st.none(), values(t[1])),
            st.just(t[2] and t[3] == 0),  # an error now and then
        )
    ),
    max_size=40,
)


@settings(max_examples=300)
@given(
    st.lists(MESSAGES, min_size=1, max_size=4), st.sets(st.integers(min_value=0, max_value=PARTITIONS - 1))
)
def test_replay_matches_per_message_replay(
    batches: list[list[tuple[int, bytes | None, bytes | None, bool]]], replaying: set[int]
) -> None:
    """One call per batch does what the per-message replay did: skip errors and other partitions, keep misplaced
    ids apart, put or remove the rest, report corrupt records with their position."""
    indexes = {p: DueIndex() for p in replaying}
    misplaced: dict[int, dict[bytes, bytes]] = {p: {} for p in replaying}
    models = {p: Model() for p in replaying}
    want_misplaced: dict[int, dict[bytes, bytes]] = {p: {} for p in replaying}
    offset = 0
    for batch in batches:
        msgs, want_counts, want_corrupt = [], {}, []
        for p, key, value, error in batch:
            msgs.append(Msg(p, offset, key, value, error))
            offset += 1
            if error or p not in replaying:
                continue
            want_counts[p] = want_counts.get(p, 0) + 1
            if key is None:
                continue
            if partition_for(key, PARTITIONS) != p:
                if value is None:
                    want_misplaced[p].pop(key, None)
                else:
                    want_misplaced[p][key] = value
            elif value is None:
                models[p].remove(key)
            elif not models[p].put(key, value):
                want_corrupt.append((key, p, offset - 1))
        targets = {p: (indexes[p], misplaced[p]) for p in replaying}
        counts, corrupt = replay_state(msgs, targets, PARTITIONS)
        assert counts == want_counts
        assert [(k, p, o) for k, p, o, _why in corrupt] == want_corrupt
        assert all("state record" in why for *_rest, why in corrupt)
        assert misplaced == want_misplaced
        for p in replaying:
            agrees(indexes[p], models[p], 10**9)
            assert indexes[p].due(10**9, 100) == models[p].due(10**9)


def test_ties_come_out_in_put_order_and_a_replace_is_a_new_put() -> None:
    index = DueIndex()
    for sid in [b"c", b"a", b"b"]:
        index.put(sid, state(sid, 5_000, 1))
    index.put(b"c", state(b"c", 5_000, 2))
    assert [sid for sid, _ in index.due(5_000, 10)] == [b"a", b"b", b"c"]


def test_an_id_moved_to_an_earlier_second_is_due_once() -> None:
    index = DueIndex()
    index.put(b"a", state(b"a", 2_500, 1))
    assert index.next_due_ms() == 2_500
    index.put(b"a", state(b"a", 1_500, 2))
    assert [sid for sid, _ in index.due(3_000, 10)] == [b"a"]
    index.remove(b"a")
    index.put(b"a", state(b"a", 500, 3))
    assert [sid for sid, _ in index.due(3_000, 10)] == [b"a"]


def test_a_corrupt_record_is_held_never_due_and_can_be_cancelled() -> None:
    index = DueIndex()
    index.put(b"a", state(b"a", 1, 1))
    with pytest.raises(CorruptStateRecord, match="not Avro single-object encoded"):
        index.put(b"a", b"garbage")
    assert index.due(10**12, 10) == [] and index.get(b"a") == b"garbage" and len(index) == 1
    assert index.remove(b"a") == b"garbage" and len(index) == 0


def test_replay_refuses_zero_partitions() -> None:
    with pytest.raises(ValueError, match="partitions must be >= 1"):
        replay_state([], {}, 0)


def test_many_schedules_across_chunks_stay_whole_through_churn() -> None:
    """Enough bytes for several arena chunks, two thirds removed (compaction moves the rest), then drained."""
    index, model = DueIndex(), Model()
    pad = b"x" * 400
    for i in range(12_000):
        sid = b"s%d" % i
        rec = encode_state(Schedule(sid.decode(), "t", (i * 7919) % 50_000, pad), i)
        index.put(sid, rec)
        model.put(sid, rec)
    for i in range(0, 12_000, 3):
        for j in (i, i + 1):
            assert index.remove(b"s%d" % j) == model.remove(b"s%d" % j)
    memory = index.memory()
    assert memory["arena_dead"] * 2 <= memory["arena_used"], memory
    assert index.due(50_000, 20_000) == model.due(50_000)
    agrees(index, model, 25_000)
