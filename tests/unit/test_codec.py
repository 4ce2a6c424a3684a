"""The wire contract: each accepted form round-trips, each malformed form is rejected with its reason."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from io import BytesIO
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import codec
from scheduler.errors import CodecError, CorruptStateRecord
from scheduler.model import Cancel, Command, Missed, Overlap, Recurrence, Rejected, RejectReason, Schedule

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
TOPIC = "orders.expired"

ids = st.text(min_size=1, max_size=60).filter(lambda s: 0 < len(s.encode()) <= 255)
topics = st.from_regex(r"[a-zA-Z0-9._-]{1,40}", fullmatch=True).filter(lambda t: t not in (".", ".."))
user_header_names = st.text(max_size=20).filter(lambda n: n not in codec.CONTROL_HEADERS)
headers = st.lists(st.tuples(user_header_names, st.none() | st.binary(max_size=30)), max_size=5).map(tuple)
dues = st.integers(min_value=0, max_value=NOW + codec.HORIZON_MS)


longs = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# one kind each (an envelope with none or two is rejected), every other field any value the schema carries
recurrences = (
    st.builds(
        Recurrence,
        cron=st.sampled_from(["0 2 * * *", "@hourly", "*/5 * * * * *"]),
        timezone=st.sampled_from(["UTC", "Europe/Paris", "Australia/Lord_Howe"]),
        starts_at=st.none() | longs,
        ends_at=st.none() | longs,
        max_runs=st.none() | longs,
        missed=st.sampled_from(list(Missed)),
        overlap=st.sampled_from(list(Overlap)),
        catch_up_ms=st.none() | longs,
        paused=st.booleans(),
        occurrence_ms=longs,
        runs=longs,
        skipped=longs,
        running_ms=st.none() | longs,
        buffered_ms=st.none() | longs,
    )
    | st.builds(Recurrence, every_ms=longs)
    | st.builds(Recurrence, after_ms=longs)
)


@st.composite
def schedules(
    draw: st.DrawFn, payload: st.SearchStrategy[bytes | None] | None = None, recurring: bool = False
) -> Schedule:
    return Schedule(
        id=draw(ids),
        target_topic=draw(topics),
        due_ms=draw(dues),
        payload=draw(payload if payload is not None else st.none() | st.binary(max_size=200)),
        target_key=draw(st.none() | st.binary(max_size=40)),
        headers=draw(headers),
        target_partition=draw(st.none() | st.integers(min_value=0, max_value=2**31 - 1)),
        created_ms=draw(st.integers(min_value=0, max_value=NOW)),
        producer=draw(st.none() | st.text(max_size=20)),
        recurrence=draw(st.none() | recurrences) if recurring else None,
    )


def decode(key: bytes | None, value: bytes | None, hdrs: Any = None, ts: int = NOW) -> Any:
    return codec.decode_command(key, value, hdrs, ts)


def reason(result: object) -> RejectReason:
    assert isinstance(result, Rejected), result
    return result.reason


def hp(**control: bytes) -> list[tuple[str, bytes | None]]:
    """Header-protocol headers from short names: topic=, at=, delay=, epoch=, key=, partition=."""
    names = {
        "topic": "scheduler-target-topic",
        "at": "scheduler-deliver-at",
        "delay": "scheduler-delay-ms",
        "epoch": "scheduler-epoch",
        "key": "scheduler-target-key",
        "partition": "scheduler-target-partition",
    }
    return [(names[k], v) for k, v in control.items()]


# --- round trips ---


@given(schedules(recurring=True))
def test_envelope_round_trip(s: Schedule) -> None:
    assert decode(s.id.encode(), codec.encode_schedule(s)) == s


@given(ids)
def test_cancel_round_trip(sid: str) -> None:
    assert decode(sid.encode(), codec.encode_cancel(sid)) == Cancel(sid)


@given(schedules(payload=st.binary(max_size=200)), st.integers(min_value=NOW, max_value=2 * NOW))
def test_header_protocol_round_trip(s: Schedule, ts: int) -> None:
    value, hdrs = codec.to_header_protocol(s)
    assert decode(s.id.encode(), value, hdrs, ts=ts) == replace(s, created_ms=ts, producer=None)


@given(schedules(recurring=True), st.integers(min_value=0, max_value=2**62))
def test_state_round_trip_and_peek(s: Schedule, version: int) -> None:
    value = codec.encode_state(s, version)
    assert codec.decode_state(value) == (s, version)
    assert codec.peek_due_ms(value) == s.due_ms


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_peek_reads_any_long(due: int) -> None:
    s = Schedule(id="x", target_topic=TOPIC, due_ms=due)
    assert codec.peek_due_ms(codec.encode_state(s, 0)) == due


# --- layout ---


def test_single_object_header_and_state_field_order() -> None:
    value = codec.encode_schedule(Schedule(id="a", target_topic=TOPIC, due_ms=NOW))
    assert value[:2] == b"\xc3\x01"
    assert value[2:10] == codec.COMMAND_FINGERPRINT
    state = json.loads((codec._schemas_dir() / "state.avsc").read_text())
    assert [(f["name"], f["type"]) for f in state["fields"][:2]] == [("due_ms", "long"), ("version", "long")]


def test_fingerprint_matches_the_avro_spec_vector() -> None:
    """The Avro spec's CRC-64-AVRO fingerprint of "null" is 7195948357588979594; written little-endian."""
    assert int.from_bytes(codec.schema_fingerprint("null"), "little") == 7195948357588979594


def test_envelope_body_is_plain_avro() -> None:
    s = Schedule(id="a", target_topic=TOPIC, due_ms=NOW, payload=b"p", headers=(("h", b"v"),))
    body = schemaless_reader(BytesIO(codec.encode_schedule(s)[10:]), codec.COMMAND_SCHEMA)
    assert body["body"]["deliver_at"] == NOW and body["body"]["headers"] == [{"name": "h", "value": b"v"}]


# --- schema evolution ---


def _next_version(name: str, add_to: str | None) -> Any:
    schema = json.loads((codec._schemas_dir() / f"{name}.avsc").read_text())
    nxt = copy.deepcopy(schema)
    record = nxt if add_to is None else nxt["fields"][0]["type"][0]
    assert add_to is None or record["name"] == add_to
    record["fields"].append({"name": "priority", "type": "int", "default": 7})
    return nxt


def test_next_command_schema_reads_records_of_this_one() -> None:
    reader = codec.parse(_next_version("command", "Schedule"))
    assert codec.schema_fingerprint(_next_version("command", "Schedule")) != codec.COMMAND_FINGERPRINT
    s = Schedule(id="a", target_topic=TOPIC, due_ms=NOW, payload=b"p", target_key=b"k", producer="svc")
    out = schemaless_reader(BytesIO(codec.encode_schedule(s)[10:]), codec.COMMAND_SCHEMA, reader)
    assert (
        out["body"]["priority"] == 7 and out["body"]["payload"] == b"p" and out["body"]["deliver_at"] == NOW
    )


def test_next_state_schema_reads_records_of_this_one() -> None:
    reader = codec.parse(_next_version("state", None))
    s = Schedule(id="a", target_topic=TOPIC, due_ms=NOW, headers=(("h", None),))
    out = schemaless_reader(BytesIO(codec.encode_state(s, 42)[10:]), codec.STATE_SCHEMA, reader)
    assert (out["due_ms"], out["version"], out["priority"], out["headers"]) == (
        NOW,
        42,
        7,
        [{"name": "h", "value": None}],
    )


def _history(name: str) -> tuple[bytes, Any]:
    raw = json.loads((codec._schemas_dir() / "history" / f"{name}.1.avsc").read_text())
    return codec.schema_fingerprint(raw), codec.parse(raw)


def _written(fp: bytes, schema: Any, record: dict[str, Any]) -> bytes:
    out = BytesIO()
    schemaless_writer(out, schema, record)
    return codec.MAGIC + fp + out.getvalue()


def test_records_of_the_schemas_before_recurrence_still_decode() -> None:
    """Version 1 (schemas/history/*.1.avsc, no recurrence): its state records and its clients' commands are read,
    as one-time schedules, through the registered history writer."""
    state_fp, state_v1 = _history("state")
    command_fp, command_v1 = _history("command")
    assert state_fp != codec.STATE_FINGERPRINT and command_fp != codec.COMMAND_FINGERPRINT
    s = Schedule("a", TOPIC, NOW, b"p", b"k", (("h", None),), 2, NOW - 5, "svc")
    shared = {
        "id": "a",
        "target_topic": TOPIC,
        "target_key": b"k",
        "target_partition": 2,
        "payload": b"p",
        "headers": [{"name": "h", "value": None}],
        "producer": "svc",
    }
    state = _written(state_fp, state_v1, {**shared, "due_ms": NOW, "version": 9, "created_ms": NOW - 5})
    assert codec.decode_state(state) == (s, 9)
    assert codec.decode_states([state, codec.encode_state(s, 3)]) == [(s, 9), (s, 3)]
    assert codec.peek_due_ms(state) == NOW
    envelope = {
        "body": ("io.kafkascheduler.v1.Schedule", {**shared, "deliver_at": NOW, "created_at": NOW - 5})
    }
    old_client = _written(command_fp, command_v1, envelope)
    decoded = decode(b"a", old_client)
    assert decoded == s and decoded.recurrence is None
    cancel = _written(command_fp, command_v1, {"body": ("io.kafkascheduler.v1.Cancel", {"id": "a"})})
    assert decode(b"a", cancel) == Cancel("a")


def test_unknown_fingerprint_is_rejected_not_raised() -> None:
    value = codec.encode_schedule(Schedule(id="a", target_topic=TOPIC, due_ms=NOW))
    forged = value[:2] + bytes(8) + value[10:]
    assert reason(decode(b"a", forged)) is RejectReason.UNKNOWN_SCHEMA
    with pytest.raises(CorruptStateRecord, match="unknown schema"):
        codec.decode_state(forged)


# --- malformed forms ---

GOOD = hp(topic=TOPIC.encode(), at=str(NOW).encode())
ENVELOPE = codec.encode_schedule(Schedule(id="a", target_topic=TOPIC, due_ms=NOW, payload=b"x" * 50))


@pytest.mark.parametrize(
    ("key", "value", "hdrs", "expected"),
    [
        (None, b"x", GOOD, RejectReason.MISSING_KEY),
        (b"", b"x", GOOD, RejectReason.MISSING_KEY),
        (b"\xff\xfe", b"x", GOOD, RejectReason.INVALID_KEY),
        (b"a" * 256, b"x", GOOD, RejectReason.INVALID_KEY),
        (b"b", ENVELOPE, None, RejectReason.INVALID_KEY),  # key differs from the envelope's id
        (b"a", ENVELOPE[:30], None, RejectReason.DESERIALIZATION_ERROR),
        (b"a", ENVELOPE + b"\x00", None, RejectReason.DESERIALIZATION_ERROR),
        (b"a", b"\xc3\x01\x00", None, RejectReason.DESERIALIZATION_ERROR),
        (b"a", ENVELOPE[:10] + b"\xff" * 40, None, RejectReason.DESERIALIZATION_ERROR),
        (b"a", b"x", [], RejectReason.MISSING_TARGET_TOPIC),
        (b"a", b"x", hp(at=b"1"), RejectReason.MISSING_TARGET_TOPIC),
        (b"a", b"x", hp(topic=b"bad topic!", at=b"1"), RejectReason.INVALID_TARGET_TOPIC),
        (b"a", b"x", hp(topic=b"..", at=b"1"), RejectReason.INVALID_TARGET_TOPIC),
        (b"a", b"x", hp(topic=b"t" * 250, at=b"1"), RejectReason.INVALID_TARGET_TOPIC),
        (
            b"a",
            b"x",
            [*hp(topic=b"t", at=b"1"), ("scheduler-target-topic", b"u")],
            RejectReason.INVALID_TARGET_TOPIC,
        ),
        (b"a", b"x", hp(topic=b"t", at=b"1", partition=b"-1"), RejectReason.INVALID_TARGET_TOPIC),
        (b"a", b"x", hp(topic=b"t", at=b"1", partition=b"two"), RejectReason.INVALID_TARGET_TOPIC),
        (b"a", b"x", hp(topic=b"t"), RejectReason.INVALID_DUE),
        (b"a", b"x", hp(topic=b"t", at=b"1", delay=b"5"), RejectReason.INVALID_DUE),
        (b"a", b"x", hp(topic=b"t", at=b"1", epoch=b"5"), RejectReason.INVALID_DUE),
        (b"a", b"x", [*hp(topic=b"t", at=b"1"), ("scheduler-deliver-at", b"2")], RejectReason.INVALID_DUE),
        (b"a", b"x", hp(topic=b"t", at=b"tomorrow"), RejectReason.INVALID_DUE),
        (b"a", b"x", hp(topic=b"t", at=b"2026-01-01T10:00:00"), RejectReason.INVALID_DUE),  # naive
        (b"a", b"x", hp(topic=b"t", at=b"2026-02-30T10:00:00Z"), RejectReason.INVALID_DUE),
        (b"a", b"x", hp(topic=b"t", delay=b"-1"), RejectReason.INVALID_DUE),
        (b"a", b"x", hp(topic=b"t", delay=b"1.5"), RejectReason.INVALID_DUE),
        (b"a", b"x", hp(topic=b"t", epoch=b"1700000000.5"), RejectReason.INVALID_DUE),
        (b"a", b"x", [*hp(topic=b"t"), ("scheduler-deliver-at", None)], RejectReason.INVALID_DUE),
        (b"a", b"x", hp(topic=b"t", at=b"-1"), RejectReason.DUE_OUT_OF_RANGE),
        (
            b"a",
            b"x",
            hp(topic=b"t", at=str(NOW + codec.HORIZON_MS + 1).encode()),
            RejectReason.DUE_OUT_OF_RANGE,
        ),
        (b"a", b"x", hp(topic=b"t", at=b"9" * 19), RejectReason.DUE_OUT_OF_RANGE),  # microseconds or worse
        (b"a", b"x", hp(topic=b"t", epoch=str(NOW).encode()), RejectReason.DUE_OUT_OF_RANGE),  # ms sent as s
    ],
)
def test_malformed_command_is_rejected_with_its_reason(
    key: bytes | None, value: bytes | None, hdrs: Any, expected: RejectReason
) -> None:
    assert reason(decode(key, value, hdrs)) is expected


@given(st.binary(max_size=300), st.lists(st.tuples(st.text(max_size=30), st.none() | st.binary(max_size=30))))
@settings(max_examples=300)
def test_decode_never_raises_on_garbage(value: bytes, hdrs: list[tuple[str, bytes | None]]) -> None:
    for v in (value, b"\xc3\x01" + codec.COMMAND_FINGERPRINT + value):
        assert isinstance(decode(b"id", v, hdrs), Command | Rejected)


def test_decode_never_raises_even_on_wrong_types() -> None:
    result = decode(b"id", 12345, [("scheduler-target-topic", 7)])  # type: ignore[arg-type]
    assert reason(result) is RejectReason.DESERIALIZATION_ERROR


def test_envelope_with_out_of_range_due_is_rejected() -> None:
    s = Schedule(id="a", target_topic=TOPIC, due_ms=NOW + codec.HORIZON_MS + 1)
    assert reason(decode(b"a", codec.encode_schedule(s))) is RejectReason.DUE_OUT_OF_RANGE


# --- accepted header forms ---


def test_tombstone_is_an_etf1_cancel() -> None:
    assert decode(b"a", None, GOOD) == Cancel("a")


def test_etf1_epoch_is_seconds() -> None:
    s = decode(b"a", b"p", hp(topic=b"t", epoch=b"1767225600"))
    assert isinstance(s, Schedule) and s.due_ms == NOW


def test_etf1_command_keeps_etf1_control_headers_through_the_state_record() -> None:
    """etf1 passes its control headers through to the fire; they also mark the fire for etf1's headers."""
    hdrs = [*hp(topic=b"t", key=b"k", epoch=b"1767225600"), ("custom", b"1")]
    s = decode(b"a", b"p", hdrs)
    assert isinstance(s, Schedule) and s.target_key == b"k"
    kept = dict(s.headers)
    assert kept == {
        "scheduler-target-topic": b"t",
        "scheduler-target-key": b"k",
        "scheduler-epoch": b"1767225600",
        "custom": b"1",
    }
    assert codec.decode_state(codec.encode_state(s, 9))[0].headers == s.headers
    plain = decode(b"a", b"p", [*hp(topic=b"t", key=b"k", at=b"1"), ("custom", b"1")])
    assert isinstance(plain, Schedule) and plain.headers == (("custom", b"1"),)


def test_delay_is_relative_to_the_record_timestamp() -> None:
    s = decode(b"a", b"p", hp(topic=b"t", delay=b"0"), ts=NOW)
    assert isinstance(s, Schedule) and s.due_ms == NOW
    s = decode(b"a", b"p", hp(topic=b"t", delay=b"1500"), ts=NOW)
    assert isinstance(s, Schedule) and s.due_ms == NOW + 1500


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T00:00:00Z", NOW),
        ("2026-01-01t00:00:00z", NOW),
        ("2026-01-01T01:00:00+01:00", NOW),
        ("2025-12-31T19:00:00-05:00", NOW),
        ("2026-01-01 00:00:00.25Z", NOW + 250),
        ("2026-01-01T00:00:00.123456789+00:00", NOW + 123),
        (str(NOW), NOW),
    ],
)
def test_deliver_at_rfc3339_with_offset_or_epoch_ms(text: str, expected: int) -> None:
    s = decode(b"a", b"p", hp(topic=b"t", at=text.encode()))
    assert isinstance(s, Schedule) and s.due_ms == expected


def test_header_protocol_keeps_user_headers_in_order_and_fills_target() -> None:
    hdrs = [("b", b"1"), *hp(topic=b"t", at=b"5", key=b"k", partition=b"3"), ("a", None), ("b", b"2")]
    assert decode(b"a", b"p", hdrs) == Schedule(
        id="a",
        target_topic="t",
        due_ms=5,
        payload=b"p",
        target_key=b"k",
        headers=(("b", b"1"), ("a", None), ("b", b"2")),
        target_partition=3,
        created_ms=NOW,
    )


def test_header_protocol_cannot_carry_a_null_payload_or_control_headers() -> None:
    with pytest.raises(CodecError, match="cancel"):
        codec.to_header_protocol(Schedule(id="a", target_topic="t", due_ms=1))
    with pytest.raises(CodecError, match="collide"):
        codec.to_header_protocol(
            Schedule(id="a", target_topic="t", due_ms=1, payload=b"", headers=(("scheduler-epoch", b"1"),))
        )


# --- state record ---


@pytest.mark.parametrize(
    "bad", [b"", b"xx", b"\xc3\x01", b"\xc3\x01" + bytes(8), b"\xc3\x01" + bytes(8) + b"\xff"]
)
def test_corrupt_state_record_raises(bad: bytes) -> None:
    with pytest.raises(CorruptStateRecord):
        codec.decode_state(bad)


@pytest.mark.parametrize(
    "bad", [b"", b"xx\x00" + bytes(10), b"\xc3\x01" + bytes(8), b"\xc3\x01" + bytes(8) + b"\xff"]
)
def test_peek_of_a_corrupt_state_record_raises(bad: bytes) -> None:
    with pytest.raises(CorruptStateRecord):
        codec.peek_due_ms(bad)


def test_state_value_of_a_command_is_not_a_state_record() -> None:
    with pytest.raises(CorruptStateRecord):
        codec.decode_state(ENVELOPE)


def test_header_protocol_payload_may_start_like_an_envelope() -> None:
    """Found by Hypothesis: a target-topic header means header protocol even if the payload starts C3 01."""
    s = decode(b"a", ENVELOPE, GOOD)
    assert isinstance(s, Schedule) and s.payload == ENVELOPE and s.target_topic == TOPIC
