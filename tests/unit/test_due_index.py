"""DueIndex against a plain dict model: due() returns each pending id once, earliest first, nothing early."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scheduler.codec import encode_state
from scheduler.model import Schedule
from scheduler.service.index import DueIndex

IDS = st.sampled_from([b"a", b"b", b"c", b"d", b"e"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), IDS, st.integers(min_value=0, max_value=5_000)),
        st.tuples(st.just("remove"), IDS, st.just(0)),
        st.tuples(st.just("due"), IDS, st.integers(min_value=0, max_value=6_000)),
    ),
    max_size=60,
)


def record(sid: bytes, due: int, version: int) -> bytes:
    return encode_state(Schedule(id=sid.decode(), target_topic="t", due_ms=due), version)


@given(OPS, st.integers(min_value=1, max_value=6))
def test_due_matches_a_dict_model(ops: list[tuple[str, bytes, int]], limit: int) -> None:
    index, model = DueIndex(), {}
    for version, (op, sid, ms) in enumerate(ops):
        if op == "put":
            rec = record(sid, ms, version)
            index.put(sid, rec)
            model[sid] = (ms, rec)
        elif op == "remove":
            index.remove(sid)
            model.pop(sid, None)
        else:
            got = index.due(ms, limit)
            expected = sorted((due, rec) for due, rec in model.values() if due <= ms)
            assert [rec for _sid, rec in got] == [rec for _due, rec in expected][:limit] or (
                sorted(d for d, _ in expected)[:limit] == [model[s][0] for s, _ in got]
            )
            assert len({s for s, _ in got}) == len(got), "an id returned twice"
        assert len(index) == len(model)
        due = min((d for d, _ in model.values()), default=None)
        assert index.next_due_ms() == due


def test_an_id_moved_to_an_earlier_second_is_due_once() -> None:
    """A pointer left in a sorted bucket must not return the id a second time."""
    index = DueIndex()
    index.put(b"a", record(b"a", 2_500, 1))
    assert index.next_due_ms() == 2_500  # sorts bucket 2
    index.put(b"a", record(b"a", 1_500, 2))  # moved to bucket 1
    assert [sid for sid, _ in index.due(3_000, 10)] == [b"a"]
    index.remove(b"a")
    index.put(b"a", record(b"a", 500, 3))
    index.due(0, 10)
    assert [sid for sid, _ in index.due(3_000, 10)] == [b"a"]
