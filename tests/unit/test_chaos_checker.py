"""The chaos checker is a pure function over a run directory: each anomaly it must catch, caught on a tiny run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scheduler.codec import encode_state
from scheduler.model import Schedule
from tests.chaos.checker import check
from tests.chaos.recurring import StateRecord, check_recurring

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


# ---------------------------------------------------------------- recurring schedules (tests/chaos/recurring.py)

S = DUE  # starts_at of the synthetic recurring schedules, a whole second
END = S + 120_000  # when the synthetic run stopped


def rcmd(o: int, sid: str, ts: int = S - 2000, **spec: int | str) -> dict[str, Any]:
    """A recurring command in the header protocol: every_ms / after_ms / starts_at / ends_at / max_runs / missed."""
    spec = {"starts_at": S, **spec}
    headers = [["scheduler-target-topic", "t"]] + [
        [f"scheduler-{name.replace('_', '-')}", str(value)] for name, value in spec.items()
    ]
    return {"p": 0, "o": o, "ts": ts, "k": sid, "v": "payload", "h": headers}


def ctl(o: int, sid: str, ts: int, word: str, fire_id: str | None = None) -> dict[str, Any]:
    headers = [["scheduler-control", word]] + ([["scheduler-fire-id", fire_id]] if fire_id else [])
    return {"p": 0, "o": o, "ts": ts, "k": sid, "v": "", "h": headers}


def rfire(
    sid: str, version: int, occ: int, run: int, skipped: int = 0, ts: int | None = None, awaits: bool = False
) -> dict[str, Any]:
    fid = f"{sid}@{version}/{occ}"
    at = occ + 40 if ts is None else ts
    headers = [
        ["scheduler-schedule-id", sid],
        ["scheduler-fire-id", fid],
        ["scheduler-due-at", str(occ)],
        ["scheduler-fired-at", str(at)],
        ["scheduler-occurrence-at", str(occ)],
        ["scheduler-run", str(run)],
        ["scheduler-skipped", str(skipped)],
    ] + ([["scheduler-await-done", fid]] if awaits else [])
    return {"p": 0, "o": run, "ts": at, "k": sid, "v": "payload", "h": headers}


def every_fires(sid: str, version: int, n: int, every: int = 1000) -> list[dict[str, Any]]:
    return [rfire(sid, version, S + i * every, i + 1) for i in range(n)]


def rec_anomalies(
    commands: list[dict[str, Any]],
    fires: list[dict[str, Any]],
    states: dict[str, list[StateRecord]] | None = None,
    observed: dict[str, list[int]] | None = None,
) -> dict[str, list[Any]]:
    found, _stats = check_recurring(commands, fires, observed or {}, states or {}, END)
    return found


def test_a_clean_every_all_schedule_passes() -> None:
    commands = [rcmd(0, "r", every_ms=1000, max_runs=5, missed="all")]
    found, stats = check_recurring(commands, every_fires("r", 0, 5), {}, {}, END)
    assert found == {}
    assert stats["fires"] == 5 and stats["by_kind"] == {"every:all": 1}


@pytest.mark.parametrize(
    ("fires", "anomaly"),
    [
        ([*every_fires("r", 0, 5), rfire("r", 0, S + 4000, 5)], "recurring_duplicate_fire"),
        ([*every_fires("r", 0, 4), rfire("r", 0, S + 4000, 5, ts=S + 3990)], "recurring_early_fire"),
        ([f for f in every_fires("r", 0, 5) if f["ts"] != S + 2040], "recurring_missing_occurrence"),
        ([*every_fires("r", 0, 4), rfire("r", 0, S + 4500, 5)], "recurring_off_schedule"),
        (every_fires("r", 0, 6), "recurring_past_max_runs"),
        ([*every_fires("r", 0, 4), rfire("r", 0, S + 4000, 7)], "recurring_run_not_consecutive"),
        ([*every_fires("r", 0, 4), rfire("r", 0, S + 4000, 5, skipped=1)], "recurring_skip_count_wrong"),
        (every_fires("r", 7, 5), "recurring_fire_of_unknown_version"),
        (
            [*every_fires("r", 0, 4), {**rfire("r", 0, S + 4000, 5), "h": [["scheduler-fire-id", "r@0/x"]]}],
            "recurring_bad_headers",
        ),
    ],
)
def test_each_recurring_anomaly_is_caught(fires: list[dict[str, Any]], anomaly: str) -> None:
    commands = [rcmd(0, "r", every_ms=1000, max_runs=5, missed="all")]
    assert anomaly in rec_anomalies(commands, fires)


def test_a_schedule_that_never_fires_is_caught_whatever_its_policy() -> None:
    for spec in (
        {"every_ms": 2000, "missed": "latest"},
        {"after_ms": 1000},
        {"every_ms": 1000, "missed": "skip"},
    ):
        commands = [rcmd(0, "r", max_runs=3, **spec)]  # type: ignore[arg-type]
        assert set(rec_anomalies(commands, [])) == {"recurring_never_fired"}
    late = [rcmd(0, "r", every_ms=1000, starts_at=END - 1000, missed="latest")]
    assert rec_anomalies(late, []) == {}, "it would have started within the slack before the run's end"


def test_under_all_a_replaced_version_has_no_hole_before_its_newest_fire() -> None:
    commands = [
        rcmd(0, "r", every_ms=1000, max_runs=10, missed="all"),
        rcmd(5, "r", ts=S + 4000, every_ms=1000, starts_at=S + 10_000, max_runs=1, missed="all"),
    ]
    new = [rfire("r", 5, S + 10_000, 1)]
    assert rec_anomalies(commands, every_fires("r", 0, 3) + new) == {}, "the rest rightly never fired"
    holed = [rfire("r", 0, S, 1), rfire("r", 0, S + 2000, 2), *new]
    assert "recurring_missing_occurrence" in rec_anomalies(commands, holed)


def test_seen_early_by_the_consumer_is_early() -> None:
    commands = [rcmd(0, "r", every_ms=1000, max_runs=2, missed="all")]
    observed = {f"r@0/{S + 1000}": [S + 999]}
    assert set(rec_anomalies(commands, every_fires("r", 0, 2), observed=observed)) == {"recurring_early_fire"}


def test_latest_and_skip_count_the_nominal_occurrences_between_fires() -> None:
    for missed in ("latest", "skip"):
        commands = [rcmd(0, "r", every_ms=1000, ends_at=S + 6000, missed=missed)]
        fires = [
            rfire("r", 0, S, 1),
            rfire("r", 0, S + 4000, 2, skipped=3),
            rfire("r", 0, S + 6000, 3, skipped=4),
        ]
        assert rec_anomalies(commands, fires) == {}
        wrong = [*fires[:2], rfire("r", 0, S + 6000, 3, skipped=3)]
        assert set(rec_anomalies(commands, wrong)) == {"recurring_skip_count_wrong"}


def test_latest_firing_an_old_occurrence_when_a_newer_one_was_due_is_caught() -> None:
    commands = [rcmd(0, "r", every_ms=1000, max_runs=1, missed="latest")]
    assert set(rec_anomalies(commands, [rfire("r", 0, S, 1, ts=S + 9000)])) == {"recurring_latest_not_newest"}
    assert rec_anomalies(commands, [rfire("r", 0, S, 1, ts=S + 3500)]) == {}, (
        "within one interval + tolerance"
    )
    last = [rcmd(0, "r", every_ms=1000, ends_at=S, missed="latest")]
    assert rec_anomalies(last, [rfire("r", 0, S, 1, ts=S + 9000)]) == {}, "the last occurrence before ends_at"


def paused_run(*fires: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every 1 s from S to S+30 s (latest), paused at S+5 s, resumed at S+15 s."""
    commands = [
        rcmd(0, "r", every_ms=1000, ends_at=S + 30_000, missed="latest"),
        ctl(1, "r", S + 5000, "pause"),
        ctl(2, "r", S + 15_000, "resume"),
    ]
    return commands, list(fires)


def test_nothing_fires_while_paused() -> None:
    before = [
        rfire("r", 0, S + i * 1000, i + 1) for i in range(8)
    ]  # up to S+7 s: in flight within the margin
    after = [rfire("r", 0, S + 16_000 + i * 1000, 9 + i, skipped=0) for i in range(15)]
    commands, fires = paused_run(*before, *after)
    assert rec_anomalies(commands, fires) == {}
    commands, fires = paused_run(*before, rfire("r", 0, S + 9000, 9), *after)
    found = rec_anomalies(commands, fires)
    assert "fired_while_paused" in found


def test_the_transaction_log_judges_a_fire_by_what_it_had_consumed() -> None:
    """A failover longer than any margin: the pause (offset 1) and resume (offset 2) are consumed together, late.
    A fire whose transaction had consumed the pause but not the resume is an anomaly, whatever the times."""
    commands, _ = paused_run()
    late = rfire("r", 0, S + 9000, 1, ts=S + 9040)  # in the paused window by time
    found, _stats = check_recurring(commands, [late], {}, {}, END, consumed={late_fid(late): {0: 1}})
    assert "fired_while_paused" not in found, "its transaction had not consumed the pause yet"
    found, _stats = check_recurring(commands, [late], {}, {}, END, consumed={late_fid(late): {0: 2}})
    assert "fired_while_paused" in found, "consumed the pause (position 2 > offset 1), not the resume"


def late_fid(fire: dict[str, Any]) -> str:
    return next(v for k, v in fire["h"] if k == "scheduler-fire-id")


def test_the_state_log_tells_when_the_pause_took_effect() -> None:
    fires = [rfire("r", 0, S + i * 1000, i + 1) for i in range(8)]  # the last at S+7 s
    commands, _ = paused_run()
    states = {"r": [StateRecord(S - 1000, False, 0, False), StateRecord(S + 5100, False, 0, True)]}
    assert "fired_while_paused" in rec_anomalies(commands, fires, states), (
        "paused at S+5.1 s: S+7 s is after it"
    )
    late_pause = {"r": [StateRecord(S + 7500, False, 0, True)]}
    assert "fired_while_paused" not in rec_anomalies(commands, fires, late_pause)


def test_a_schedule_that_does_not_go_on_after_its_resume_is_caught() -> None:
    commands, fires = paused_run(*[rfire("r", 0, S + i * 1000, i + 1) for i in range(5)])
    assert "not_resumed" in rec_anomalies(commands, fires)


def test_a_replaced_version_never_fires_after_the_replacement() -> None:
    commands = [
        rcmd(0, "r", every_ms=1000, max_runs=20, missed="latest"),
        rcmd(5, "r", ts=S + 4000, every_ms=2000, starts_at=S + 10_000, max_runs=2, missed="all"),
    ]
    old = [rfire("r", 0, S + i * 1000, i + 1) for i in range(5)]
    new = [rfire("r", 5, S + 10_000, 1), rfire("r", 5, S + 12_000, 2)]
    assert rec_anomalies(commands, old + new) == {}
    stale = rfire("r", 0, S + 9000, 6, skipped=4)
    assert set(rec_anomalies(commands, [*old, stale, *new])) == {"replaced_version_fired"}
    stale = rfire("r", 0, S + 6000, 6, skipped=1)  # within the margin of the command's record time
    assert rec_anomalies(commands, [*old, stale, *new]) == {}
    states = {"r": [StateRecord(S + 4200, False, 5, False), StateRecord(S + 12_100, True)]}
    found = rec_anomalies(commands, [*old, stale, *new], states)
    assert set(found) == {"replaced_version_fired"}, "the state log shows v5 took over at S+4.2 s"


def after_run(done_delay: int = 100) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """after_ms=2000, max_runs=3: each run reported done `done_delay` ms after it fired."""
    commands = [rcmd(0, "a", after_ms=2000, max_runs=3)]
    fires, occ = [], S
    for run in range(1, 4):
        f = rfire("a", 0, occ, run, awaits=True)
        fires.append(f)
        commands.append(ctl(run, "a", f["ts"] + done_delay, "done", f"a@0/{occ}"))
        occ = f["ts"] + done_delay + 2000
    return commands, fires


def test_an_after_chain_fires_each_run_after_the_previous_done() -> None:
    commands, fires = after_run()
    found, stats = check_recurring(commands, fires, {}, {}, END)
    assert found == {} and stats["dones"] == 3
    early = [*fires[:2], rfire("a", 0, fires[2]["ts"] - 500, 3, awaits=True)]
    assert "after_fired_before_done" in rec_anomalies(commands, early)
    undone = [c for c in commands if c["o"] != 1]  # run 1 was never reported done, yet run 2 fired
    assert "after_fired_before_done" in rec_anomalies(undone, fires)
    assert "after_chain_stalled" in rec_anomalies(commands, fires[:2]), "run 2 was done, run 3 never came"
    no_await = [{**f, "h": [h for h in f["h"] if h[0] != "scheduler-await-done"]} for f in fires]
    assert "recurring_bad_headers" in rec_anomalies(commands, no_await)


def test_a_recurring_schedule_that_ended_must_leave_no_state() -> None:
    commands = [rcmd(0, "r", every_ms=1000, max_runs=2, missed="all")]
    left = {"r": [StateRecord(S, False, 0, False), StateRecord(S + 1000, False, 0, False)]}
    assert set(rec_anomalies(commands, every_fires("r", 0, 2), left)) == {"recurring_not_ended"}
    gone = {"r": [StateRecord(S, False, 0, False), StateRecord(S + 1000, True)]}
    assert rec_anomalies(commands, every_fires("r", 0, 2), gone) == {}


def test_recurring_ids_are_left_out_of_the_one_time_checks_and_judged_apart(tmp_path: Path) -> None:
    scheduled = [
        cmd(0, "x"),
        rcmd(1, "r", every_ms=1000, max_runs=2, missed="all"),
        ctl(2, "r", S + 1100, "done", f"r@1/{S}"),  # a stale done: the scheduler ignores it
    ]
    fires = [fire(0, "x", 0), *every_fires("r", 1, 2)]
    state = [put(0, "x", 0), tomb(1, "x"), tomb(2, "r")]
    run = write_run(tmp_path, scheduled, state, fires)
    report = check(run)
    assert report["anomalies"] == {}, report["anomalies"]
    assert report["stats"]["recurring"]["fires"] == 2 and report["stats"]["must_fire"] == 1
    (tmp_path / "dup").mkdir()
    run2 = write_run(tmp_path / "dup", scheduled, state, [*fires, every_fires("r", 1, 2)[1]])
    assert anomalies(run2) == {"recurring_duplicate_fire"}
