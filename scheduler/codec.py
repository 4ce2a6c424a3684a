"""The wire contract: Avro single-object encoding for commands and state, the header protocol, etf1 seconds.

The Avro layout is one implementation, in the native core (`scheduler._native.Codec`), handed the fingerprints
this module computes from the schema files (it refuses to start on a schema it was not written for); fastavro
reads records of older writer schemas (schemas/history/) and is the reference the tests compare it with.
`decode_command` is a pure function of the record and never raises: the scheduler turns every bad command into
one reject record instead of stopping on it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any, Protocol

from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint, to_parsing_canonical_form

import scheduler.model
from scheduler._native import AvroError, ClientFast, Codec, UnknownFingerprint
from scheduler._native import peek_due_ms as _peek_due_ms
from scheduler.errors import CodecError, CorruptStateRecord
from scheduler.headers import (
    DUE_HEADERS,
    RECURRENCE_HEADERS,
    Refused,
    control_command,
    integer,
    recurrence,
    recurrence_headers,
    recurring_due,
    single,
    time_ms,
)
from scheduler.model import (
    HEADER_CONTROL,
    HEADER_DELAY_MS,
    HEADER_DELIVER_AT,
    HEADER_EPOCH,
    HEADER_FORWARDED_FROM,
    HEADER_FORWARDED_TIMESTAMP,
    HEADER_RELOCATED_FROM,
    HEADER_TARGET_KEY,
    HEADER_TARGET_PARTITION,
    HEADER_TARGET_TOPIC,
    PARKED_MS,
    Backfill,
    Cancel,
    Command,
    Control,
    Done,
    Pause,
    Recurrence,
    Rejected,
    RejectReason,
    Relocated,
    Resume,
    Schedule,
)

__all__ = [
    "CONTROL_HEADERS",
    "MAX_ID_BYTES",
    "MAX_MESSAGE_CHARS",
    "ROUTING_HEADERS",
    "Consumed",
    "client_fast",
    "decode_command",
    "decode_state",
    "encode_cancel",
    "encode_control",
    "encode_schedule",
    "encode_state",
    "intake",
    "is_legal_topic",
    "peek_due_ms",
    "restate",
    "step_on_time",
    "to_header_protocol",
]

MAGIC = b"\xc3\x01"
HEADER_LEN = 10  # magic + 8-byte fingerprint
MAX_ID_BYTES = 255
MAX_MESSAGE_CHARS = 1024
HORIZON_MS = 36525 * 86_400_000  # 100 years: anything later is a unit mix-up, not a plan
# the scheduler's own, on `scheduled`
ROUTING_HEADERS = (HEADER_FORWARDED_FROM, HEADER_FORWARDED_TIMESTAMP, HEADER_RELOCATED_FROM)
CONTROL_HEADERS = frozenset(
    (
        HEADER_TARGET_TOPIC,
        HEADER_TARGET_KEY,
        HEADER_TARGET_PARTITION,
        *DUE_HEADERS,
        *ROUTING_HEADERS,
        *RECURRENCE_HEADERS,
    )
)
ETF1_CONTROL_HEADERS = frozenset((HEADER_EPOCH, HEADER_TARGET_TOPIC, HEADER_TARGET_KEY))
_TOPIC_RE = re.compile(r"[a-zA-Z0-9._-]{1,249}")
_INT_RE = re.compile(r"-?[0-9]{1,19}")
_CONTROL_RECORDS: dict[str, Callable[[dict[str, Any]], Command]] = {
    "io.kafkascheduler.v1.Cancel": lambda b: Cancel(b["id"]),
    "io.kafkascheduler.v1.Pause": lambda b: Pause(b["id"]),
    "io.kafkascheduler.v1.Resume": lambda b: Resume(b["id"]),
    "io.kafkascheduler.v1.Done": lambda b: Done(b["id"], b["fire_id"], b["finished_at"]),
    "io.kafkascheduler.v1.Backfill": lambda b: Backfill(b["id"], b["from_ms"], b["to_ms"]),
}


def _schemas_dir() -> Path:
    """The wheel ships schemas as scheduler/_schemas; the source tree keeps them in ../schemas."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_schemas", here.parent / "schemas"):
        if (candidate / "command.avsc").is_file():
            return candidate
    raise RuntimeError(f"schemas not found next to {here}: reinstall kafka-scheduler")


def _strip_logical_types(node: Any) -> Any:
    """Read timestamp-millis as plain ints (the model's unit); the fingerprint still uses the real schema."""
    if isinstance(node, dict):
        return {k: _strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical_types(v) for v in node]
    return node


def schema_fingerprint(schema: Any) -> bytes:
    """CRC-64-AVRO of the parsing canonical form, as the 8 little-endian bytes the header carries."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def parse(schema: Any) -> Any:
    """A fastavro schema (older writers' records, and the reference in tests)."""
    return parse_schema(_strip_logical_types(schema))


def _load(name: str) -> tuple[bytes, Any, dict[bytes, Any]]:
    """The current schema (fingerprint, parsed) and every older writer schema kept in history, by fingerprint."""
    base = _schemas_dir()
    current = json.loads((base / f"{name}.avsc").read_text())
    current_fp = schema_fingerprint(current)
    history: dict[bytes, Any] = {}
    for old in sorted((base / "history").glob(f"{name}.*.avsc")):
        raw = json.loads(old.read_text())
        if schema_fingerprint(raw) != current_fp:
            history.setdefault(schema_fingerprint(raw), parse(raw))
    return current_fp, parse(current), history


COMMAND_FINGERPRINT, COMMAND_SCHEMA, _COMMAND_HISTORY = _load("command")
STATE_FINGERPRINT, STATE_SCHEMA, _STATE_HISTORY = _load("state")
# ValueError here (at import) if a schema file no longer matches the native layout: never a stale wire format.
_CODEC = Codec(COMMAND_FINGERPRINT, STATE_FINGERPRINT, scheduler.model)


class Consumed(Protocol):
    """What `intake` reads of a consumed command (scheduler.service.plan.InputRecord)."""

    @property
    def offset(self) -> int: ...
    @property
    def timestamp_ms(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]] | None: ...


def is_legal_topic(name: str) -> bool:
    """Kafka's own rule, checked here so a typo is refused at the edge, not at fire time."""
    return name not in (".", "..") and _TOPIC_RE.fullmatch(name) is not None


def encode_schedule(s: Schedule) -> bytes:
    """The Avro envelope value for a schedule; the record key is `s.id.encode()`."""
    return _CODEC.encode_schedule(s)


def client_fast(ready: set[str], horizon_ms: int, max_payload: int, producer: str | None) -> ClientFast:
    """SchedulerClient.schedule()'s common case in one native call (None where the Python path must decide);
    `ready` holds the target topics that path accepted."""
    return ClientFast(_CODEC, ready, horizon_ms, max_payload, producer, CONTROL_HEADERS)


def encode_cancel(schedule_id: str) -> bytes:
    """The Avro envelope value for a cancel; the record key is the schedule id."""
    return _CODEC.encode_cancel(schedule_id)


def encode_control(command: Control) -> bytes:
    """The Avro envelope value for a pause, resume, done or backfill; the record key is `command.id`."""
    return _CODEC.encode_control(command)


def encode_state(s: Schedule, version: int) -> bytes:
    """The state-topic record for a pending schedule; `version` is the input offset that created it."""
    return _CODEC.encode_state(s, version)


def step_on_time(
    record: bytes, now_ms: int, grace_ms: int, catch_up_ms: int
) -> tuple[bytes | None, int, int, int] | None:
    """`scheduler.recurring.step` of a due state record in its common case, in one native call: an `every`
    schedule (not paused, nothing running or buffered, overlap allow) whose armed occurrence is the only one due
    and not late (within `grace_ms`, and the catch-up window under missed=all). Returns (the next state record,
    None when this fire ends the schedule; the fired occurrence's at_ms, run, skipped so far), or None where the
    engine must decide (any other case, or a record of an older writer schema)."""
    return _CODEC.step_on_time(record, now_ms, grace_ms, catch_up_ms)


def restate(record: bytes, due_ms: int, recurrence: Recurrence) -> bytes:
    """The same state record with a new due time and Recurrence, without building a Schedule in Python (a
    record of an older writer schema is decoded and re-encoded in the current one)."""
    found = _CODEC.restate(record, due_ms, recurrence)
    if found is not None:
        return found
    schedule, version = decode_state(record)
    return encode_state(dataclasses.replace(schedule, due_ms=due_ms, recurrence=recurrence), version)


def intake(records: Sequence[Consumed]) -> list[tuple[Schedule, bytes] | Cancel | None]:
    """A consumed batch in one native call: per record the Avro schedule `decode_command` would return with its
    state record (version = offset), a Cancel, or None where `decode_command` must decide (the header protocol,
    routed or relocated copies, older writer schemas, and every reject with its message)."""
    return _CODEC.intake(records)


def _read_history(value: bytes, writer: Any, reader: Any) -> Any:
    """A record of an older writer schema, resolved by fastavro to the current one."""
    body = BytesIO(value)
    body.seek(HEADER_LEN)
    record = schemaless_reader(body, writer, reader, return_record_name=True)
    if body.tell() != len(value):
        raise ValueError(f"{len(value) - body.tell()} trailing bytes after the Avro body")
    return record


def _headers_in(headers: list[dict[str, Any]]) -> tuple[tuple[str, bytes | None], ...]:
    return tuple((h["name"], h["value"]) for h in headers)


def _recurrence_in(r: tuple[str, dict[str, Any]] | None) -> Recurrence | None:
    """fastavro's (record name, fields) of a Recurrence; None also for a record of a writer without one."""
    return None if r is None else Recurrence(**r[1])


def decode_state(value: bytes) -> tuple[Schedule, int]:
    """A state record back to (schedule, version); loud, because skipping a record loses a schedule."""
    return _decode_state(value if type(value) is bytes else bytes(value))


def decode_states(values: Sequence[bytes]) -> list[tuple[Schedule, int] | CorruptStateRecord]:
    """`decode_state` of each record in one native call (a tick's fires); a record that call cannot read is
    decoded alone, which resolves an older writer schema or gives the CorruptStateRecord that says why."""
    decoded = _CODEC.decode_states(values)
    if None not in decoded:
        return decoded  # type: ignore[return-value]  # no None: every entry is a (Schedule, version)
    out: list[tuple[Schedule, int] | CorruptStateRecord] = []
    for value, entry in zip(values, decoded, strict=True):
        if entry is not None:
            out.append(entry)
            continue
        try:
            out.append(decode_state(value))
        except CorruptStateRecord as exc:
            out.append(exc)
    return out


def _decode_state(value: bytes) -> tuple[Schedule, int]:
    try:
        return _CODEC.decode_state(value)
    except UnknownFingerprint:
        writer = _STATE_HISTORY.get(value[2:HEADER_LEN])
        if writer is None:
            raise CorruptStateRecord(
                f"state record has unknown schema fingerprint {value[2:HEADER_LEN].hex()}: upgrade the scheduler"
            ) from None
    except AvroError as exc:
        raise CorruptStateRecord(f"state record does not decode: {exc}") from None
    try:
        r = _read_history(value, writer, STATE_SCHEMA)
    except Exception as exc:
        raise CorruptStateRecord(f"state record does not decode: {type(exc).__name__}: {exc}") from exc
    schedule = Schedule(
        r["id"],
        r["target_topic"],
        r["due_ms"],
        r["payload"],
        r["target_key"],
        _headers_in(r["headers"]),
        r["target_partition"],
        r["created_ms"],
        r["producer"],
        _recurrence_in(r.get("recurrence")),
    )
    return schedule, r["version"]


def peek_due_ms(value: bytes) -> int:
    """The due time from the first field (a zigzag varint after the header), without a full decode."""
    try:
        return _peek_due_ms(value)
    except AvroError as exc:
        raise CorruptStateRecord(f"state record has no due_ms: {exc}") from None


def to_header_protocol(s: Schedule) -> tuple[bytes | None, list[tuple[str, bytes | None]]]:
    """What kcat or a Java producer sends for `s`: (value, headers), with the id as the record key (a recurring
    schedule's kind and options instead of a due time: the scheduler arms it from the record time)."""
    if s.payload is None:
        raise CodecError("a null value is a cancel in the header protocol: send b'' or use the Avro envelope")
    clash = [name for name, _ in s.headers if name in CONTROL_HEADERS]
    if clash:
        raise CodecError(f"user headers {clash} collide with the header protocol's control headers")
    headers: list[tuple[str, bytes | None]] = [(HEADER_TARGET_TOPIC, s.target_topic.encode())]
    if s.target_key is not None:
        headers.append((HEADER_TARGET_KEY, s.target_key))
    if s.target_partition is not None:
        headers.append((HEADER_TARGET_PARTITION, str(s.target_partition).encode()))
    if s.recurrence is None:
        headers.append((HEADER_DELIVER_AT, str(s.due_ms).encode()))
    else:
        try:
            headers.extend(recurrence_headers(s.recurrence))
        except ValueError as exc:
            raise CodecError(str(exc)) from None
    headers.extend(s.headers)
    return s.payload, headers


def decode_command(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] | None,
    timestamp_ms: int,
) -> Command | Rejected:
    """One record from `scheduled` to a command or a rejection; `timestamp_ms` is both the base and "now"."""
    try:
        return _decode_command(key, value, headers or (), timestamp_ms)
    except Exception as exc:  # never raise: one poison record must not stop a partition
        return Rejected(RejectReason.DESERIALIZATION_ERROR, _message(f"{type(exc).__name__}: {exc}"))


def _message(text: str) -> str:
    return text[:MAX_MESSAGE_CHARS]


def _decode_command(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]], ts: int
) -> Command | Rejected:
    if not key:
        return Rejected(RejectReason.MISSING_KEY, "the record has no key: set the key to the schedule id")
    if len(key) > MAX_ID_BYTES:
        return Rejected(RejectReason.INVALID_KEY, f"the key is {len(key)} bytes, over {MAX_ID_BYTES}")
    try:
        sid = key.decode()
    except UnicodeDecodeError:
        return Rejected(RejectReason.INVALID_KEY, "the key is not UTF-8: the schedule id must be UTF-8 text")
    if value is None and not any(name == HEADER_CONTROL for name, _ in headers):
        return Cancel(sid)  # a tombstone is a cancel (etf1's convention), unless it is a control command
    return _decode_value(sid, value or b"", headers, ts)


def _decode_value(
    sid: str, value: bytes, headers: Sequence[tuple[str, bytes | None]], ts: int
) -> Command | Rejected:
    """The Avro envelope (a relocated schedule is one too), or the header protocol (whose payload may start
    C3 01); a forwarded copy's delay counts from the original's timestamp."""
    names = {name for name, _ in headers} if headers else set()
    if HEADER_FORWARDED_TIMESTAMP in names:
        ts = _forwarded_timestamp(headers, ts)
    if value[:2] != MAGIC or HEADER_TARGET_TOPIC in names or HEADER_CONTROL in names:
        return _decode_header_protocol(sid, value, headers, ts)
    command = _decode_envelope(sid, value, ts)
    if HEADER_RELOCATED_FROM in names and isinstance(command, Schedule):
        return Relocated(command)
    return command


def _forwarded_timestamp(headers: Sequence[tuple[str, bytes | None]], ts: int) -> int:
    raw = next((v for k, v in headers if k == HEADER_FORWARDED_TIMESTAMP), None)
    text = raw.decode("ascii", errors="replace") if raw is not None else ""
    return int(text) if _INT_RE.fullmatch(text) else ts


def _reject(reason: RejectReason, sid: str, message: str) -> Rejected:
    return Rejected(reason, _message(message), sid)


def _decode_envelope(sid: str, value: bytes, ts: int) -> Command | Rejected:
    try:
        command = _CODEC.decode_envelope(value)
    except UnknownFingerprint:
        fp = value[2:HEADER_LEN]
        writer = _COMMAND_HISTORY.get(fp)
        if writer is None:
            return _reject(
                RejectReason.UNKNOWN_SCHEMA,
                sid,
                f"command schema fingerprint {fp.hex()} is unknown: upgrade the scheduler before its producers",
            )
        try:
            command = _read_command_history(value, writer)
        except Exception as exc:
            return _reject(
                RejectReason.DESERIALIZATION_ERROR, sid, f"Avro envelope: {type(exc).__name__}: {exc}"
            )
    except AvroError as exc:
        return _reject(RejectReason.DESERIALIZATION_ERROR, sid, f"Avro envelope: {exc}")
    if command.id != sid:
        return _reject(
            RejectReason.INVALID_KEY, sid, f"key {sid!r} differs from the envelope's id {command.id!r}"
        )
    if not isinstance(command, Schedule):
        return command
    return _check_schedule(command, ts)


def _read_command_history(value: bytes, writer: Any) -> Command:
    name, body = _read_history(value, writer, COMMAND_SCHEMA)["body"]
    control = _CONTROL_RECORDS.get(name)
    if control is not None:
        return control(body)
    return Schedule(
        body["id"],
        body["target_topic"],
        body["deliver_at"],
        body["payload"],
        body["target_key"],
        _headers_in(body["headers"]),
        body["target_partition"],
        body["created_at"],
        body["producer"],
        _recurrence_in(body.get("recurrence")),
    )


def _check_schedule(s: Schedule, ts: int) -> Schedule | Rejected:
    """The checks every form shares: a legal target, a sane partition, a due time within the horizon (or parked:
    a relocated recurring schedule's), exactly one kind of recurrence."""
    if not is_legal_topic(s.target_topic):
        return _reject(
            RejectReason.INVALID_TARGET_TOPIC, s.id, f"{s.target_topic!r} is not a legal topic name"
        )
    if s.target_partition is not None and s.target_partition < 0:
        return _reject(RejectReason.INVALID_TARGET_TOPIC, s.id, f"target partition {s.target_partition} < 0")
    r = s.recurrence
    if r is not None and sum(kind is not None for kind in (r.cron, r.every_ms, r.after_ms)) != 1:
        return _reject(
            RejectReason.INVALID_RECURRENCE, s.id, "a recurrence has exactly one of cron, every_ms, after_ms"
        )
    if not 0 <= s.due_ms <= ts + HORIZON_MS and not (r is not None and s.due_ms == PARKED_MS):
        return _reject(
            RejectReason.DUE_OUT_OF_RANGE,
            s.id,
            f"due {s.due_ms} ms is outside [0, record time + 100 years]: seconds or µs instead of ms?",
        )
    return s


def _split_headers(
    headers: Sequence[tuple[str, bytes | None]],
) -> tuple[dict[str, list[bytes | None]], list[tuple[str, bytes | None]]]:
    """Control headers by name, and what passes through: an etf1 command (`scheduler-epoch`) keeps etf1's own
    control headers, as etf1 does, which also marks its fires for etf1's `scheduler-timestamp`/`-key`/`-topic`."""
    etf1 = any(name == HEADER_EPOCH for name, _ in headers)
    control: dict[str, list[bytes | None]] = {}
    passthrough: list[tuple[str, bytes | None]] = []
    for name, hv in headers:
        if name in CONTROL_HEADERS:
            control.setdefault(name, []).append(hv)
        if name not in CONTROL_HEADERS or (etf1 and name in ETF1_CONTROL_HEADERS):
            passthrough.append((name, hv))
    return control, passthrough


def _decode_header_protocol(
    sid: str, value: bytes, headers: Sequence[tuple[str, bytes | None]], ts: int
) -> Command | Rejected:
    control, passthrough = _split_headers(headers)
    if HEADER_CONTROL in control:
        try:
            return control_command(sid, control, headers, ts)
        except Refused as refused:
            return _reject(refused.reason, sid, str(refused))
    if not control.get(HEADER_TARGET_TOPIC):
        return _reject(
            RejectReason.MISSING_TARGET_TOPIC,
            sid,
            f"no {HEADER_TARGET_TOPIC} header and no Avro envelope: say where to deliver",
        )
    try:
        topic = single(control, HEADER_TARGET_TOPIC)
        target_key = single(control, HEADER_TARGET_KEY)
        partition = _parse_partition(single(control, HEADER_TARGET_PARTITION))
        repeat = recurrence(control)
        due = _parse_due(control, ts) if repeat is None else recurring_due(control, ts)
    except Refused as refused:
        return _reject(refused.reason, sid, str(refused))
    if topic is None:
        return _reject(RejectReason.INVALID_TARGET_TOPIC, sid, f"{HEADER_TARGET_TOPIC} is null")
    schedule = Schedule(
        id=sid,
        target_topic=topic.decode(errors="replace"),
        due_ms=due,
        payload=value,
        target_key=target_key,
        headers=tuple(passthrough),
        target_partition=partition,
        created_ms=ts,
        recurrence=repeat,
    )
    return _check_schedule(schedule, ts)


def _parse_partition(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    text = raw.decode("ascii", errors="replace")
    if not _INT_RE.fullmatch(text) or not 0 <= int(text) < 2**31:
        raise Refused(RejectReason.INVALID_TARGET_TOPIC, f"{HEADER_TARGET_PARTITION} {text!r} is not >= 0")
    return int(text)


def _parse_due(control: dict[str, list[bytes | None]], ts: int) -> int:
    """Exactly one of deliver-at (ms or RFC 3339), delay-ms (after the record time), epoch (etf1 seconds)."""
    given = [(name, raw) for name in DUE_HEADERS for raw in control.get(name, ())]
    if len(given) != 1:
        names = ", ".join(name for name, _ in given) or "none"
        raise Refused(
            RejectReason.INVALID_DUE, f"exactly one of {', '.join(DUE_HEADERS)} is needed; got {names}"
        )
    name, raw = given[0]
    if name == HEADER_EPOCH:
        return integer(raw, name) * 1000
    if name == HEADER_DELAY_MS:
        delay = integer(raw, name)
        if delay < 0:
            raise Refused(RejectReason.INVALID_DUE, f"{name} is negative: {delay}")
        return ts + delay
    return time_ms(raw, name)
