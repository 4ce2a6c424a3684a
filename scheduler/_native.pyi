# Types of the Rust extension (native/src/py/); keep in step with it.

from collections.abc import Sequence

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
    def decode_envelope(self, value: bytes) -> Schedule | Cancel: ...
    def intake(self, records: Sequence[Consumed]) -> list[tuple[Schedule, bytes] | Cancel | None]: ...

def peek_due_ms(value: bytes) -> int: ...
