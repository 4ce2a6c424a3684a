"""Named failpoints for fault runs, enabled only by KAFKA_SCHEDULER_FAILPOINTS; a no-op otherwise.

Syntax: `name=action[@hit][%probability]`, comma separated. Actions: kill (SIGKILL self), pause (SIGSTOP self),
raise (FailpointError). `@3` acts on the third hit only; `%0.1` acts with probability 0.1 on each hit.
Example: KAFKA_SCHEDULER_FAILPOINTS="before_commit=kill@5,mid_rebuild=raise%0.01".
"""

from __future__ import annotations

import os
import random
import re
import signal
from dataclasses import dataclass

__all__ = ["NAMES", "FailpointError", "configure", "failpoint"]

NAMES = frozenset(
    {
        "after_begin",
        "after_fire_produce",
        "after_tombstone_produce",
        "after_send_offsets",
        "before_commit",
        "after_commit_before_index",
        "mid_rebuild",
        "on_revoke_before_commit",
        "on_revoke_after_commit",
        "after_abort_before_seek",
    }
)
_SPEC = re.compile(r"^(?P<name>\w+)=(?P<action>kill|pause|raise)(?:@(?P<hit>\d+))?(?:%(?P<p>[0-9.]+))?$")


class FailpointError(RuntimeError):
    """Raised by a failpoint with action `raise`."""


@dataclass
class _Point:
    action: str
    hit: int | None
    probability: float
    hits: int = 0


_active: dict[str, _Point] = {}


def configure(spec: str | None) -> None:
    """Parse a failpoint spec (the environment variable's value); an unknown name is an error."""
    _active.clear()
    for item in filter(None, (part.strip() for part in (spec or "").split(","))):
        match = _SPEC.match(item)
        if match is None or match["name"] not in NAMES:
            raise ValueError(f"bad failpoint {item!r}; names: {', '.join(sorted(NAMES))}")
        hit = int(match["hit"]) if match["hit"] else None
        _active[match["name"]] = _Point(match["action"], hit, float(match["p"] or 1.0))


def failpoint(name: str) -> None:
    """Act if the failpoint is configured; costs one dict truthiness test when none is."""
    if not _active:
        return
    point = _active.get(name)
    if point is None:
        return
    point.hits += 1
    if point.hit is not None and point.hits != point.hit:
        return
    if random.random() >= point.probability:
        return
    if point.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif point.action == "pause":
        os.kill(os.getpid(), signal.SIGSTOP)
    else:
        raise FailpointError(f"failpoint {name}")


configure(os.environ.get("KAFKA_SCHEDULER_FAILPOINTS"))
