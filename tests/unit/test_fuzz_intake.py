"""Intake fuzzing through the real planner: malformed commands are each rejected exactly once, with a reason word.

A fast seeded generator produces well over 100k malformed commands (key, value and header garbage, truncated and
bit-flipped Avro envelopes, unknown fingerprints, bad header values) interleaved with valid schedules that are due;
every batch goes through `plan_tick` with a fake validator and in-memory `DueIndex`es. Nothing may escape as an
exception, every malformed record is rejected once, and every valid schedule in the same batch still fires.
Hypothesis adds shrinking-friendly arbitrary records on top.
"""

from __future__ import annotations

import random
import re
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.codec import MAGIC, MAX_ID_BYTES, encode_cancel, encode_schedule, peek_due_ms
from scheduler.model import Rejected, RejectReason, Schedule
from scheduler.service.index import DueIndex
from scheduler.service.plan import InputRecord, plan_tick

NOW = 1_767_225_600_000
PARTS = 4
TARGETS = ("orders", "payments")
WORD = re.compile(r"^[a-z][a-z_]*$")
TT, AT, DELAY, EPOCH, TKEY, TPART = (
    "scheduler-target-topic",
    "scheduler-deliver-at",
    "scheduler-delay-ms",
    "scheduler-epoch",
    "scheduler-target-key",
    "scheduler-target-partition",
)


def validator(schedule: Schedule, state_size: int) -> Rejected | None:
    """The cluster's view, faked: two target topics, internal topics denied, a 64 KiB state record limit."""
    if schedule.target_topic.startswith("__"):
        return Rejected(RejectReason.FORBIDDEN_TARGET_TOPIC, "internal topic", schedule.id)
    if schedule.target_topic not in TARGETS:
        return Rejected(RejectReason.UNKNOWN_TARGET_TOPIC, "no such topic", schedule.id)
    if state_size > 64 * 1024:
        return Rejected(RejectReason.PAYLOAD_TOO_LARGE, "too large", schedule.id)
    return None


def _valid_envelope(rng: random.Random, sid: str) -> bytes:
    return encode_schedule(
        Schedule(sid, rng.choice(TARGETS), NOW - rng.randint(0, 10_000), rng.randbytes(rng.randint(0, 64)))
    )


def malformed(  # noqa: C901, PLR0911, PLR0912 - one branch per malformed kind
    rng: random.Random, n: int
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]:
    """One command that must be rejected; `n` makes keys unique."""
    sid = f"bad-{n}".encode()
    ok_headers: list[tuple[str, bytes | None]] = [(TT, b"orders"), (AT, str(NOW).encode())]
    kind = rng.randrange(24)
    if kind == 0:
        return None, rng.randbytes(rng.randint(0, 30)), ok_headers
    if kind == 1:
        return b"", b"v", ok_headers
    if kind == 2:
        return b"k" * (MAX_ID_BYTES + 1 + rng.randint(0, 50)), b"v", ok_headers
    if kind == 3:
        return b"\xff\xfe" + rng.randbytes(5), b"v", ok_headers
    if kind == 4:  # unknown fingerprint
        return sid, MAGIC + rng.randbytes(8) + rng.randbytes(rng.randint(0, 60)), []
    if kind == 5:  # truncated envelope
        full = _valid_envelope(rng, sid.decode())
        return sid, full[: rng.randint(2, len(full) - 1)], []
    if kind == 6:  # envelope with garbage body (right fingerprint)
        full = _valid_envelope(rng, sid.decode())
        return sid, full[:10] + bytes([0xFF]) * rng.randint(1, 20), []
    if kind == 7:  # the envelope's id differs from the key
        return sid, _valid_envelope(rng, "someone-else"), []
    if kind == 8:  # no target header, plain value
        return sid, rng.randbytes(rng.randint(0, 40)).replace(MAGIC, b"xx"), [(AT, str(NOW).encode())]
    if kind == 9:
        return sid, b"v", [(TT, b"orders")]  # no due header
    if kind == 10:
        return sid, b"v", [(TT, b"orders"), (AT, str(NOW).encode()), (DELAY, b"5")]  # two due headers
    if kind == 11:
        return (
            sid,
            b"v",
            [(TT, b"orders"), (AT, rng.choice([b"soon", b"", b"12ab", b"2026-13-45T99:00:00Z"]))],
        )
    if kind == 12:
        return sid, b"v", [(TT, b"orders"), (DELAY, str(-rng.randint(1, 10**6)).encode())]
    if kind == 13:
        return sid, b"v", [(TT, b"orders"), (EPOCH, str(10**15).encode())]  # epoch ms given as seconds
    if kind == 14:
        return sid, b"v", [(TT, None), (AT, str(NOW).encode())]
    if kind == 15:
        return sid, b"v", [(TT, b"orders"), (TT, b"payments"), (AT, str(NOW).encode())]
    if kind == 16:
        return (
            sid,
            b"v",
            [(TT, rng.choice([b"bad topic", b"..", b"x" * 300, b"\xff\xfe"])), (AT, str(NOW).encode())],
        )
    if kind == 17:
        return sid, b"v", [*ok_headers, (TPART, rng.choice([b"-1", b"x", b"", b"1.5"]))]
    if kind == 18:
        return sid, b"v", [(TT, b"no-such-topic"), (AT, str(NOW).encode())]
    if kind == 19:
        return sid, b"v", [(TT, b"__consumer_offsets"), (AT, str(NOW).encode())]
    if kind == 20:
        return sid, b"x" * (70 * 1024), ok_headers  # the state record would be too large
    if kind == 21:
        return sid, b"v", [(TT, b"orders"), (AT, None)]
    if kind == 22:  # a random bit flipped in the header of a valid envelope (magic or fingerprint)
        full = bytearray(_valid_envelope(rng, sid.decode()))
        i = rng.randrange(2, 10)
        full[i] ^= 1 << rng.randrange(8)
        return sid, bytes(full), []
    return sid, b"v", [(TT, b"orders"), (AT, str(NOW + 200 * 365 * 86_400_000).encode())]  # past the horizon


def valid(rng: random.Random, n: int) -> tuple[bytes, bytes, list[tuple[str, bytes | None]]]:
    sid = f"ok-{n}"
    if rng.random() < 0.5:
        return sid.encode(), _valid_envelope(rng, sid), []
    due = NOW - rng.randint(0, 60_000)
    return (
        sid.encode(),
        rng.randbytes(rng.randint(0, 30)),
        [(TT, rng.choice(TARGETS).encode()), (AT, str(due).encode())],
    )


def run_batch(records: list[InputRecord]) -> tuple[object, dict[int, DueIndex]]:
    indexes = {p: DueIndex() for p in range(PARTS)}
    plan = plan_tick(records, indexes, NOW, validate=validator, max_fires=1_000_000)
    return plan, indexes


def test_seeded_fuzz_rejects_every_malformed_command_once_and_fires_the_valid_ones() -> None:
    rng = random.Random(20261123)
    total_bad = 0
    reasons: Counter[str] = Counter()
    batch, n = 0, 0
    while total_bad < 110_000:
        records: list[InputRecord] = []
        bad_offsets: set[tuple[int, int]] = set()
        good: dict[tuple[int, bytes], bytes] = {}
        offsets = dict.fromkeys(range(PARTS), 0)
        for _ in range(2000):
            n += 1
            p = rng.randrange(PARTS)
            is_bad = rng.random() < 0.9
            key, value, headers = malformed(rng, n) if is_bad else valid(rng, n)
            records.append(InputRecord(p, offsets[p], NOW, key, value, headers))
            if is_bad:
                bad_offsets.add((p, offsets[p]))
            else:
                good[(p, key)] = value
            offsets[p] += 1
        plan, _ = run_batch(records)
        rejected = Counter((r.record.partition, r.record.offset) for r in plan.rejects)  # type: ignore[attr-defined]
        assert set(rejected) == bad_offsets, f"batch {batch}: rejected != malformed"
        assert set(rejected.values()) == {1}
        for r in plan.rejects:  # type: ignore[attr-defined]
            assert WORD.match(r.reason.value) and r.message, r
            reasons[r.reason.value] += 1
        fired = {(f.partition, f.schedule_id) for f in plan.fires}  # type: ignore[attr-defined]
        assert fired == set(good), f"batch {batch}: valid due schedules did not all fire"
        for f in plan.fires:  # type: ignore[attr-defined]
            assert peek_due_ms(f.record) <= NOW
            assert plan.state_writes[(f.partition, f.schedule_id)] is None  # type: ignore[attr-defined]
        total_bad += len(bad_offsets)
        batch += 1
    assert total_bad >= 100_000
    # Every category was exercised: the rejection reasons cover the decoder's and the validator's words.
    assert len(reasons) >= 9, reasons


any_headers = st.lists(
    st.tuples(
        st.sampled_from([TT, AT, DELAY, EPOCH, TKEY, TPART, "user", "x"]),
        st.none() | st.binary(max_size=24) | st.sampled_from([b"orders", b"0", b"-1", str(NOW).encode()]),
    ),
    max_size=6,
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.none() | st.binary(max_size=12) | st.sampled_from([b"a", b"b"]),
            st.none() | st.binary(max_size=60) | st.builds(lambda t: MAGIC + t, st.binary(max_size=40)),
            any_headers,
        ),
        min_size=1,
        max_size=30,
    )
)
def test_arbitrary_records_are_each_accounted_for_exactly_once(
    raw: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
) -> None:
    records = [InputRecord(0, i, NOW, k, v, h) for i, (k, v, h) in enumerate(raw)]
    plan, _ = run_batch(records)
    rejected = Counter(r.record.offset for r in plan.rejects)  # type: ignore[attr-defined]
    assert all(c == 1 for c in rejected.values())
    assert len(rejected) + plan.scheduled + plan.cancels == len(records)  # type: ignore[attr-defined]
    for r in plan.rejects:  # type: ignore[attr-defined]
        assert WORD.match(r.reason.value) and r.message


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_valid_schedule_fires_whatever_garbage_surrounds_it(data: st.DataObject) -> None:
    garbage = data.draw(
        st.lists(st.tuples(st.binary(max_size=8), st.binary(max_size=40), any_headers), max_size=10)
    )
    position = data.draw(st.integers(min_value=0, max_value=len(garbage)))
    rows: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]] = [
        (b"x-" + k, v, h) for k, v, h in garbage
    ]
    rows.insert(position, (b"keep", b"payload", [(TT, b"orders"), (AT, str(NOW - 1).encode())]))
    records = [InputRecord(0, i, NOW, k, v, h) for i, (k, v, h) in enumerate(rows)]
    plan, _ = run_batch(records)
    assert (0, b"keep") in {(f.partition, f.schedule_id) for f in plan.fires}  # type: ignore[attr-defined]


def test_a_cancel_envelope_among_garbage_is_a_cancel() -> None:
    records = [
        InputRecord(0, 0, NOW, b"c", MAGIC + b"\x00" * 8, []),
        InputRecord(0, 1, NOW, b"c", encode_cancel("c"), []),
    ]
    plan, _ = run_batch(records)
    assert plan.cancels == 1 and len(plan.rejects) == 1  # type: ignore[attr-defined]


def test_records_of_wrong_types_are_rejected_not_raised() -> None:
    """The batch decode hands whatever it cannot read to decode_command, which rejects it."""
    records = [
        InputRecord(0, 0, NOW, b"a", 12345, [(TT, 7)]),  # type: ignore[arg-type]
        InputRecord(0, 1, NOW, "b", encode_cancel("b"), None),  # type: ignore[arg-type]
        InputRecord(0, 2, NOW, b"c", encode_cancel("c"), [(b"name", b"v")]),  # type: ignore[list-item]
        InputRecord(0, 3, NOW, b"d", encode_cancel("d"), ("\udcff", b"v")),  # type: ignore[arg-type]
        InputRecord(0, 4, 2**70, b"e", _valid_envelope(random.Random(1), "e"), None),
    ]
    plan, _ = run_batch(records)
    outcome = {r.record.offset: r.reason for r in plan.rejects}  # type: ignore[attr-defined]
    assert outcome[0] is RejectReason.DESERIALIZATION_ERROR
    assert len(outcome) + plan.scheduled + plan.cancels == len(records)  # type: ignore[attr-defined]
