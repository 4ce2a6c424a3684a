"""TargetCatalog.validate: the same verdicts with its per-target budgets as without, and fresh facts decide.

A fake admin answers list_topics/describe_configs and counts lookups; a fake clock drives the TTL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from scheduler.model import RejectReason, Schedule
from scheduler.service.targets import TargetCatalog
from scheduler.settings import ServiceSettings

SETTINGS = ServiceSettings(bootstrap_servers="127.0.0.1:1", scheduled_topic="sched", _env_file=None)  # type: ignore[call-arg]


@dataclass
class FakeAdmin:
    topics: dict[str, tuple[int, int]]  # name -> (partitions, max.message.bytes)
    lookups: list[str] = field(default_factory=list)

    def list_topics(self, topic: str, timeout: float) -> Any:
        self.lookups.append(topic)
        known = self.topics.get(topic)
        meta = (
            None if known is None else SimpleNamespace(error=None, partitions=dict.fromkeys(range(known[0])))
        )
        return SimpleNamespace(topics={} if meta is None else {topic: meta})

    def describe_configs(self, resources: list[Any]) -> Any:
        name = resources[0].name
        value = SimpleNamespace(value=str(self.topics[name][1]))
        return {name: SimpleNamespace(result=lambda timeout: {"max.message.bytes": value})}


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def catalog() -> tuple[TargetCatalog, FakeAdmin, Clock]:
    own = {SETTINGS.state: (6, 1_048_588), SETTINGS.dlt: (1, 1_048_588)}
    admin = FakeAdmin({"orders": (3, 20_000), **own})
    clock = Clock()
    return TargetCatalog(admin, SETTINGS, ttl_s=60.0, clock=clock), admin, clock  # type: ignore[arg-type]


def s(payload: int = 10, partition: int | None = None, topic: str = "orders") -> Schedule:
    return Schedule("id-1", topic, 5, b"x" * payload, target_partition=partition)


def test_accepted_targets_are_answered_without_lookups_until_a_fact_expires() -> None:
    targets, admin, clock = catalog()
    assert targets.validate(s(), 100) is None
    looked = len(admin.lookups)
    for _ in range(100):
        assert targets.validate(s(partition=2), 100) is None
    assert len(admin.lookups) == looked
    clock.now += 61
    assert targets.validate(s(), 100) is None
    assert len(admin.lookups) > looked  # looked up again once stale


def test_verdicts_near_and_past_the_budgets_are_the_full_checks() -> None:
    targets, _, _ = catalog()
    assert targets.validate(s(), 100) is None
    refused = targets.validate(s(partition=3), 100)
    assert refused is not None and refused.reason is RejectReason.INVALID_TARGET_TOPIC
    assert "has 3" in refused.message
    # orders takes 20,000 bytes less framing: the largest payload that fits, and one byte more
    fitting = next(n for n in range(19_500, 0, -1) if targets._validate(s(n), n + 50) is None)
    assert targets.validate(s(fitting), fitting + 50) is None
    too_large = targets.validate(s(fitting + 1), fitting + 51)
    assert too_large is not None and too_large.reason is RejectReason.PAYLOAD_TOO_LARGE
    assert "fired record" in too_large.message and "orders" in too_large.message
    huge_state = targets.validate(s(), 2_000_000)
    assert huge_state is not None and "state record" in huge_state.message


def test_a_topic_gone_after_the_ttl_is_refused_and_forbidden_ones_always_are() -> None:
    targets, admin, clock = catalog()
    assert targets.validate(s(), 100) is None
    del admin.topics["orders"]
    clock.now += 61
    gone = targets.validate(s(), 100)
    assert gone is not None and gone.reason is RejectReason.UNKNOWN_TARGET_TOPIC
    internal = targets.validate(s(topic="__consumer_offsets"), 100)
    assert internal is not None and internal.reason is RejectReason.FORBIDDEN_TARGET_TOPIC
