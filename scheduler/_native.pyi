# Types of the Rust extension (native/src/py/); keep in step with it.

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from scheduler.codec import Consumed
from scheduler.model import Cancel, Schedule

def murmur2(data: bytes) -> int: ...
def partition_for(key: bytes, partitions: int) -> int: ...

# --- codec (native/src/py/codec.rs) ---

class AvroError(ValueError):
    """Not valid single-object Avro of the current schema; `kind` names why (an ErrorKind of codec.rs)."""

    kind: str

class UnknownFingerprint(AvroError): ...

STRICTER_THAN_FASTAVRO: list[str]

class Codec:
    def __init__(
        self,
        command_fingerprint: bytes,
        state_fingerprint: bytes,
        schedule: type[Schedule],
        cancel: type[Cancel],
    ) -> None: ...
    def encode_schedule(self, schedule: Schedule) -> bytes: ...
    def encode_cancel(self, schedule_id: str) -> bytes: ...
    def encode_state(self, schedule: Schedule, version: int) -> bytes: ...
    def decode_state(self, value: bytes) -> tuple[Schedule, int]: ...
    def decode_states(self, values: Sequence[bytes]) -> list[tuple[Schedule, int] | None]: ...
    def decode_envelope(self, value: bytes) -> Schedule | Cancel: ...
    def intake(self, records: Sequence[Consumed]) -> list[tuple[Schedule, bytes] | Cancel | None]: ...

def peek_due_ms(value: bytes) -> int: ...

# --- index (native/src/py/index.rs) ---
DUE_WINDOWS: list[tuple[str, int]]

class DueIndex:
    """Pending schedules of one partition: id -> state record, found by due time."""

    def __init__(self) -> None: ...
    def __len__(self) -> int: ...
    def __contains__(self, schedule_id: object) -> bool: ...
    def get(self, schedule_id: bytes) -> bytes | None: ...
    def items(self) -> Iterator[tuple[bytes, bytes]]: ...
    def put(self, schedule_id: bytes, record: bytes) -> None: ...
    def remove(self, schedule_id: bytes) -> bytes | None: ...
    def apply(self, writes: Iterable[tuple[bytes, bytes | None]]) -> None: ...
    def next_due_ms(self) -> int | None: ...
    def due(self, now_ms: int, max_count: int) -> list[tuple[bytes, bytes]]: ...
    def due_between(
        self, after_ms: int | None, until_ms: int, max_count: int
    ) -> list[tuple[bytes, bytes]]: ...
    def count_due(self, now_ms: int) -> int: ...
    def count_due_within(self, now_ms: int) -> dict[str, int]: ...
    def memory(self) -> dict[str, int]: ...

class StateMessage(Protocol):
    """What `replay_state` reads of a consumed message (confluent_kafka.Message has it)."""

    def error(self) -> object: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...

def replay_state(
    messages: Iterable[StateMessage],
    targets: dict[int, tuple[DueIndex, dict[bytes, bytes]]],
    partitions: int,
) -> tuple[dict[int, int], list[tuple[bytes, int, int, str]]]: ...

# --- client (native/src/py/client.rs) ---

class ClientFast:
    """SchedulerClient.schedule()'s common case: (Schedule, record key, record value), or None for Python."""

    def __init__(
        self,
        codec: Codec,
        ready: set[str],
        horizon_ms: int,
        max_payload: int,
        producer: str | None,
        control_headers: frozenset[str],
    ) -> None: ...
    def prepare(
        self,
        schedule_id: object,
        topic: object,
        value: object,
        key: object,
        headers: object,
        at: object,
        delay: object,
        partition: object,
        now_ms: int | None = None,
    ) -> tuple[Schedule, bytes, bytes] | None: ...
    def send(
        self,
        produce: Callable[..., None],
        scheduled: str,
        on_delivery: Callable[..., None],
        schedule_id: object,
        topic: object,
        value: object,
        key: object,
        headers: object,
        at: object,
        delay: object,
        partition: object,
    ) -> Schedule | None: ...
