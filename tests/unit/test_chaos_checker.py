"""The chaos checker is a pure function over a run directory: each anomaly it must catch, caught on a tiny run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scheduler.codec import encode_state
from scheduler.model import Schedule
from tests.chaos.checker import check

DUE = 1_767_225_600_000


def cmd(o: int, key: str | None, due: int | None = DUE, poison: str | None = None) -> dict[str, Any]:
    headers = [] if due is None else [["scheduler-target-topic", "t"], ["scheduler-deliver-at", str(due)]]
    if poison:
        headers.append(["chaos-poison", poison])
    return {"p": 0, "o": o, "ts": DUE - 5000, "k": key, "v": None if due is None else "payload", "h": headers}


def put(o: int, key: str, version: int) -> dict[str, Any]:
    value = encode_state(Schedule(key, "t", DUE, b"payload"), version).decode("latin-1")
    return {"p": 0, "o": o, "ts": DUE, "k": key, "v": value, "h": []}


def tomb(o: int, key: str) -> dict[str, Any]:
    return {"p": 0, "o": o, "ts": DUE, "k": key, "v": None, "h": []}


def fire(o: int, key: str, version: int, fired_at: int = DUE) -> dict[str, Any]:
    headers = [
        ["scheduler-schedule-id", key],
        ["scheduler-fire-id", f"{key}@{version}"],
        ["scheduler-due-at", str(DUE)],
        ["scheduler-fired-at", str(fired_at)],
    ]
    return {"p": 0, "o": o, "ts": max(fired_at, DUE), "k": None, "v": "payload", "h": headers}


def write_run(
    tmp: Path,
    scheduled: list[dict[str, Any]],
    state: list[dict[str, Any]],
    fires: list[dict[str, Any]],
    rejected: list[dict[str, Any]] | None = None,
    *,
    aborted_fires: list[dict[str, Any]] | None = None,
    hanging: bool = False,
) -> Path:
    topics = {
        "scheduled": ("s", scheduled, scheduled),
        "state": ("s.state", state, state),
        "target": ("t", fires, fires + (aborted_fires or [])),
        "rejected": ("s.rejected", rejected or [], rejected or []),
        "dlt": ("s.dlt", [], []),
    }
    offsets: dict[str, Any] = {"topics": {}, "group": {"0": len(scheduled)}}
    for kind, (name, committed, uncommitted) in topics.items():
        for iso, recs in (("committed", committed), ("uncommitted", uncommitted)):
            path = tmp / f"topic.{kind}.{name}.{iso}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in recs))
        end = len(uncommitted)
        lso = end - 1 if hanging and kind == "target" else end
        offsets["topics"][name] = {"kind": kind, "committed": {"0": lso}, "uncommitted": {"0": end}}
    (tmp / "offsets.json").write_text(json.dumps(offsets))
    (tmp / "metrics.json").write_text(json.dumps({"aborted": 1}))
    return tmp


def anomalies(run: Path) -> set[str]:
    return set(check(run)["anomalies"])


def test_a_clean_run_passes(tmp_path: Path) -> None:
    run = write_run(tmp_path, [cmd(0, "x")], [put(0, "x", 0), tomb(1, "x")], [fire(0, "x", 0)])
    report = check(run)
    assert report["anomalies"] == {} and report["verdict"] == "pass"
    assert (run / "report.json").exists()


def test_no_fault_hit_is_inconclusive(tmp_path: Path) -> None:
    run = write_run(tmp_path, [cmd(0, "x")], [put(0, "x", 0), tomb(1, "x")], [fire(0, "x", 0)])
    (run / "metrics.json").write_text(json.dumps({"aborted": 0}))
    assert check(run)["verdict"] == "inconclusive"


def test_same_tick_schedule_and_cancel_is_not_an_anomaly(tmp_path: Path) -> None:
    run = write_run(tmp_path, [cmd(0, "x"), cmd(1, "x", due=None)], [tomb(0, "x")], [])
    assert anomalies(run) == set()


def test_cancel_then_a_replace_consumed_and_fired_in_one_later_tick_is_legitimate(tmp_path: Path) -> None:
    # Seen in a run: put(19), the cancel's tombstone, then (after a restart, past due) schedule 34 consumed and
    # fired in the same transaction: a tombstone without a put. A greedy replay blamed the first tombstone on 34.
    scheduled = [cmd(19, "x"), cmd(24, "x", due=None), cmd(34, "x")]
    run = write_run(tmp_path, scheduled, [put(11, "x", 19), tomb(18, "x"), tomb(35, "x")], [fire(2, "x", 34)])
    assert anomalies(run) == set()


@pytest.mark.parametrize(
    ("name", "scheduled", "state", "fires", "expected"),
    [
        (
            "duplicate",
            [cmd(0, "x")],
            [put(0, "x", 0), tomb(1, "x"), tomb(2, "x")],
            [fire(0, "x", 0), fire(1, "x", 0)],
            "duplicate_fire_id",
        ),
        ("lost", [cmd(0, "x")], [put(0, "x", 0)], [], "lost_fire"),
        (
            "early",
            [cmd(0, "x")],
            [put(0, "x", 0), tomb(1, "x")],
            [fire(0, "x", 0, fired_at=DUE - 1)],
            "early_fire",
        ),
        (
            "superseded",
            [cmd(0, "x"), cmd(1, "x")],
            [put(0, "x", 0), put(1, "x", 1), tomb(2, "x")],
            [fire(0, "x", 0)],
            "cancel_order_violated",
        ),
        (
            "after_cancel",
            [cmd(0, "x"), cmd(1, "x", due=None)],
            [put(0, "x", 0), tomb(1, "x"), tomb(2, "x")],
            [fire(0, "x", 0)],
            "tombstone_with_nothing_pending",
        ),
        ("no_tombstone", [cmd(0, "x")], [], [fire(0, "x", 0)], "fire_without_tombstone"),
        (
            "final_state",
            [cmd(0, "x")],
            [put(0, "x", 0), tomb(1, "x"), put(2, "x", 0)],
            [fire(0, "x", 0)],
            "final_state_differs",
        ),
        ("poison", [cmd(0, "bad", poison="bad_due")], [], [], "poison_not_rejected_once"),
    ],
)
def test_each_anomaly_is_caught(
    tmp_path: Path, name: str, scheduled: list[Any], state: list[Any], fires: list[Any], expected: str
) -> None:
    report = check(write_run(tmp_path, scheduled, state, fires))
    assert expected in report["anomalies"], (name, report["anomalies"])
    assert report["verdict"] == "fail"


def test_hanging_transaction_and_aborted_fire_visible(tmp_path: Path) -> None:
    run = write_run(tmp_path, [cmd(0, "x")], [put(0, "x", 0), tomb(1, "x")], [fire(0, "x", 0)], hanging=True)
    assert "hanging_transaction" in anomalies(run)
    run2 = tmp_path / "b"
    run2.mkdir()
    write_run(run2, [cmd(0, "x")], [put(0, "x", 0), tomb(1, "x")], [fire(0, "x", 0)])
    (run2 / "topic.target.t.uncommitted.jsonl").write_text(json.dumps(fire(5, "x", 0)) + "\n")
    assert "fire_visible_from_aborted_attempt" in anomalies(run2)


def rejected(key: str, reason: str, at: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """The reject record of the command at (partition, offset)."""
    headers = [
        ["scheduler-reject-reason", reason],
        ["scheduler-reject-partition", str(at[0])],
        ["scheduler-reject-offset", str(at[1])],
    ]
    return {"p": 0, "o": 0, "ts": DUE, "k": key, "v": "payload", "h": headers}


def test_poison_rejected_once_passes_and_twice_fails(tmp_path: Path) -> None:
    reject = rejected("bad", "invalid_due")
    run = write_run(tmp_path, [cmd(0, "bad", poison="bad_due")], [], [], [reject])
    assert anomalies(run) == set()
    run2 = tmp_path / "twice"
    run2.mkdir()
    write_run(run2, [cmd(0, "bad", poison="bad_due")], [], [], [reject, {**reject, "o": 1}])
    assert "poison_not_rejected_once" in anomalies(run2)


# -- the scheduler's per-transaction log (instance-*.txn.jsonl)


def txn_log(run: Path, *attempts: tuple[str, list[str], str | None], name: str = "instance-0") -> None:
    """attempts: (attempt id, fire ids, outcome or None for killed in flight)."""
    lines = []
    for attempt, fids, outcome in attempts:
        lines.append({"attempt": attempt, "fires": [["t", f] for f in fids], "dead_letters": [], "state": []})
        if outcome is not None:
            lines.append({"attempt": attempt, "outcome": outcome})
    (run / f"{name}.txn.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def clean_run(tmp: Path, fires: list[dict[str, Any]] | None = None) -> Path:
    scheduled = [cmd(0, "x"), cmd(1, "y")]
    state = [put(0, "x", 0), put(1, "y", 1), tomb(2, "x"), tomb(3, "y")]
    return write_run(
        tmp, scheduled, state, fires if fires is not None else [fire(0, "x", 0), fire(1, "y", 1)]
    )


def test_attempts_explaining_every_fire_pass_and_count_as_faults_hit(tmp_path: Path) -> None:
    run = clean_run(tmp_path)
    (run / "metrics.json").write_text(json.dumps({"aborted": 0}))  # the scrape saw nothing; the log did
    txn_log(run, ("c0.1.1", ["x@0", "y@1"], "aborted"), ("c0.1.2", ["x@0", "y@1"], "committed"))
    report = check(run)
    assert report["verdict"] == "pass", report["anomalies"]
    assert report["stats"]["attempt_outcomes"] == {"aborted": 1, "committed": 1}


def test_only_committed_attempts_and_no_fault_is_inconclusive(tmp_path: Path) -> None:
    run = clean_run(tmp_path)
    (run / "metrics.json").write_text(json.dumps({"aborted": 0}))
    txn_log(run, ("c0.1.1", ["x@0", "y@1"], "committed"))
    assert check(run)["verdict"] == "inconclusive"


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [
        ([("a.1", ["x@0", "y@1"], "aborted")], "fire_visible_from_refused_attempt"),
        ([("a.1", ["x@0", "y@1"], "fenced")], "fire_visible_from_refused_attempt"),
        ([("a.1", ["x@0"], "committed")], "fire_without_logged_attempt"),
        ([("a.1", ["x@0", "y@1", "z@9"], "committed")], "committed_attempt_fire_missing"),
        ([("a.1", ["x@0", "y@1", "z@9"], None)], "torn_attempt"),
        ([("a.1", ["x@0", "y@1", "z@9"], "indeterminate")], "torn_attempt"),
    ],
)
def test_each_attempt_anomaly_is_caught(
    tmp_path: Path, attempts: list[tuple[str, list[str], str | None]], expected: str
) -> None:
    run = clean_run(tmp_path)
    txn_log(run, *attempts)
    report = check(run)
    assert expected in report["anomalies"] and report["verdict"] == "fail", report["anomalies"]


def test_an_in_flight_attempt_redone_by_a_committed_one_is_not_torn(tmp_path: Path) -> None:
    # killed after producing x and y; the new owner fired both again and committed: nothing of the first visible
    run = clean_run(tmp_path)
    txn_log(run, ("c0.1.7", ["x@0", "y@1"], None))
    txn_log(run, ("c1.2.3", ["x@0", "y@1"], "committed"), name="instance-1")
    report = check(run)
    assert report["verdict"] == "pass", report["anomalies"]
    assert report["stats"]["attempt_outcomes"] == {"committed": 1, "in_flight": 1}


# -- F18: schedules to a target deleted mid-run (marked chaos-doomed)


def doomed_cmd(o: int, key: str) -> dict[str, Any]:
    rec = cmd(o, key)
    rec["h"].append(["chaos-doomed", "1"])
    return rec


def reject_of(o: int, reason: str) -> dict[str, Any]:
    headers = [
        ["scheduler-reject-reason", reason],
        ["scheduler-reject-partition", "0"],
        ["scheduler-reject-offset", str(o)],
    ]
    return {"p": 0, "o": 0, "ts": DUE, "k": "d", "v": "payload", "h": headers}


def test_a_doomed_command_consumed_after_the_deletion_may_be_rejected_as_unknown(tmp_path: Path) -> None:
    run = write_run(tmp_path, [doomed_cmd(0, "d")], [], [], [reject_of(0, "unknown_target_topic")])
    report = check(run)
    assert report["anomalies"] == {}, report["anomalies"]
    assert report["stats"]["doomed"]["rejected_unknown_target"] == 1


def test_a_doomed_command_rejected_for_another_reason_is_an_anomaly(tmp_path: Path) -> None:
    run = write_run(tmp_path, [doomed_cmd(0, "d")], [], [], [reject_of(0, "invalid_due")])
    assert {"valid_command_rejected", "lost_fire"} <= anomalies(run)


def test_a_doomed_fire_gone_with_its_topic_counts_only_if_a_committed_attempt_wrote_it(
    tmp_path: Path,
) -> None:
    run = write_run(tmp_path, [doomed_cmd(0, "d")], [put(0, "d", 0), tomb(1, "d")], [])
    assert "lost_fire" in anomalies(run)
    txn_log(run, ("c0.1.1", ["d@0"], "aborted"), ("c0.1.2", ["d@0"], "committed"))
    report = check(run)
    assert report["anomalies"] == {}, report["anomalies"]
    assert report["stats"]["doomed"]["fired_attested_by_txn_log"] == 1


def test_a_fire_another_unknown_attempt_also_wrote_does_not_make_a_torn_attempt(tmp_path: Path) -> None:
    # A (killed in flight, really aborted) wrote x and z; B (also killed, really committed) wrote x again; z was
    # cancelled afterwards: A looks half visible, but its x is explained by B
    run = clean_run(tmp_path)
    txn_log(run, ("c0.1.1", ["x@0", "z@9"], None), ("c0.1.2", ["y@1"], "committed"))
    txn_log(run, ("c1.2.1", ["x@0"], None), name="instance-1")
    report = check(run)
    assert "torn_attempt" not in report["anomalies"], report["anomalies"]


def two_partitions(run: Path) -> Path:
    """`scheduled` has two partitions: id "x" lives in 0 (murmur2), so a command for it in 1 was misrouted."""
    offsets = json.loads((run / "offsets.json").read_text())
    for info in offsets["topics"].values():
        if info["kind"] == "scheduled":
            info["committed"]["1"] = info["uncommitted"]["1"] = 1
    offsets["group"]["1"] = 1
    (run / "offsets.json").write_text(json.dumps(offsets))
    return run


def misrouted(o: int, key: str, **kw: Any) -> dict[str, Any]:
    return {**cmd(o, key, **kw), "p": 1}


def forwarded(o: int, key: str, origin: str, **kw: Any) -> dict[str, Any]:
    rec = cmd(o, key, **kw)
    rec["h"] = [*rec["h"], ["scheduler-forwarded-from", origin]]
    return rec


def test_a_forwarded_command_counts_where_it_was_copied(tmp_path: Path) -> None:
    scheduled = [misrouted(0, "x"), forwarded(0, "x", "1/0")]
    run = two_partitions(write_run(tmp_path, scheduled, [put(0, "x", 0), tomb(1, "x")], [fire(0, "x", 0)]))
    report = check(run)
    assert report["anomalies"] == {} and report["stats"]["forwarded"] == 1


def test_a_misrouted_command_never_forwarded_is_caught(tmp_path: Path) -> None:
    run = two_partitions(write_run(tmp_path, [misrouted(0, "x")], [], []))
    assert "misrouted_command_not_forwarded_once" in anomalies(run)


def test_a_misrouted_command_forwarded_twice_is_caught(tmp_path: Path) -> None:
    scheduled = [misrouted(0, "x"), forwarded(0, "x", "1/0"), forwarded(1, "x", "1/0")]
    run = two_partitions(write_run(tmp_path, scheduled, [put(0, "x", 1), tomb(1, "x")], [fire(0, "x", 1)]))
    assert "misrouted_command_not_forwarded_once" in anomalies(run)


def test_a_misrouted_poison_may_be_rejected_where_it_arrived(tmp_path: Path) -> None:
    reject = rejected("x", "deserialization_error", at=(1, 0))
    run = two_partitions(write_run(tmp_path, [misrouted(0, "x", poison="bad")], [], [], [reject]))
    assert anomalies(run) == set()


def test_forwarded_copies_out_of_their_source_order_are_caught(tmp_path: Path) -> None:
    scheduled = [misrouted(0, "x"), forwarded(0, "x", "1/1"), forwarded(1, "x", "1/0"), misrouted(1, "x")]
    run = write_run(tmp_path, scheduled, [put(0, "x", 1), tomb(1, "x")], [fire(0, "x", 1)])
    offsets = json.loads((run / "offsets.json").read_text())
    for info in offsets["topics"].values():
        if info["kind"] == "scheduled":
            info["committed"]["1"] = info["uncommitted"]["1"] = 2
    (run / "offsets.json").write_text(json.dumps(offsets))
    assert "forwarded_out_of_order" in anomalies(run)
