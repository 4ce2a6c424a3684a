"""The wire contract: Avro single-object encoding for commands and state, the header protocol, etf1 seconds.

`decode_command` is a pure function of the record and never raises: the scheduler turns every bad command into
one reject record instead of stopping on it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from io import BytesIO
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from scheduler.errors import CodecError, CorruptStateRecord
from scheduler.model import (
    HEADER_DELAY_MS,
    HEADER_DELIVER_AT,
    HEADER_EPOCH,
    HEADER_FORWARDED_FROM,
    HEADER_FORWARDED_TIMESTAMP,
    HEADER_RELOCATED_FROM,
    HEADER_TARGET_KEY,
    HEADER_TARGET_PARTITION,
    HEADER_TARGET_TOPIC,
    Cancel,
    Command,
    Rejected,
    RejectReason,
    Relocated,
    Schedule,
)

__all__ = [
    "CONTROL_HEADERS",
    "MAX_ID_BYTES",
    "MAX_MESSAGE_CHARS",
    "ROUTING_HEADERS",
    "decode_command",
    "decode_state",
    "encode_cancel",
    "encode_schedule",
    "encode_state",
    "is_legal_topic",
    "peek_due_ms",
    "to_header_protocol",
]

MAGIC = b"\xc3\x01"
HEADER_LEN = 10  # magic + 8-byte fingerprint
MAX_ID_BYTES = 255
MAX_MESSAGE_CHARS = 1024
HORIZON_MS = 36525 * 86_400_000  # 100 years: anything later is a unit mix-up, not a plan
DUE_HEADERS = (HEADER_DELIVER_AT, HEADER_DELAY_MS, HEADER_EPOCH)
# the scheduler's own, on `scheduled`
ROUTING_HEADERS = (HEADER_FORWARDED_FROM, HEADER_FORWARDED_TIMESTAMP, HEADER_RELOCATED_FROM)
CONTROL_HEADERS = frozenset(
    (HEADER_TARGET_TOPIC, HEADER_TARGET_KEY, HEADER_TARGET_PARTITION, *DUE_HEADERS, *ROUTING_HEADERS)
)
ETF1_CONTROL_HEADERS = frozenset((HEADER_EPOCH, HEADER_TARGET_TOPIC, HEADER_TARGET_KEY))
_TOPIC_RE = re.compile(r"[a-zA-Z0-9._-]{1,249}")
_INT_RE = re.compile(r"-?[0-9]{1,19}")
_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_SCHEDULE_NAME = "io.kafkascheduler.v1.Schedule"
_CANCEL_NAME = "io.kafkascheduler.v1.Cancel"


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
    """A fastavro schema for hot-path reads and writes."""
    return parse_schema(_strip_logical_types(schema))


def _load(name: str) -> tuple[bytes, Any, dict[bytes, Any]]:
    """The current schema (fingerprint, parsed) and every writer schema kept in history, by fingerprint."""
    base = _schemas_dir()
    current = json.loads((base / f"{name}.avsc").read_text())
    current_fp, current_parsed = schema_fingerprint(current), parse(current)
    writers: dict[bytes, Any] = {current_fp: None}  # None: same as the reader, no resolution needed
    for old in sorted((base / "history").glob(f"{name}.*.avsc")):
        raw = json.loads(old.read_text())
        writers.setdefault(schema_fingerprint(raw), parse(raw))
    return current_fp, current_parsed, writers


COMMAND_FINGERPRINT, COMMAND_SCHEMA, _COMMAND_WRITERS = _load("command")
STATE_FINGERPRINT, STATE_SCHEMA, _STATE_WRITERS = _load("state")
_COMMAND_PREFIX = MAGIC + COMMAND_FINGERPRINT
_STATE_PREFIX = MAGIC + STATE_FINGERPRINT


def is_legal_topic(name: str) -> bool:
    """Kafka's own rule, checked here so a typo is refused at the edge, not at fire time."""
    return name not in (".", "..") and _TOPIC_RE.fullmatch(name) is not None


def _write(prefix: bytes, schema: Any, record: dict[str, Any]) -> bytes:
    out = BytesIO()
    out.write(prefix)
    schemaless_writer(out, schema, record)
    return out.getvalue()


def _read(value: bytes, reader: Any, writers: dict[bytes, Any]) -> Any:
    """Decode one single-object record; KeyError for an unknown fingerprint, ValueError for garbage."""
    if len(value) < HEADER_LEN or value[:2] != MAGIC:
        raise ValueError("not Avro single-object encoding (no C3 01 header)")
    writer = writers[value[2:HEADER_LEN]]
    body = BytesIO(value)
    body.seek(HEADER_LEN)
    record = schemaless_reader(body, writer or reader, reader if writer else None, return_record_name=True)
    if body.tell() != len(value):
        raise ValueError(f"{len(value) - body.tell()} trailing bytes after the Avro body")
    return record


# Hand-written Avro binary for the two hot-path writers, ~5x faster than schemaless_writer. Used only while the
# schema files still have the fingerprints it was written for; tests compare it byte for byte with fastavro.
_WRITTEN_FOR_COMMAND, _WRITTEN_FOR_STATE = (
    bytes.fromhex("08e2c67875842e53"),
    bytes.fromhex("18930a5a8080a164"),
)
_FAST_COMMAND = COMMAND_FINGERPRINT == _WRITTEN_FOR_COMMAND
_FAST_STATE = STATE_FINGERPRINT == _WRITTEN_FOR_STATE
_SMALL = [bytes((i,)) for i in range(128)]
_NULL, _SECOND = b"\x00", b"\x02"


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    if 1 << 35 <= n < 1 << 42:  # epoch milliseconds, zigzagged: six bytes, unrolled
        return bytes(
            (
                (n & 0x7F) | 0x80,
                ((n >> 7) & 0x7F) | 0x80,
                ((n >> 14) & 0x7F) | 0x80,
                ((n >> 21) & 0x7F) | 0x80,
                ((n >> 28) & 0x7F) | 0x80,
                n >> 35,
            )
        )
    out = [(n & 0x7F) | 0x80]
    n >>= 7
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _long(n: int) -> bytes:
    return _varint(n << 1 if n >= 0 else ((-n) << 1) - 1)


def _bytes(b: bytes) -> bytes:
    size = len(b)
    return (_SMALL[size << 1] if size < 64 else _varint(size << 1)) + b


def _opt_bytes(b: bytes | None) -> bytes:
    return _NULL if b is None else _SECOND + _varint(len(b) << 1) + b


def _fields_after_due(s: Schedule) -> list[bytes]:
    """id, target_topic, target_key, target_partition, payload, headers: the order both schemas share."""
    parts = [
        _bytes(s.id.encode()),
        _bytes(s.target_topic.encode()),
        _opt_bytes(s.target_key),
        _NULL if s.target_partition is None else _SECOND + _long(s.target_partition),
        _opt_bytes(s.payload),
    ]
    if s.headers:
        parts.append(_long(len(s.headers)))
        for name, value in s.headers:
            parts.append(_bytes(name.encode()))
            parts.append(_opt_bytes(value))
    parts.append(_NULL)
    return parts


def _opt_string(text: str | None) -> bytes:
    return _NULL if text is None else _SECOND + _bytes(text.encode())


def _headers_out(headers: Sequence[tuple[str, bytes | None]]) -> list[dict[str, Any]]:
    return [{"name": n, "value": v} for n, v in headers]


def _headers_in(headers: list[dict[str, Any]]) -> tuple[tuple[str, bytes | None], ...]:
    return tuple((h["name"], h["value"]) for h in headers)


# Hand-written Avro binary readers for the hot path (the scheduler decodes every command and, per fire, the state
# record), ~5x faster than schemaless_reader. Used only for records written with the exact schemas they were
# written for; anything else (older writers, schema resolution) goes through fastavro. Errors raise ValueError,
# IndexError or UnicodeDecodeError, which the callers turn into a reject or CorruptStateRecord as for fastavro;
# tests compare them with fastavro on generated records and on garbage.


def _rlong(buf: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint long at `pos`: (value, next position)."""
    byte = buf[pos]
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), pos + 1
    result, shift = byte & 0x7F, 7
    while True:
        pos += 1
        byte = buf[pos]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), pos + 1
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _rbytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    size = buf[pos]
    if size < 0x80 and not size & 1:  # the common case: a length below 64 in one byte
        size >>= 1
        pos += 1
    else:
        size, pos = _rlong(buf, pos)
    end = pos + size
    if size < 0 or end > len(buf):
        raise ValueError(f"bytes of length {size} past the end of the record")
    return buf[pos:end], end


def _rstr(buf: bytes, pos: int) -> tuple[str, int]:
    size = buf[pos]
    if size < 0x80 and not size & 1:
        end = pos + 1 + (size >> 1)
        if end > len(buf):
            raise ValueError(f"string of length {size >> 1} past the end of the record")
        return buf[pos + 1 : end].decode(), end
    raw, pos = _rbytes(buf, pos)
    return raw.decode(), pos


def _rbranch(buf: bytes, pos: int) -> tuple[bool, int]:
    """A ["null", X] union index: True when X follows."""
    branch = buf[pos]
    if branch == 0:
        return False, pos + 1
    if branch == 2:
        return True, pos + 1
    index, pos = _rlong(buf, pos)  # a padded varint is still legal Avro
    if index not in (0, 1):
        raise ValueError(f"union branch {index} out of range")
    return index == 1, pos


def _ropt_bytes(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    """A ["null", "bytes"] union; the branch bytes 0 and 2 inline, anything else via `_rbranch`."""
    branch = buf[pos]
    if branch == 0:
        return None, pos + 1
    if branch == 2:
        return _rbytes(buf, pos + 1)
    present, pos = _rbranch(buf, pos)
    return _rbytes(buf, pos) if present else (None, pos)


def _rheaders(buf: bytes, pos: int) -> tuple[tuple[tuple[str, bytes | None], ...], int]:
    if buf[pos] == 0:  # the common case: none
        return (), pos + 1
    headers: list[tuple[str, bytes | None]] = []
    while True:
        count, pos = _rlong(buf, pos)
        if count == 0:
            return tuple(headers), pos
        if count < 0:  # a block with its size in bytes first
            count = -count
            _size, pos = _rlong(buf, pos)
        for _ in range(count):
            name, pos = _rstr(buf, pos)
            value, pos = _ropt_bytes(buf, pos)
            headers.append((name, value))


def _rfields_after_due(buf: bytes, pos: int) -> tuple[tuple[Any, ...], int]:
    """id, target_topic, target_key, target_partition, payload, headers (see `_fields_after_due`)."""
    sid, pos = _rstr(buf, pos)
    topic, pos = _rstr(buf, pos)
    key, pos = _ropt_bytes(buf, pos)
    partition: int | None = None
    present, pos = _rbranch(buf, pos)
    if present:
        partition, pos = _rlong(buf, pos)
    payload, pos = _ropt_bytes(buf, pos)
    headers, pos = _rheaders(buf, pos)
    return (sid, topic, key, partition, payload, headers), pos


def _ropt_str(buf: bytes, pos: int) -> tuple[str | None, int]:
    present, pos = _rbranch(buf, pos)
    if present:
        return _rstr(buf, pos)
    return None, pos


def _end(buf: bytes, pos: int) -> None:
    if pos != len(buf):
        raise ValueError(f"{len(buf) - pos} trailing bytes after the Avro body")


def _read_state_fast(buf: bytes) -> tuple[Schedule, int]:
    due, pos = _rlong(buf, HEADER_LEN)
    version, pos = _rlong(buf, pos)
    (sid, topic, key, partition, payload, headers), pos = _rfields_after_due(buf, pos)
    created, pos = _rlong(buf, pos)
    producer, pos = _ropt_str(buf, pos)
    _end(buf, pos)
    schedule = Schedule(sid, topic, due, payload, key, headers, partition, created, producer)
    return schedule, version


def _read_command_fast(buf: bytes) -> tuple[str, Any]:
    """(record name, Schedule fields or the cancel id) of a command in the current schema."""
    cancel, pos = _rbranch(buf, HEADER_LEN)  # body: [Schedule, Cancel]
    if cancel:
        sid, pos = _rstr(buf, pos)
        _end(buf, pos)
        return _CANCEL_NAME, sid
    start = pos
    fields, pos = _rfields_after_due(buf, pos)
    shared = pos
    due, pos = _rlong(buf, pos)
    tail = pos
    created, pos = _rlong(buf, pos)
    producer, pos = _ropt_str(buf, pos)
    _end(buf, pos)
    return _SCHEDULE_NAME, (*fields, due, created, producer, (start, shared, tail))


def encode_schedule(s: Schedule) -> bytes:
    """The Avro envelope value for a schedule; the record key is `s.id.encode()`."""
    if _FAST_COMMAND:
        parts = _fields_after_due(s)
        parts.extend((_long(s.due_ms), _long(s.created_ms), _opt_string(s.producer)))
        return _COMMAND_PREFIX + _NULL + b"".join(parts)  # _NULL: union branch 0, Schedule
    return _encode_schedule_fastavro(s)


def _encode_schedule_fastavro(s: Schedule) -> bytes:
    body = {
        "id": s.id,
        "target_topic": s.target_topic,
        "target_key": s.target_key,
        "target_partition": s.target_partition,
        "payload": s.payload,
        "headers": _headers_out(s.headers),
        "deliver_at": s.due_ms,
        "created_at": s.created_ms,
        "producer": s.producer,
    }
    return _write(_COMMAND_PREFIX, COMMAND_SCHEMA, {"body": (_SCHEDULE_NAME, body)})


def encode_cancel(schedule_id: str) -> bytes:
    """The Avro envelope value for a cancel; the record key is the schedule id."""
    return _write(_COMMAND_PREFIX, COMMAND_SCHEMA, {"body": (_CANCEL_NAME, {"id": schedule_id})})


# The schedule `decode_command` last read from an Avro envelope, with the envelope's bytes of the fields the state
# record shares (id .. headers) and of its tail (created, producer): `encode_state` of that very object splices
# them instead of encoding them again (the scheduler encodes each command's state record right after decoding it).
_LAST_ENVELOPE: tuple[Schedule, bytes, bytes] | None = None


def encode_state(s: Schedule, version: int) -> bytes:
    """The state-topic record for a pending schedule; `version` is the input offset that created it."""
    last = _LAST_ENVELOPE
    if last is not None and last[0] is s and _FAST_STATE:
        return b"".join((_STATE_PREFIX, _long(s.due_ms), _long(version), last[1], last[2]))
    if _FAST_STATE:
        parts = [_STATE_PREFIX, _long(s.due_ms), _long(version), *_fields_after_due(s)]
        parts.extend((_long(s.created_ms), _opt_string(s.producer)))
        return b"".join(parts)
    return _encode_state_fastavro(s, version)


def _encode_state_fastavro(s: Schedule, version: int) -> bytes:
    record = {
        "due_ms": s.due_ms,
        "version": version,
        "id": s.id,
        "target_topic": s.target_topic,
        "target_key": s.target_key,
        "target_partition": s.target_partition,
        "payload": s.payload,
        "headers": _headers_out(s.headers),
        "created_ms": s.created_ms,
        "producer": s.producer,
    }
    return _write(_STATE_PREFIX, STATE_SCHEMA, record)


def decode_state(value: bytes) -> tuple[Schedule, int]:
    """A state record back to (schedule, version); loud, because skipping a record loses a schedule.

    Memoized for the last few thousand records (a fire decodes its record twice: the dead-letter check, then the
    fired record); the result is immutable, and a failure is never cached.
    """
    if type(value) is not bytes:  # unhashable (bytearray, memoryview): decode without the memo
        return _decode_state_memo.__wrapped__(bytes(value))
    return _decode_state_memo(value)


@functools.lru_cache(maxsize=4096)
def _decode_state_memo(value: bytes) -> tuple[Schedule, int]:
    try:
        if _FAST_STATE and value[2:HEADER_LEN] == _WRITTEN_FOR_STATE and value[:2] == MAGIC:
            return _read_state_fast(value)
        return _decode_state_fastavro(value)
    except KeyError as exc:
        raise CorruptStateRecord(
            f"state record has unknown schema fingerprint {exc}: upgrade the scheduler"
        ) from exc
    except Exception as exc:
        raise CorruptStateRecord(f"state record does not decode: {type(exc).__name__}: {exc}") from exc


def _decode_state_fastavro(value: bytes) -> tuple[Schedule, int]:
    r = _read(value, STATE_SCHEMA, _STATE_WRITERS)
    schedule = Schedule(
        id=r["id"],
        target_topic=r["target_topic"],
        due_ms=r["due_ms"],
        payload=r["payload"],
        target_key=r["target_key"],
        headers=_headers_in(r["headers"]),
        target_partition=r["target_partition"],
        created_ms=r["created_ms"],
        producer=r["producer"],
    )
    return schedule, r["version"]


def peek_due_ms(value: bytes) -> int:
    """The due time from the first field (a zigzag varint after the header), without a full decode."""
    if value[:2] != MAGIC:
        raise CorruptStateRecord("state record is not Avro single-object encoded")
    try:
        return _rlong(value, HEADER_LEN)[0]
    except (IndexError, ValueError):
        raise CorruptStateRecord("state record is truncated in its due_ms field") from None


def to_header_protocol(s: Schedule) -> tuple[bytes | None, list[tuple[str, bytes | None]]]:
    """What kcat or a Java producer sends for `s`: (value, headers), with the id as the record key."""
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
    headers.append((HEADER_DELIVER_AT, str(s.due_ms).encode()))
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
    if value is None:
        return Cancel(sid)
    return _decode_value(sid, value, headers, ts)


def _decode_value(
    sid: str, value: bytes, headers: Sequence[tuple[str, bytes | None]], ts: int
) -> Command | Rejected:
    """The Avro envelope (a relocated schedule is one too), or the header protocol (whose payload may start
    C3 01); a forwarded copy's delay counts from the original's timestamp."""
    names = {name for name, _ in headers} if headers else set()
    if HEADER_FORWARDED_TIMESTAMP in names:
        ts = _forwarded_timestamp(headers, ts)
    if value[:2] != MAGIC or HEADER_TARGET_TOPIC in names:
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
    fp = value[2:HEADER_LEN]
    if len(fp) == 8 and fp not in _COMMAND_WRITERS:
        return _reject(
            RejectReason.UNKNOWN_SCHEMA,
            sid,
            f"command schema fingerprint {fp.hex()} is unknown: upgrade the scheduler before its producers",
        )
    if _FAST_COMMAND and fp == _WRITTEN_FOR_COMMAND:
        return _envelope(sid, value, ts, _read_command_fast)
    return _envelope(sid, value, ts, _read_command_fastavro)


def _read_command_fastavro(value: bytes) -> tuple[str, Any]:
    """(record name, Schedule fields or the cancel id), like `_read_command_fast`, through fastavro."""
    name, body = _read(value, COMMAND_SCHEMA, _COMMAND_WRITERS)["body"]
    if name == _CANCEL_NAME:
        return name, body["id"]
    fields = ("id", "target_topic", "target_key", "target_partition", "payload")
    after = (body["deliver_at"], body["created_at"], body["producer"])
    return name, (*(body[f] for f in fields), _headers_in(body["headers"]), *after)


def _envelope(
    sid: str, value: bytes, ts: int, read: Callable[[bytes], tuple[str, Any]]
) -> Command | Rejected:
    try:
        name, fields = read(value)
    except Exception as exc:
        return _reject(RejectReason.DESERIALIZATION_ERROR, sid, f"Avro envelope: {type(exc).__name__}: {exc}")
    body_id = fields if name == _CANCEL_NAME else fields[0]
    if body_id != sid:
        return _reject(
            RejectReason.INVALID_KEY, sid, f"key {sid!r} differs from the envelope's id {body_id!r}"
        )
    if name == _CANCEL_NAME:
        return Cancel(sid)
    _id, topic, key, partition, payload, headers, due, created, producer, *spans = fields
    schedule = Schedule(sid, topic, due, payload, key, headers, partition, created, producer)
    if spans:
        start, shared, tail = spans[0]
        global _LAST_ENVELOPE  # noqa: PLW0603 -- one slot, checked by identity in encode_state
        _LAST_ENVELOPE = (schedule, value[start:shared], value[tail:])
    return _check_schedule(schedule, ts)


def _check_schedule(s: Schedule, ts: int) -> Schedule | Rejected:
    """The checks every form shares: a legal target, a sane partition, a due time within the horizon."""
    if not is_legal_topic(s.target_topic):
        return _reject(
            RejectReason.INVALID_TARGET_TOPIC, s.id, f"{s.target_topic!r} is not a legal topic name"
        )
    if s.target_partition is not None and s.target_partition < 0:
        return _reject(RejectReason.INVALID_TARGET_TOPIC, s.id, f"target partition {s.target_partition} < 0")
    if not 0 <= s.due_ms <= ts + HORIZON_MS:
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


def _single(control: dict[str, list[bytes | None]], name: str) -> bytes | None:
    values = control.get(name, [])
    if len(values) > 1:
        raise _Refused(RejectReason.INVALID_TARGET_TOPIC, f"header {name} given {len(values)} times")
    return values[0] if values else None


class _Refused(Exception):
    """Internal short-cut from a helper to a Rejected."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _decode_header_protocol(
    sid: str, value: bytes, headers: Sequence[tuple[str, bytes | None]], ts: int
) -> Command | Rejected:
    control, passthrough = _split_headers(headers)
    if not control.get(HEADER_TARGET_TOPIC):
        return _reject(
            RejectReason.MISSING_TARGET_TOPIC,
            sid,
            f"no {HEADER_TARGET_TOPIC} header and no Avro envelope: say where to deliver",
        )
    try:
        topic = _single(control, HEADER_TARGET_TOPIC)
        target_key = _single(control, HEADER_TARGET_KEY)
        partition = _parse_partition(_single(control, HEADER_TARGET_PARTITION))
        due = _parse_due(control, ts)
    except _Refused as refused:
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
    )
    return _check_schedule(schedule, ts)


def _int(raw: bytes | None, name: str) -> int:
    text = raw.decode("ascii", errors="replace") if raw is not None else ""
    if not _INT_RE.fullmatch(text):
        raise _Refused(RejectReason.INVALID_DUE, f"{name} must be an integer, got {text!r}")
    return int(text)


def _parse_partition(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    text = raw.decode("ascii", errors="replace")
    if not _INT_RE.fullmatch(text) or not 0 <= int(text) < 2**31:
        raise _Refused(RejectReason.INVALID_TARGET_TOPIC, f"{HEADER_TARGET_PARTITION} {text!r} is not >= 0")
    return int(text)


def _parse_due(control: dict[str, list[bytes | None]], ts: int) -> int:
    """Exactly one of deliver-at (ms or RFC 3339), delay-ms (after the record time), epoch (etf1 seconds)."""
    given = [(name, raw) for name in DUE_HEADERS for raw in control.get(name, ())]
    if len(given) != 1:
        names = ", ".join(name for name, _ in given) or "none"
        raise _Refused(
            RejectReason.INVALID_DUE, f"exactly one of {', '.join(DUE_HEADERS)} is needed; got {names}"
        )
    name, raw = given[0]
    if name == HEADER_EPOCH:
        return _int(raw, name) * 1000
    if name == HEADER_DELAY_MS:
        delay = _int(raw, name)
        if delay < 0:
            raise _Refused(RejectReason.INVALID_DUE, f"{name} is negative: {delay}")
        return ts + delay
    text = raw.decode("ascii", errors="replace") if raw is not None else ""
    return int(text) if _INT_RE.fullmatch(text) else _rfc3339_ms(text)


def _rfc3339_ms(text: str) -> int:
    match = _RFC3339_RE.fullmatch(text)
    if match is None:
        raise _Refused(
            RejectReason.INVALID_DUE, f"{HEADER_DELIVER_AT} {text!r} is neither epoch ms nor RFC 3339"
        )
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = match.groups()
    if zulu is None and sign is None:
        raise _Refused(
            RejectReason.INVALID_DUE, f"{HEADER_DELIVER_AT} {text!r} has no offset: add Z or +hh:mm"
        )
    offset = timedelta(hours=int(off_h or 0), minutes=int(off_m or 0)) * (-1 if sign == "-" else 1)
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=timezone(offset)
        )
    except ValueError as exc:
        raise _Refused(RejectReason.INVALID_DUE, f"{HEADER_DELIVER_AT} {text!r}: {exc}") from exc
    millis = int((frac or "0")[:3].ljust(3, "0"))
    return (moment - _EPOCH) // _ONE_MS + millis
