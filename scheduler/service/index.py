"""The in-memory due index of one partition, in compiled code (native/src/index.rs), lean enough for 10M pending.

Per schedule it holds the state record's bytes (as read from the state topic) in a packed arena, a 4-byte slot in an
open-addressing table by id, and a 16-byte (due, sequence, location) key in sorted blocks: no Python object per
pending schedule. Due order is earliest first, ties in put order. `replay_state` feeds one consumed batch of the
state topic into the indexes being rebuilt in a single call.

The index never decides what is committed: the service calls `put`/`remove`/`apply` only after the transaction
that carries the change has committed (the invariant lives in `service.loop`).
"""

from __future__ import annotations

from scheduler._native import DUE_WINDOWS, DueIndex, replay_state

__all__ = ["WINDOWS", "DueIndex", "replay_state"]

# Label -> window length in ms, for the "upcoming due" gauges (the native core counts by the same table).
WINDOWS: dict[str, int] = dict(DUE_WINDOWS)
