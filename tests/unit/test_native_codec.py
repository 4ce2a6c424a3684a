"""The native Avro codec against fastavro, the reference: byte for byte on writes, value for value on reads, and
the same accept/reject on garbage (native is stricter only where fastavro wraps a value, see STRICTER_THAN_FASTAVRO).

Also the batch intake: what `codec.intake` returns for a record is what `decode_command` + `encode_state` give.
"""

from __future__ import annotations

import dataclasses
import json
from io import BytesIO
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scheduler import _native, codec, model
from scheduler.errors import CorruptStateRecord
from scheduler.model import (
    PARKED_MS,
    Backfill,
    Cancel,
    Command,
    Done,
    Pause,
    Recurrence,
    Rejected,
    RejectReason,
    Resume,
    Schedule,
)
from scheduler.service.plan import InputRecord

NOW = 1_767_225_600_000
FAR = 2**62
I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
SCHEDULE_NAME = "io.kafkascheduler.v1.Schedule"
CANCEL_NAME = "io.kafkascheduler.v1.Cancel"
CONTROL_NAMES = {
    Cancel: CANCEL_NAME,
    Pause: "io.kafkascheduler.v1.Pause",
    Resume: "io.kafkascheduler.v1.Resume",
    Done: "io.kafkascheduler.v1.Done",
    Backfill: "io.kafkascheduler.v1.Backfill",
}

ids = st.text(min_size=1, max_size=40).filter(lambda s: 0 < len(s.encode()) <= 255)
topics = st.from_regex(r"[a-zA-Z0-9._-]{1,40}", fullmatch=True).filter(lambda t: t not in (".", ".."))
large = st.builds(
    lambda n, b: b * n, st.integers(min_value=70_000, max_value=70_100), st.binary(min_size=1, max_size=2)
)
payloads = st.none() | st.just(b"") | st.binary(max_size=300) | large
header_lists = st.lists(st.tuples(st.text(max_size=20), st.none() | st.binary(max_size=30)), max_size=6)
partitions = st.none() | st.sampled_from([0, 1, 2**31 - 1]) | st.integers(min_value=0, max_value=2**31 - 1)
times = st.sampled_from([0, NOW, FAR, 2**63 - 1]) | st.integers(min_value=0, max_value=FAR)
opt_longs = st.none() | I64
words = st.sampled_from(["latest", "skip", "all", "allow", "buffer_one", ""]) | st.text(max_size=12)


@st.composite
def recurrences(draw: st.DrawFn) -> Recurrence:
    """Every field, any value the schema can carry (the words are the scheduler's to check, not the codec's)."""
    return Recurrence(
        cron=draw(
            st.none() | st.sampled_from(["0 2 * * *", "*/5 * * * * *", "@hourly"]) | st.text(max_size=30)
        ),
        every_ms=draw(opt_longs),
        after_ms=draw(opt_longs),
        timezone=draw(st.sampled_from(["UTC", "Europe/Paris", "Australia/Lord_Howe"]) | st.text(max_size=30)),
        starts_at=draw(opt_longs),
        ends_at=draw(opt_longs),
        max_runs=draw(opt_longs),
        missed=draw(words),
        overlap=draw(words),
        catch_up_ms=draw(opt_longs),
        paused=draw(st.booleans()),
        occurrence_ms=draw(I64),
        runs=draw(I64),
        skipped=draw(I64),
        running_ms=draw(opt_longs),
        buffered_ms=draw(opt_longs),
    )


@st.composite
def schedules(draw: st.DrawFn, due: st.SearchStrategy[int] = times) -> Schedule:
    return Schedule(
        id=draw(ids),
        target_topic=draw(topics),
        due_ms=draw(due),
        payload=draw(payloads),
        target_key=draw(st.none() | st.binary(max_size=40)),
        headers=tuple(draw(header_lists)),
        target_partition=draw(partitions),
        created_ms=draw(times),
        producer=draw(st.none() | st.text(max_size=20)),
        recurrence=draw(st.none() | recurrences()),
    )


controls = st.one_of(
    st.builds(Cancel, ids),
    st.builds(Pause, ids),
    st.builds(Resume, ids),
    st.builds(Done, ids, st.text(max_size=60), I64),
    st.builds(Backfill, ids, I64, I64),
)


# --- the reference: fastavro with the schema files ---


def _headers_out(s: Schedule) -> list[dict[str, Any]]:
    return [{"name": n, "value": v} for n, v in s.headers]


def _headers_in(raw: list[dict[str, Any]]) -> tuple[tuple[str, bytes | None], ...]:
    return tuple((h["name"], h["value"]) for h in raw)


def _shared_fields(s: Schedule) -> dict[str, Any]:
    return {
        "id": s.id,
        "target_topic": s.target_topic,
        "target_key": s.target_key,
        "target_partition": s.target_partition,
        "payload": s.payload,
        "headers": _headers_out(s),
        "producer": s.producer,
        "recurrence": None if s.recurrence is None else dataclasses.asdict(s.recurrence),
    }


def _recurrence_in(raw: tuple[str, dict[str, Any]] | None) -> Recurrence | None:
    return None if raw is None else Recurrence(**raw[1])  # (record name, fields): return_record_name


def _command_fields(s: Schedule) -> dict[str, Any]:
    return {**_shared_fields(s), "deliver_at": s.due_ms, "created_at": s.created_ms}


def _state_fields(s: Schedule) -> dict[str, Any]:
    return {**_shared_fields(s), "due_ms": s.due_ms, "created_ms": s.created_ms}


def ref_encode_schedule(s: Schedule) -> bytes:
    body = {"body": (SCHEDULE_NAME, _command_fields(s))}
    return _write(codec.COMMAND_FINGERPRINT, codec.COMMAND_SCHEMA, body)


def ref_encode_cancel(sid: str) -> bytes:
    return _write(codec.COMMAND_FINGERPRINT, codec.COMMAND_SCHEMA, {"body": (CANCEL_NAME, {"id": sid})})


def ref_encode_control(c: Command) -> bytes:
    fields = dataclasses.asdict(c)  # type: ignore[call-overload]
    if isinstance(c, Done):
        fields["finished_at"] = fields.pop("finished_ms")
    body = {"body": (CONTROL_NAMES[type(c)], fields)}
    return _write(codec.COMMAND_FINGERPRINT, codec.COMMAND_SCHEMA, body)


def ref_encode_state(s: Schedule, version: int) -> bytes:
    return _write(codec.STATE_FINGERPRINT, codec.STATE_SCHEMA, {**_state_fields(s), "version": version})


def _ref_read(value: bytes, fp: bytes, schema: Any) -> Any:
    if value[:2] != codec.MAGIC or value[2:10] != fp:
        raise ValueError("not single-object encoding of the current schema")
    body = BytesIO(value)
    body.seek(10)
    record = schemaless_reader(body, schema, return_record_name=True)
    if body.tell() != len(value):
        raise ValueError("trailing bytes")
    return record


def ref_decode_state(value: bytes) -> tuple[Schedule, int]:
    r = _ref_read(value, codec.STATE_FINGERPRINT, codec.STATE_SCHEMA)
    fields = (r["id"], r["target_topic"], r["due_ms"], r["payload"], r["target_key"])
    rest = (_headers_in(r["headers"]), r["target_partition"], r["created_ms"], r["producer"])
    return Schedule(*fields, *rest, _recurrence_in(r["recurrence"])), r["version"]


def ref_decode_envelope(value: bytes) -> Command:
    name, b = _ref_read(value, codec.COMMAND_FINGERPRINT, codec.COMMAND_SCHEMA)["body"]
    for cls, cls_name in CONTROL_NAMES.items():
        if name == cls_name:
            if cls is Done:
                return Done(b["id"], b["fire_id"], b["finished_at"])
            return cls(**b)  # type: ignore[no-any-return]
    fields = (b["id"], b["target_topic"], b["deliver_at"], b["payload"], b["target_key"])
    rest = (_headers_in(b["headers"]), b["target_partition"], b["created_at"], b["producer"])
    return Schedule(*fields, *rest, _recurrence_in(b["recurrence"]))


# --- writes: byte for byte ---


@settings(max_examples=300)
@given(schedules(), st.integers(min_value=0, max_value=2**63 - 1))
def test_writes_match_fastavro_byte_for_byte(s: Schedule, version: int) -> None:
    assert codec.encode_schedule(s) == ref_encode_schedule(s)
    assert codec.encode_state(s, version) == ref_encode_state(s, version)
    assert codec.encode_cancel(s.id) == ref_encode_cancel(s.id)


@settings(max_examples=300)
@given(controls)
def test_control_commands_match_fastavro_both_ways(c: Command) -> None:
    value = codec.encode_cancel(c.id) if isinstance(c, Cancel) else codec.encode_control(c)  # type: ignore[arg-type]
    assert value == ref_encode_control(c)
    assert _native_envelope(value) == ref_decode_envelope(value) == c
    assert codec.decode_command(c.id.encode(), value, None, NOW) == c


def test_encode_control_refuses_what_is_not_a_control_command() -> None:
    with pytest.raises(TypeError, match="Pause, Resume, Done or Backfill"):
        codec.encode_control(Schedule("a", "t", 1))  # type: ignore[arg-type]


@given(I64, I64)
def test_any_long_matches_fastavro(due: int, created: int) -> None:
    s = Schedule(id="i", target_topic="t", due_ms=due, created_ms=created, target_partition=-1)
    assert codec.encode_schedule(s) == ref_encode_schedule(s)
    assert codec.encode_state(s, due) == ref_encode_state(s, due)
    assert codec.peek_due_ms(codec.encode_state(s, 0)) == due


def test_an_int_field_out_of_range_is_refused_like_fastavro() -> None:
    s = Schedule(id="i", target_topic="t", due_ms=1, target_partition=2**31)
    with pytest.raises(ValueError, match="32-bit"):
        codec.encode_state(s, 0)
    with pytest.raises(ValueError):
        ref_encode_state(s, 0)


# --- reads: value for value ---


@settings(max_examples=300)
@given(schedules(), st.integers(min_value=0, max_value=2**63 - 1))
def test_reads_match_fastavro(s: Schedule, version: int) -> None:
    state = ref_encode_state(s, version)
    assert codec.decode_state(state) == ref_decode_state(state) == (s, version)
    envelope = ref_encode_schedule(s)
    decoded = codec.decode_command(s.id.encode(), envelope, None, NOW)
    r = s.recurrence
    if r is not None and sum(kind is not None for kind in (r.cron, r.every_ms, r.after_ms)) != 1:
        assert isinstance(decoded, Rejected) and decoded.reason is RejectReason.INVALID_RECURRENCE
    elif s.due_ms <= NOW + codec.HORIZON_MS or (r is not None and s.due_ms == PARKED_MS):
        assert decoded == s
    else:
        assert isinstance(decoded, Rejected) and decoded.reason is RejectReason.DUE_OUT_OF_RANGE
    assert _native_envelope(envelope) == ref_decode_envelope(envelope) == s


def _native_envelope(value: bytes) -> Command:
    return codec._CODEC.decode_envelope(value)


def test_blocked_header_array_and_padded_union_read_like_fastavro() -> None:
    """Legal Avro that no writer of ours produces: a block with its byte size, a union index in two bytes."""
    s = Schedule(id="a", target_topic="t", due_ms=5, headers=(("h", b"v"),), payload=b"p")
    value = codec.encode_schedule(s)
    one_block = b"\x02\x02h\x02\x02v\x00"  # count 1, "h", branch 1, b"v", end
    assert value.count(one_block) == 1
    item = one_block[1:-1]
    blocked = value.replace(one_block, b"\x01" + bytes([len(item) << 1]) + item + b"\x00")
    assert _native_envelope(blocked) == ref_decode_envelope(blocked) == s
    assert codec.decode_command(b"a", blocked, None, 10) == s
    state = codec.encode_state(Schedule(id="a", target_topic="t", due_ms=5), 1)
    head = codec.HEADER_LEN + 2 + 2 + 2  # due, version, id "a", topic "t"
    padded = state[:head] + b"\x80\x00" + state[head + 1 :]  # target_key's null branch as a 2-byte varint
    assert codec.decode_state(padded) == ref_decode_state(padded) == (Schedule("a", "t", 5), 1)


# --- garbage: the same accept/reject, and only the documented errors ---


def _native_outcome(read: Any, value: bytes) -> tuple[str, object]:
    try:
        return "ok", read(value)
    except _native.AvroError as exc:  # anything else escapes and fails the test
        assert exc.kind and str(exc)
        return "error", exc.kind


def _ref_outcome(read: Any, value: bytes) -> tuple[str, object]:
    try:
        return "ok", read(value)
    except Exception as exc:
        return "error", type(exc).__name__


def _agree(value: bytes) -> None:
    for ours, ref in (
        (codec._CODEC.decode_state, ref_decode_state),
        (_native_envelope, ref_decode_envelope),
    ):
        native, reference = _native_outcome(ours, value), _ref_outcome(ref, value)
        if native[0] == "ok":
            assert reference == native, value
        elif reference[0] == "ok":
            assert native[1] in _native.STRICTER_THAN_FASTAVRO, (value, native, reference)


@settings(max_examples=500)
@given(st.binary(max_size=200))
@example(b"\x01" + b"\x00" * 20)  # union branch -1: fastavro takes it as the last branch
@example(b"\x00\x02a\x02t\x00\x02\x80\x80\x80\x80\x10\x00\x00\x0a\x00\x00")  # int 2^31
def test_random_bodies_agree_with_fastavro(body: bytes) -> None:
    for value in (
        body,
        codec.MAGIC + codec.COMMAND_FINGERPRINT + body,
        codec.MAGIC + codec.STATE_FINGERPRINT + body,
    ):
        _agree(value)


@settings(max_examples=300)
@given(
    schedules(due=st.integers(min_value=0, max_value=NOW)),
    st.integers(min_value=0, max_value=2**40),
    st.data(),
)
def test_truncated_and_bit_flipped_records_agree_with_fastavro(
    s: Schedule, version: int, data: st.DataObject
) -> None:
    values = (codec.encode_state(s, version), codec.encode_schedule(s), codec.encode_cancel(s.id))
    for value in (*values, codec.encode_control(Done(s.id, "f", version))):
        cut = data.draw(st.integers(min_value=0, max_value=len(value)))
        _agree(value[:cut])
        mangled = bytearray(value)
        for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
            at = data.draw(st.integers(min_value=0, max_value=len(value) - 1))
            mangled[at] ^= data.draw(st.integers(min_value=1, max_value=255))
        _agree(bytes(mangled))


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"", "Truncated"),
        (b"\x0c", "BadUnion"),  # branch 6: the union has 6 (0 to 5)
        (b"\x01", "BadUnion"),
        (b"\x00\x03ab", "NegativeLength"),
        (b"\x00\x0aab", "LengthPastEnd"),
        (b"\x00\x02\xff", "InvalidUtf8"),
        (b"\x00" + b"\xff" * 11, "VarintTooLong"),
        (b"\x02\x02a\x00", "TrailingBytes"),
    ],
)
def test_each_malformed_envelope_is_one_documented_reject(body: bytes, kind: str) -> None:
    value = codec.MAGIC + codec.COMMAND_FINGERPRINT + body
    with pytest.raises(_native.AvroError) as raised:
        _native_envelope(value)
    assert raised.value.kind == kind
    result = codec.decode_command(b"a", value, None, NOW)
    assert isinstance(result, Rejected) and result.reason is RejectReason.DESERIALIZATION_ERROR
    assert result.message.startswith("Avro envelope: ")
    with pytest.raises(CorruptStateRecord, match="does not decode"):
        codec.decode_state(codec.MAGIC + codec.STATE_FINGERPRINT + b"\x02\x02" + body)


def test_a_schema_file_the_native_layout_was_not_written_for_is_refused() -> None:
    with pytest.raises(ValueError, match=r"schemas/command\.avsc .* native/src/codec\.rs"):
        _native.Codec(bytes(8), codec.STATE_FINGERPRINT, model)
    with pytest.raises(ValueError, match=r"schemas/state\.avsc"):
        _native.Codec(codec.COMMAND_FINGERPRINT, codec.COMMAND_FINGERPRINT, model)


# --- the batch intake equals decode_command + encode_state ---

ROUTED = [
    "scheduler-forwarded-timestamp",
    "scheduler-target-topic",
    "scheduler-relocated-from",
    "scheduler-control",
]


@st.composite
def consumed(draw: st.DrawFn) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]] | None]:
    s = draw(schedules(due=st.integers(min_value=0, max_value=NOW + 1000)))
    key = s.id.encode()
    kind = draw(st.sampled_from(["schedule", "cancel", "tombstone", "garbage", "other-id", "header"]))
    value: bytes | None
    if kind == "schedule":
        value = codec.encode_schedule(s)
    elif kind == "cancel":
        value = codec.encode_cancel(s.id)
    elif kind == "tombstone":
        value = None
    elif kind == "garbage":
        value = codec.MAGIC + codec.COMMAND_FINGERPRINT + draw(st.binary(max_size=40))
    elif kind == "other-id":
        value, key = codec.encode_schedule(s), key + b"x"
    else:
        value = draw(st.binary(max_size=20))
    key = (
        draw(st.just(key) | st.none() | st.just(b"") | st.just(b"\xff") | st.just(b"k" * 256))
        if draw(st.booleans())
        else key
    )
    headers = draw(
        st.none()
        | st.lists(
            st.tuples(
                st.sampled_from([*ROUTED, "user", "scheduler-deliver-at"]),
                st.none() | st.just(b"1") | st.just(b"pause"),
            )
        )
    )
    return key, value, headers


@settings(max_examples=150, deadline=None)
@given(st.lists(consumed(), max_size=10))
def test_intake_is_decode_command_plus_encode_state(rows: list[Any]) -> None:
    records = [InputRecord(0, 1000 + i, NOW, k, v, h) for i, (k, v, h) in enumerate(rows)]
    for record, taken in zip(records, codec.intake(records), strict=True):
        expected = codec.decode_command(record.key, record.value, record.headers, record.timestamp_ms)
        if taken is None:
            continue
        if isinstance(taken, Cancel):
            assert taken == expected
        else:
            schedule, state = taken
            assert schedule == expected
            assert (
                state
                == codec.encode_state(schedule, record.offset)
                == ref_encode_state(schedule, record.offset)
            )


def test_intake_takes_plain_envelopes_and_cancels_natively() -> None:
    """The fast path is the common one: an Avro schedule or cancel without routing headers never needs Python."""
    s = Schedule(id="a", target_topic="t", due_ms=NOW, payload=b"p", headers=(("user", b"1"),))
    records = [
        InputRecord(0, 7, NOW, b"a", codec.encode_schedule(s), [("user", b"1")]),
        InputRecord(0, 8, NOW, b"a", codec.encode_cancel("a"), None),
        InputRecord(0, 9, NOW, b"a", None, []),
        InputRecord(0, 10, NOW, b"a", codec.encode_schedule(s), [("scheduler-relocated-from", b"1")]),
    ]
    assert codec.intake(records) == [(s, codec.encode_state(s, 7)), Cancel("a"), Cancel("a"), None]


def test_a_control_header_makes_even_an_envelope_pythons_to_decode() -> None:
    """scheduler-control ignores the value: the native intake must not take the envelope it may carry."""
    envelope = codec.encode_schedule(Schedule(id="a", target_topic="t", due_ms=NOW))
    record = InputRecord(0, 1, NOW, b"a", envelope, [("scheduler-control", b"pause")])
    assert codec.intake([record]) == [None]
    assert codec.decode_command(record.key, record.value, record.headers, NOW) == Pause("a")


# --- older writer schemas: fastavro resolves them to the current one ---


def _older(name: str, record_of: Any) -> Any:
    """The current schema as it was before `producer` was added (a different fingerprint)."""
    schema = json.loads((codec._schemas_dir() / f"{name}.avsc").read_text())
    record = record_of(schema)
    record["fields"] = [f for f in record["fields"] if f["name"] != "producer"]
    return schema


def test_records_of_a_history_writer_schema_are_resolved_by_fastavro(monkeypatch: pytest.MonkeyPatch) -> None:
    old_state = _older("state", lambda sch: sch)
    old_command = _older("command", lambda sch: sch["fields"][0]["type"][0])
    state_fp, command_fp = codec.schema_fingerprint(old_state), codec.schema_fingerprint(old_command)
    assert state_fp != codec.STATE_FINGERPRINT and command_fp != codec.COMMAND_FINGERPRINT
    s = Schedule("a", "t", 5, b"p", b"k", (("h", None),), 2, 3)
    record = {**_state_fields(s), "version": 9}
    del record["producer"]
    state = _write(state_fp, codec.parse(old_state), record)
    body = {**_command_fields(s)}
    del body["producer"]
    envelope = _write(command_fp, codec.parse(old_command), {"body": (SCHEDULE_NAME, body)})
    assert isinstance(
        codec.decode_command(b"a", envelope, None, NOW), Rejected
    )  # not registered: unknown_schema
    with pytest.raises(CorruptStateRecord, match="unknown schema"):
        codec.decode_state(state)
    monkeypatch.setitem(codec._STATE_HISTORY, state_fp, codec.parse(old_state))
    monkeypatch.setitem(codec._COMMAND_HISTORY, command_fp, codec.parse(old_command))
    assert codec.decode_state(state) == (s, 9)
    assert codec.decode_command(b"a", envelope, None, NOW) == s
    assert codec.intake([InputRecord(0, 1, NOW, b"a", envelope, None)]) == [None]  # Python decides


def _write(fp: bytes, schema: Any, record: dict[str, Any]) -> bytes:
    out = BytesIO(codec.MAGIC + fp)
    out.seek(0, 2)
    schemaless_writer(out, schema, record)
    return out.getvalue()


@given(
    st.lists(
        st.one_of(schedules().map(lambda s: codec.encode_state(s, 7)), st.binary(max_size=40)), max_size=8
    )
)
def test_decode_states_is_decode_state_of_each(values: list[bytes]) -> None:
    """One native call for a tick's fires gives what decode_state gives record by record, errors included."""
    expected: list[object] = []
    for value in values:
        try:
            expected.append(codec.decode_state(value))
        except CorruptStateRecord as exc:
            expected.append(str(exc))
    got = [str(d) if isinstance(d, CorruptStateRecord) else d for d in codec.decode_states(values)]
    assert got == expected
