"""Commands take effect in their id's partition whatever partition they arrive in (the real loop, a fake Kafka).

The Hypothesis machine in test_core_state_machine.py mixes misrouted commands and legacy state into every fault;
these are the cases a user reports, one by one.
"""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from scheduler.codec import decode_state, encode_cancel, encode_schedule, encode_state
from scheduler.model import HEADER_FORWARDED_FROM, HEADER_RELOCATED_FROM, Schedule
from tests.unit.test_core_state_machine import (
    PARTS,
    REJECTED,
    SCHEDULED,
    STATE,
    TARGET,
    Sim,
    header,
    home,
    legacy_partition,
    serve_all,
)


def elsewhere(sid: str) -> int:
    return (home(sid) + 1) % PARTS


def fired(sim: Sim) -> Counter[str]:
    return Counter((header(r, "scheduler-schedule-id") or b"").decode() for r in sim.cluster.visible(TARGET))


def test_a_cancel_that_arrives_in_another_partition_cancels() -> None:
    sim = Sim()
    serve_all(sim, "x")
    sim.command("a", "schedule", 1000)
    sim.command("a", "cancel", partition=elsewhere("a"))  # kcat, or any client on librdkafka's partitioner
    serve_all(sim, "x")
    sim.cluster.now_ms += 2000
    sim.drain()
    assert fired(sim) == Counter()
    (cancel,) = [r for r in sim.cluster.log(SCHEDULED, elsewhere("a")) if r.key == b"a"]
    copies = [r for r in sim.cluster.visible(SCHEDULED) if header(r, HEADER_FORWARDED_FROM) is not None]
    assert [(r.partition, r.value) for r in copies] == [(home("a"), cancel.value)]
    assert header(copies[0], HEADER_FORWARDED_FROM) == b"%d/%d" % (cancel.partition, cancel.offset)


def test_a_replace_from_another_partition_replaces_and_keeps_the_command_time() -> None:
    sim = Sim()
    serve_all(sim, "x")
    sim.command("a", "schedule", 5000)
    sim.cluster.now_ms += 100
    sim.command("a", "schedule", 1000, partition=elsewhere("a"))
    (original,) = [r for r in sim.cluster.log(SCHEDULED, elsewhere("a")) if r.key == b"a"]
    serve_all(sim, "x")
    (copy,) = [r for r in sim.cluster.visible(SCHEDULED) if header(r, HEADER_FORWARDED_FROM) is not None]
    assert copy.timestamp == original.timestamp  # a delay-ms command stays due when its producer said
    sim.cluster.now_ms += 1500
    serve_all(sim, "x")
    (fire,) = sim.cluster.visible(TARGET)
    assert header(fire, "scheduler-fire-id") == b"a@%d" % copy.offset
    sim.drain()
    assert fired(sim) == Counter({"a": 1})


def test_reject_mode_refuses_a_misrouted_command_with_the_fix_in_the_message() -> None:
    sim = Sim(misrouted="reject")
    serve_all(sim, "x")
    sim.command("a", "schedule", 1000)
    sim.command("a", "cancel", partition=elsewhere("a"))
    serve_all(sim, "x")
    (reject,) = sim.cluster.visible(REJECTED)
    assert header(reject, "scheduler-reject-reason") == b"wrong_partition"
    assert b"partitioner=murmur2_random" in (header(reject, "scheduler-reject-message") or b"")
    sim.cluster.now_ms += 2000
    serve_all(sim, "x")
    assert fired(sim) == Counter({"a": 1})  # the cancel never took effect: refused, not forwarded


def test_legacy_state_moves_home_before_its_partition_takes_commands() -> None:
    """An older scheduler kept five ids in partition 1 (not their own); their producer cancels the last there.
    Moving them takes three transactions (two fires per transaction here): the cancel must still come after."""
    legacy = tuple((sid, 1000) for sid in ("L1", "L2", "L3", "L5", "L6"))
    assert {legacy_partition(sid) for sid, _ in legacy} == {1}
    sim = Sim(legacy)
    sim.command("L6", "cancel")  # sent before the new scheduler rebuilt partition 1
    serve_all(sim, "x", ticks=8)
    sim.cluster.now_ms += 2000
    sim.drain()
    assert fired(sim) == Counter({"L1": 1, "L2": 1, "L3": 1, "L5": 1})
    last = {(r.partition, r.key): r.value for r in sim.cluster.visible(STATE)}
    assert all(value is None for value in last.values()), "a misplaced state record was left behind"
    moves = Counter(id(r.txn) for r in sim.cluster.visible(SCHEDULED) if header(r, HEADER_RELOCATED_FROM))
    assert sum(moves.values()) == 5 and max(moves.values()) == 1  # half the 2-fire budget per transaction


def test_a_misrouted_command_that_cannot_go_home_is_refused_for_its_own_fault_first() -> None:
    sim = Sim(misrouted="reject")
    serve_all(sim, "x")
    sim.command("a", "poison", 1000, partition=elsewhere("a"))  # a target the cluster does not have
    serve_all(sim, "x")
    (reject,) = sim.cluster.visible(REJECTED)
    assert header(reject, "scheduler-reject-reason") == b"unknown_target_topic"


def header_command(sim: Sim, sid: str, headers: list[tuple[str, bytes]], partition: int) -> None:
    sim.cluster.produce_plain(SCHEDULED, sid.encode(), b"payload", headers=headers, partition=partition)


def test_a_forwarded_delay_counts_from_when_its_producer_sent_it() -> None:
    sim = Sim()
    serve_all(sim, "x")
    sent_at = sim.cluster.now_ms
    delay = [("scheduler-target-topic", TARGET.encode()), ("scheduler-delay-ms", b"5000")]
    header_command(sim, "a", delay, elsewhere("a"))
    sim.cluster.now_ms += 3000  # forwarded (and taken at home) three seconds later
    serve_all(sim, "x")
    (put,) = [r for r in sim.cluster.visible(STATE) if r.key == b"a" and r.value is not None]
    assert decode_state(put.value or b"")[0].due_ms == sent_at + 5000


def test_a_forged_relocation_is_checked_like_any_command() -> None:
    sim = Sim()
    serve_all(sim, "x")
    forged = encode_schedule(Schedule("a", "no-such-topic", sim.cluster.now_ms + 1000, b"x"))
    sim.cluster.produce_plain(SCHEDULED, b"a", forged, headers=[("scheduler-relocated-from", b"0")])
    serve_all(sim, "x")
    (reject,) = sim.cluster.visible(REJECTED)
    assert header(reject, "scheduler-reject-reason") == b"unknown_target_topic"
    assert [r for r in sim.cluster.visible(STATE) if r.key == b"a"] == []


def test_a_copy_that_arrives_in_the_wrong_partition_again_is_not_forwarded_again() -> None:
    """Two instances that disagree on the partition count would pass it back and forth for good."""
    sim = Sim()
    serve_all(sim, "x")
    copy = [("scheduler-forwarded-from", b"0/7")]
    sim.cluster.produce_plain(SCHEDULED, b"a", encode_cancel("a"), headers=copy, partition=elsewhere("a"))
    serve_all(sim, "x")
    (reject,) = sim.cluster.visible(REJECTED)
    assert header(reject, "scheduler-reject-reason") == b"wrong_partition"
    assert b"disagree on the partition count" in (header(reject, "scheduler-reject-message") or b"")
    assert [r for r in sim.cluster.visible(SCHEDULED) if r.txn is not None] == []


def test_rebuild_logs_a_corrupt_state_record_and_serves_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    """The replay's one call per batch still reports each corrupt record with its position, as the per-message
    replay did, and the partition serves: the good schedule fires, the corrupt one never does."""
    sim = Sim()
    now = sim.cluster.now_ms
    good = Schedule("good", TARGET, now + 1000, payload=b"g", target_key=b"g")
    sim.cluster.append(STATE, home("bad"), b"bad", b"garbage")
    sim.cluster.append(STATE, home("good"), b"good", encode_state(good, 0))
    with caplog.at_level(logging.ERROR, logger="scheduler.service.partitions"):
        serve_all(sim, "x")
    (line,) = [r.getMessage() for r in caplog.records if "corrupt state record" in r.getMessage()]
    assert line == f"skipping corrupt state record b'bad' at {home('bad')}/0: " + (
        "state record is not Avro single-object encoded"
    )
    instance = sim.instances["x"]
    assert instance is not None
    index = instance.partitions.owned[home("bad")].index
    assert index.get(b"bad") == b"garbage"
    assert [sid for sid, _ in index.due(now + 10**9, 10)] == (
        [b"good"] if home("good") == home("bad") else []
    )
    sim.cluster.now_ms += 2000
    serve_all(sim, "x")
    assert fired(sim) == Counter({"good": 1})
