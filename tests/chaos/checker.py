"""The chaos checker: dump every topic of a finished run to JSONL, then a pure function over those files.

`dump(run_dir, ...)` reads `scheduled`, the targets, state, rejected and dead-letter topics from the beginning
twice (read_committed and read_uncommitted, each to position >= the end offset), writes `<topic kind>.<iso>.jsonl`
plus `offsets.json` (per-partition end offsets for both isolation levels and the group's committed offsets), and
`check(run_dir)` computes the report from those files and `commands.jsonl` / `events.jsonl` / `metrics.json`.

Reference semantics (G5): for one schedule id X, commands apply in their offset order on X's partition (murmur2 of
X, whatever partition a producer sent them to: the scheduler forwards a misrouted command home, and the copy's
place there is its place in X's order) and the newest consumed command wins. The checker cannot see when a
command was consumed, so it judges fires against the state topic, which records every committed transition of X
in commit order (a put carries the version, which is the offset of the command that created it; a tombstone is a
fire, a dead letter or a cancel):
- must fire: the last command for X is a schedule v → exactly one fire (target or dead letter) of X@v.
- may fire: a schedule v followed by a later command → at most one fire, and only if the fire is explained by
  the state log: a tombstone directly after put(v) (v was pending when the fire committed) or, if v was never put
  (consumed and fired in the same transaction), a tombstone after the last put older than v. A fire of v whose
  state log shows put(w) for a newer w between put(v) and every tombstone is "cancel order violated": the newer
  command was provably consumed (it committed) before the fire's transaction.
- every tombstone must be explained by a fire or a cancel; two tombstones in a row with nothing pending are a
  duplicate effect.
- puts of X carry strictly increasing versions (commands take effect in offset order).

Recurring schedules (ids with a recurring or control command; fire ids `<id>@<version>/<occurrence>`) are
left out of the checks above and judged by `tests.chaos.recurring.check_recurring` (its docstring has the header
semantics and the rules), over the same dump plus `observed.jsonl` (what the echo consumer saw) and `end.json`.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from tests.chaos.attempts import check_attempts, load_attempts
from tests.chaos.recurring import StateRecord, check_recurring, ended_before, is_occurrence_fire, is_recurring

__all__ = ["check", "dump", "main", "record_dict"]

ISOLATIONS = ("committed", "uncommitted")


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("latin-1")


def _bytes(text: str | None) -> bytes | None:
    return None if text is None else text.encode("latin-1")


# ---------------------------------------------------------------- dump (I/O)


def _read_topic(bootstrap: str, topic: str, committed: bool, timeout_s: float) -> list[dict[str, Any]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"chaos-checker-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed" if committed else "read_uncommitted",
            "fetch.max.bytes": 16 * 1024 * 1024,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)]
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in parts}
        consumer.assign(parts)
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while True:
            positions = consumer.position([TopicPartition(topic, p) for p in ends])
            if all(tp.offset >= ends[tp.partition] or ends[tp.partition] == 0 for tp in positions):
                return out
            if time.monotonic() > deadline:
                raise AssertionError(f"reading {topic}: positions {positions} never reached {ends}")
            for msg in consumer.consume(5000, 0.2):
                if msg.error() is not None:
                    continue
                out.append(record_dict(msg))
    finally:
        consumer.close()


def record_dict(msg: Any) -> dict[str, Any]:
    """One consumed record as the dump stores it (bytes as latin-1 text)."""
    return {
        "p": msg.partition(),
        "o": msg.offset(),
        "ts": msg.timestamp()[1],
        "k": _text(msg.key()),
        "v": _text(msg.value()),
        "h": [[name, _text(value)] for name, value in (msg.headers() or [])],
    }


def _end_offsets(admin: AdminClient, topic: str, partitions: int) -> dict[str, dict[int, int]]:
    out: dict[str, dict[int, int]] = {}
    for name, level in (
        ("committed", IsolationLevel.READ_COMMITTED),
        ("uncommitted", IsolationLevel.READ_UNCOMMITTED),
    ):
        request = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}  # type: ignore[no-untyped-call]
        futures = admin.list_offsets(request, isolation_level=level, request_timeout=30)
        out[name] = {tp.partition: f.result(timeout=30).offset for tp, f in futures.items()}
    return out


def dump(
    run_dir: Path,
    bootstrap: str,
    topics: dict[str, list[str]],
    group: str,
    scheduled_topic: str,
    timeout_s: float = 120.0,
) -> None:
    """topics: kind ("scheduled", "target", "state", "rejected", "dlt") -> topic names."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    offsets: dict[str, Any] = {"topics": {}, "group": {}}
    for kind, names in topics.items():
        for name in names:
            for iso in ISOLATIONS:
                records = _read_topic(bootstrap, name, iso == "committed", timeout_s)
                path = run_dir / f"topic.{kind}.{name}.{iso}.jsonl"
                with path.open("w") as fh:
                    for rec in records:
                        fh.write(json.dumps(rec) + "\n")
            parts = len(admin.list_topics(name, timeout=10).topics[name].partitions)
            offsets["topics"][name] = {"kind": kind, **_end_offsets(admin, name, parts)}
    from confluent_kafka import ConsumerGroupTopicPartitions

    request = [ConsumerGroupTopicPartitions(group)]
    result = admin.list_consumer_group_offsets(request)[group].result(timeout=30)
    offsets["group"] = {
        str(tp.partition): tp.offset for tp in result.topic_partitions if tp.topic == scheduled_topic
    }
    (run_dir / "offsets.json").write_text(json.dumps(offsets, indent=1))


# ---------------------------------------------------------------- check (pure over files)


def _load(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open() as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _headers(rec: dict[str, Any]) -> dict[str, str | None]:
    return {name: value for name, value in rec["h"]}


def _records(run_dir: Path, kind: str, iso: str) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for path in sorted(run_dir.glob(f"topic.{kind}.*.{iso}.jsonl")):
        name = path.name[len(f"topic.{kind}.") : -len(f".{iso}.jsonl")]
        out[name] = _load(path)
    return out


def _positions(records: Iterable[dict[str, Any]]) -> set[tuple[int, int]]:
    return {(r["p"], r["o"]) for r in records}


class _Report:
    def __init__(self) -> None:
        self.anomalies: dict[str, list[Any]] = defaultdict(list)
        self.stats: dict[str, Any] = {}

    def add(self, kind: str, detail: Any) -> None:
        self.anomalies[kind].append(detail)


def _partitions(run_dir: Path) -> int:
    offsets = (
        json.loads((run_dir / "offsets.json").read_text()) if (run_dir / "offsets.json").exists() else {}
    )
    for info in offsets.get("topics", {}).values():
        if info["kind"] == "scheduled":
            return len(info["uncommitted"])
    return 0


def _route(
    rep: _Report, scheduled: list[dict[str, Any]], partitions: int, rejected: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The commands where they take effect (each id's murmur2 partition: sent there, or the scheduler's copy);
    a command sent elsewhere is copied there exactly once, or (poison only) rejected where it arrived."""
    from scheduler.partitioner import partition_for

    rep.stats["forwarded"] = sum(1 for r in scheduled if "scheduler-forwarded-from" in _headers(r))
    if not partitions:
        return scheduled
    copies: Counter[str] = Counter()
    effective, misrouted = [], []
    for rec in scheduled:
        origin = _headers(rec).get("scheduler-forwarded-from")
        if origin is not None:
            copies[origin] += 1
        if rec["k"] is None or partition_for(_bytes(rec["k"]) or b"", partitions) == rec["p"]:
            effective.append(rec)
        else:
            misrouted.append(rec)
    rejected_at = Counter(
        f"{_headers(r).get('scheduler-reject-partition')}/{_headers(r).get('scheduler-reject-offset')}"
        for r in rejected
    )
    for rec in misrouted:
        where, poison = f"{rec['p']}/{rec['o']}", "chaos-poison" in _headers(rec)
        n, rejects = copies.pop(where, 0), rejected_at.get(where, 0)
        if (n, rejects) == (0, 1) and poison:  # refused where it arrived (undecodable, or too large to copy)
            effective.append(rec)
        elif (n, rejects) != (1, 0):
            rep.add("misrouted_command_not_forwarded_once", {"at": where, "copies": n, "rejects": rejects})
    for where, n in copies.items():
        rep.add("forwarded_copy_of_nothing", {"from": where, "copies": n})
    _check_source_order(rep, effective)
    return effective


def _check_source_order(rep: _Report, effective: list[dict[str, Any]]) -> None:
    """Commands one producer sent to one partition take effect at home in the order it sent them."""
    last: dict[tuple[str, int], int] = {}
    for rec in sorted(effective, key=lambda r: (r["p"], r["o"])):
        origin = _headers(rec).get("scheduler-forwarded-from")
        source, offset = (int(x) for x in origin.split("/")) if origin else (rec["p"], rec["o"])
        slot = (rec["k"], source)
        if offset <= last.get(slot, -1):
            rep.add("forwarded_out_of_order", {"id": rec["k"], "from": f"{source}/{offset}"})
        last[slot] = offset


def _commands(
    scheduled: list[dict[str, Any]],
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Valid commands per id in offset order, and the poison commands (marked by the generator's header)."""
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    poison = []
    for rec in sorted(scheduled, key=lambda r: (r["p"], r["o"])):
        h = _headers(rec)
        if "chaos-poison" in h:
            poison.append(rec)
            continue
        due = h.get("scheduler-deliver-at")
        kind = "cancel" if rec["v"] is None else "schedule"
        by_id[rec["k"]].append(
            {
                "p": rec["p"],
                "o": rec["o"],
                "ts": rec["ts"],
                "kind": kind,
                "due": int(due) if due else None,
                "doomed": "chaos-doomed" in h,
            }
        )
    return by_id, poison


def check(run_dir: Path) -> dict[str, Any]:  # noqa: C901, PLR0912 - one block per check, in order
    """Pure: the report of a run from the files `dump` wrote (and the harness's logs)."""
    rep = _Report()
    scheduled = next(iter(_records(run_dir, "scheduled", "committed").values()), [])
    rejected = [r for recs in _records(run_dir, "rejected", "committed").values() for r in recs]
    effective = _route(rep, scheduled, _partitions(run_dir), rejected)
    recurring_ids = {r["k"] for r in effective if is_recurring(r)}
    by_id, poison = _commands([r for r in effective if r["k"] not in recurring_ids])
    recurring_fires: list[dict[str, Any]] = []
    rep.stats["commands"] = len(scheduled) - rep.stats["forwarded"]
    present = _positions(scheduled)
    logged = [c for c in _load(run_dir / "commands.jsonl") if "o" in c]
    missing = [(c["p"], c["o"]) for c in logged if (c["p"], c["o"]) not in present]
    if missing:  # the generator's producer was acknowledged for a command `scheduled` does not hold
        rep.add("acknowledged_command_missing", missing[:20])
    rep.stats["ids"] = len(by_id)
    rep.stats["poison_commands"] = len(poison)
    attempts = load_attempts(run_dir)
    # F18: a command to the doomed target consumed after its deletion is rightly refused as an unknown target
    doomed_at = {(c["p"], c["o"]): sid for sid, cs in by_id.items() for c in cs if c["doomed"]}
    doomed_rejected: dict[tuple[int, int], str] = {}
    for rec in rejected:
        h = _headers(rec)
        pos = (int(h.get("scheduler-reject-partition") or -1), int(h.get("scheduler-reject-offset") or -1))
        if pos in doomed_at and h.get("scheduler-reject-reason") == "unknown_target_topic":
            doomed_rejected[pos] = doomed_at[pos]
    rep.stats["cancels"] = sum(c["kind"] == "cancel" for cs in by_id.values() for c in cs)
    rep.stats["replaces"] = sum(max(0, sum(c["kind"] == "schedule" for c in cs) - 1) for cs in by_id.values())

    # Fires (target topics and dead letters), read_committed.
    fires: dict[str, list[dict[str, Any]]] = defaultdict(list)  # id -> fire records
    fire_counts: Counter[str] = Counter()
    aborted_records = 0
    for kind in ("target", "dlt", "state", "rejected"):
        committed = _records(run_dir, kind, "committed")
        uncommitted = _records(run_dir, kind, "uncommitted")
        for name, recs in committed.items():
            seen = _positions(uncommitted.get(name, []))
            mine = _positions(recs)
            aborted_records += len(seen - mine)
            stray = mine - seen
            if stray:
                rep.add("fire_visible_from_aborted_attempt", {"topic": name, "positions": sorted(stray)[:20]})
            if kind in ("target", "dlt"):
                for rec in recs:
                    h = _headers(rec)
                    fid = h.get("scheduler-fire-id")
                    if fid is None:
                        rep.add("fire_without_fire_id", {"topic": name, "p": rec["p"], "o": rec["o"]})
                        continue
                    fire_counts[fid] += 1
                    if is_occurrence_fire(fid):
                        recurring_fires.append(rec)
                        continue
                    sid, _, version = fid.rpartition("@")
                    fires[sid].append({**rec, "topic": name, "version": int(version), "hdr": h, "kind": kind})
    attested = _attested_doomed_fires(by_id, fires, attempts)
    for fid in attested:
        sid, _, version = fid.rpartition("@")
        fires[sid].append({"version": int(version), "kind": "attested", "ts": 0, "hdr": {}})
    doomed_ids = {sid for sid, cs in by_id.items() if cs[0]["doomed"]}
    if doomed_ids:
        doomed_fires = [f for sid in doomed_ids for f in fires.get(sid, [])]
        rep.stats["doomed"] = {
            "commands": len(doomed_ids),
            "fired_seen": sum(f["kind"] == "target" for f in doomed_fires),
            "fired_attested_by_txn_log": len(attested),
            "dead_lettered": sum(f["kind"] == "dlt" for f in doomed_fires),
            "rejected_unknown_target": len(doomed_rejected),
        }
    dues = Counter(
        due for due, _sid in {(c["due"], sid) for sid, cs in by_id.items() for c in cs if c["due"]}
    )
    rep.stats["max_schedules_due_in_one_ms"] = max(dues.values(), default=0)
    rep.stats["aborted_records_visible_only_uncommitted"] = aborted_records
    rep.stats["fires"] = sum(fire_counts.values())
    rep.stats["dead_letters"] = sum(f["kind"] == "dlt" for fs in fires.values() for f in fs)
    for fid, n in fire_counts.items():
        if n > 1 and not is_occurrence_fire(fid):  # occurrences: recurring_duplicate_fire
            rep.add("duplicate_fire_id", {"fire_id": fid, "count": n})

    # Early fires and fires of versions that never existed.
    for sid, fs in fires.items():
        versions = {c["o"]: c for c in by_id.get(sid, []) if c["kind"] == "schedule"}
        for f in fs:
            cmd = versions.get(f["version"])
            if cmd is None:
                rep.add("fire_of_unknown_version", {"fire_id": f"{sid}@{f['version']}"})
                continue
            if f["kind"] in ("dlt", "attested"):
                continue
            fired_at = int(f["hdr"].get("scheduler-fired-at") or 0)
            if fired_at < cmd["due"] or f["ts"] < cmd["due"]:
                rep.add(
                    "early_fire",
                    {
                        "fire_id": f"{sid}@{f['version']}",
                        "due": cmd["due"],
                        "fired_at": fired_at,
                        "ts": f["ts"],
                    },
                )
            if f["hdr"].get("scheduler-due-at") != str(cmd["due"]):
                rep.add("wrong_due_header", {"fire_id": f"{sid}@{f['version']}"})

    lateness = sorted(
        f["ts"] - versions_due
        for sid, fs in fires.items()
        for f in fs
        if f["kind"] == "target"
        and (versions_due := next((c["due"] for c in by_id.get(sid, []) if c["o"] == f["version"]), None))
        is not None
    )
    if lateness:
        n = len(lateness)
        rep.stats["lateness_ms"] = {
            "p50": lateness[n // 2],
            "p99": lateness[min(n - 1, n * 99 // 100)],
            "max": lateness[-1],
        }

    # State log per id, committed, in offset order of its partition.
    state_committed = next(iter(_records(run_dir, "state", "committed").values()), [])
    log: dict[str, list[dict[str, Any]]] = defaultdict(list)
    last: dict[str, dict[str, Any]] = {}
    for rec in sorted(state_committed, key=lambda r: (r["p"], r["o"])):
        log[rec["k"]].append(rec)
        last[rec["k"]] = rec
    from scheduler.codec import decode_state

    def version_of(rec: dict[str, Any]) -> int:
        return decode_state(_bytes(rec["v"]) or b"")[1]

    wrong_partition = [
        k for k, recs in log.items() if by_id.get(k) and any(r["p"] != by_id[k][0]["p"] for r in recs)
    ]
    for k in wrong_partition[:50]:
        rep.add("state_record_in_wrong_partition", k)

    must_fire = 0
    for sid, cmds in by_id.items():
        fired_versions = sorted({f["version"] for f in fires.get(sid, [])})
        schedule_offsets = [c["o"] for c in cmds if c["kind"] == "schedule"]
        if cmds[-1]["kind"] == "schedule" and (cmds[-1]["p"], cmds[-1]["o"]) not in doomed_rejected:
            must_fire += 1
            if cmds[-1]["o"] not in fired_versions:
                rep.add("lost_fire", {"fire_id": f"{sid}@{cmds[-1]['o']}", "due": cmds[-1]["due"]})
        _check_state_log(rep, sid, cmds, log.get(sid, []), fired_versions, schedule_offsets, version_of)
    rep.stats["must_fire"] = must_fire

    # Poison: each rejected exactly once; nothing valid rejected.
    rejected_at: Counter[tuple[int, int]] = Counter()
    for rec in rejected:
        h = _headers(rec)
        rejected_at[
            (int(h.get("scheduler-reject-partition") or -1), int(h.get("scheduler-reject-offset") or -1))
        ] += 1
        if not h.get("scheduler-reject-reason"):
            rep.add("reject_without_reason", {"p": rec["p"], "o": rec["o"]})
    for rec in poison:
        n = rejected_at.pop((rec["p"], rec["o"]), 0)
        if n != 1:
            rep.add("poison_not_rejected_once", {"p": rec["p"], "o": rec["o"], "times": n})
    late_controls = _late_recurring_controls(rejected, effective, recurring_fires)
    for pos, n in rejected_at.items():
        if (pos in doomed_rejected or pos in late_controls) and n == 1:
            continue
        rep.add("valid_command_rejected", {"p": pos[0], "o": pos[1], "times": n})
    rep.stats["rejects"] = len(rejected)

    # Final state (compacted view: last record per key) equals what is still pending.
    expected = {
        sid: cmds[-1]["o"]
        for sid, cmds in by_id.items()
        if cmds[-1]["kind"] == "schedule"
        and cmds[-1]["o"] not in {f["version"] for f in fires.get(sid, [])}
        and (cmds[-1]["p"], cmds[-1]["o"]) not in doomed_rejected
    }
    actual = {k: version_of(r) for k, r in last.items() if r["v"] is not None and k not in recurring_ids}
    if expected != actual:
        diff = sorted(set(expected.items()) ^ set(actual.items()))[:50]
        rep.add("final_state_differs", {"expected": len(expected), "actual": len(actual), "diff": diff})
    rep.stats["pending_at_end"] = len(actual)
    if recurring_ids or recurring_fires:
        recurring = [r for r in effective if r["k"] in recurring_ids]
        _check_recurring(rep, run_dir, recurring, recurring_fires, {k: log[k] for k in recurring_ids})

    # Hanging transactions and group offsets.
    offsets = (
        json.loads((run_dir / "offsets.json").read_text()) if (run_dir / "offsets.json").exists() else {}
    )
    for name, info in offsets.get("topics", {}).items():
        if info["committed"] != info["uncommitted"]:
            rep.add(
                "hanging_transaction", {"topic": name, "lso": info["committed"], "hwm": info["uncommitted"]}
            )
        if info["kind"] == "scheduled":
            group = {int(p): o for p, o in offsets.get("group", {}).items()}
            ends = {int(p): o for p, o in info["uncommitted"].items()}
            behind = {p: (group.get(p), end) for p, end in ends.items() if end > 0 and group.get(p) != end}
            if behind:
                rep.add("group_offsets_not_at_end", behind)

    faults = _faults(run_dir)
    rep.stats.update(faults)
    if attempts is not None:  # the scheduler's own per-transaction log: what each attempt wrote, its outcome
        found, attempt_stats = check_attempts(attempts, set(fire_counts) | attested)
        for kind, details in found.items():
            for detail in details:
                rep.add(kind, detail)
        rep.stats.update(attempt_stats)
        outcomes = attempt_stats["attempt_outcomes"]
        rep.stats["fenced"] = outcomes.get("fenced", 0)
        hit = aborted_records + sum(n for outcome, n in outcomes.items() if outcome != "committed")
    else:  # runs from before the transaction log: scraped metrics and log lines
        hit = (
            faults.get("transactions_aborted", 0)
            + faults.get("fenced", 0)
            + faults.get("transactions_killed_in_flight", 0)
            + aborted_records
        )
    anomalies = {k: {"count": len(v), "examples": v[:10]} for k, v in rep.anomalies.items()}
    verdict = "fail" if anomalies else ("pass" if hit > 0 else "inconclusive")
    report = {"verdict": verdict, "anomalies": anomalies, "stats": rep.stats}
    (run_dir / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True))
    return report


def _state_record(rec: dict[str, Any]) -> StateRecord:
    """What a recurring id's state record says, as far as this codec can read it (version, paused)."""
    if rec["v"] is None:
        return StateRecord(rec["ts"], True)
    from scheduler.codec import decode_state

    try:
        schedule, version = decode_state(_bytes(rec["v"]) or b"")
    except Exception:  # a writer schema this codec does not know
        return StateRecord(rec["ts"], False)
    recurrence = getattr(schedule, "recurrence", None)
    paused = None if recurrence is None else bool(getattr(recurrence, "paused", False))
    return StateRecord(rec["ts"], False, version, paused)


def _late_recurring_controls(
    rejected: list[dict[str, Any]], commands: list[dict[str, Any]], fires: list[dict[str, Any]]
) -> set[tuple[int, int]]:
    """Positions of pause/resume commands refused `not_recurring` because their schedule had already ended (a
    generator behind its plan sends them late): rightly refused, not valid commands lost."""
    out = set()
    for rec in rejected:
        h = _headers(rec)
        if h.get("scheduler-reject-reason") != "not_recurring" or not h.get("scheduler-control"):
            continue
        sent = int(h.get("scheduler-reject-timestamp") or 0)
        if ended_before(commands, fires, rec["k"] or "", sent):
            out.add(
                (int(h.get("scheduler-reject-partition") or -1), int(h.get("scheduler-reject-offset") or -1))
            )
    return out


def _consumed_by_fire(run_dir: Path) -> dict[str, dict[int, int]]:
    """Fire id -> the input positions (partition -> offset) its committed transaction carried, from the
    per-transaction logs: what that transaction had consumed when it fired (an attempt killed in flight, whose
    outcome is unknown, counts only when no committed one holds the fire)."""
    outcomes: dict[str, str] = {}
    begun: list[dict[str, Any]] = []
    for path in sorted(run_dir.glob("instance-*.txn.jsonl")):
        for entry in _load(path):
            if "outcome" in entry:
                outcomes[entry["attempt"]] = entry["outcome"]
            elif "offsets" in entry:
                begun.append(entry)
    out: dict[str, dict[int, int]] = {}
    for entry in begun:
        outcome = outcomes.get(entry["attempt"])
        if outcome not in (None, "committed"):
            continue
        offsets = {int(p): int(o) for p, o in entry["offsets"].items()}
        for _topic, fid in entry.get("fires", []):
            if fid is not None and (outcome == "committed" or fid not in out):
                out[fid] = offsets
    return out


def _check_recurring(
    rep: _Report,
    run_dir: Path,
    commands: list[dict[str, Any]],
    fires: list[dict[str, Any]],
    states: dict[str, list[dict[str, Any]]],
) -> None:
    observed: dict[str, list[int]] = defaultdict(list)
    for entry in _load(run_dir / "observed.jsonl"):
        observed[entry["fid"]].append(int(entry["seen_ms"]))
    end = run_dir / "end.json"
    end_ms = (
        int(json.loads(end.read_text())["end_ms"])
        if end.exists()
        else max((r["ts"] for r in commands + fires), default=0)
    )
    decoded = {sid: [_state_record(r) for r in recs] for sid, recs in states.items()}
    anomalies, stats = check_recurring(
        commands, fires, dict(observed), decoded, end_ms, consumed=_consumed_by_fire(run_dir)
    )
    for kind, details in anomalies.items():
        for detail in details:
            rep.add(kind, detail)
    rep.stats["recurring"] = stats


def _attested_doomed_fires(
    by_id: dict[str, list[dict[str, Any]]],
    fires: dict[str, list[dict[str, Any]]],
    attempts: dict[str, dict[str, Any]] | None,
) -> set[str]:
    """F18: fires to the doomed target committed just before its deletion, which the tail could not read before
    the topic went away. The only witness is the scheduler's own log of a committed attempt; they are counted
    apart so a run shows how many fires rest on it."""
    if attempts is None:
        return set()
    committed = {fid for att in attempts.values() if att["outcome"] == "committed" for fid in att["fids"]}
    out = set()
    for sid, cmds in by_id.items():
        if not cmds[0]["doomed"] or fires.get(sid):
            continue
        fid = f"{sid}@{cmds[-1]['o']}"
        if fid in committed:
            out.add(fid)
    return out


def _check_state_log(  # noqa: C901, PLR0912 - the greedy replay names each anomaly
    rep: _Report,
    sid: str,
    cmds: list[dict[str, Any]],
    events: list[dict[str, Any]],
    fired: list[int],
    schedule_offsets: list[int],
    version_of: Any,
) -> None:
    """Replay X's committed state log and explain every tombstone by a fire or a cancel (module docstring).

    First a search over every consistent explanation (commands are consumed in offset order, so each
    explanation's offset exceeds everything consumed before it); only if none explains the whole log does the
    greedy replay below name the anomalies.
    """
    cancels = [c["o"] for c in cmds if c["kind"] == "cancel"]
    unexplained_fires = set(fired)
    puts = [version_of(ev) if ev["v"] is not None else None for ev in events]
    put_versions = {w for w in puts if w is not None}
    leftover = _explain(puts, frozenset(fired), frozenset(cancels), schedule_offsets, put_versions)
    if leftover is not None:
        for w in puts:
            if w is not None and w not in schedule_offsets:
                rep.add("state_put_of_unknown_version", {"id": sid, "version": w})
        for v in sorted(leftover):
            kind = "cancel_order_violated" if v in put_versions else "fire_without_tombstone"
            rep.add(kind, {"fire_id": f"{sid}@{v}", "state_log_versions": sorted(put_versions)})
        return
    pending: int | None = None
    last_put = -1
    for i, ev in enumerate(events):
        w = puts[i]
        if w is not None:
            if w not in schedule_offsets:
                rep.add("state_put_of_unknown_version", {"id": sid, "version": w})
            if w <= last_put:
                rep.add("state_versions_out_of_order", {"id": sid, "version": w, "after": last_put})
            pending, last_put = w, max(last_put, w)
            continue
        # A tombstone is explained, in this order, by: the fire of the pending version; the fire of a newer
        # version consumed and fired in the same transaction (never put); a cancel consumed after the last put.
        # Either must be older than the next put in the log (that command was consumed later).
        upper = next((x for x in puts[i + 1 :] if x is not None), None)
        bound = upper if upper is not None else 1 << 62
        same_tick = [v for v in sorted(unexplained_fires) if last_put < v < bound and v not in put_versions]
        # A cancel writes a tombstone only if something was pending: a put, or a schedule consumed in the same
        # transaction before the cancel (never put).
        cancel = next(
            (
                c
                for c in cancels
                if last_put < c < bound
                and (pending is not None or any(last_put < o < c for o in schedule_offsets))
            ),
            None,
        )
        if pending is not None and pending in unexplained_fires:
            unexplained_fires.discard(pending)
        elif same_tick:
            unexplained_fires.discard(same_tick[0])
        elif cancel is not None:
            cancels.remove(cancel)
        elif pending is None:
            rep.add("tombstone_with_nothing_pending", {"id": sid, "state_offset": ev["o"]})
        else:
            rep.add("unexplained_tombstone", {"id": sid, "state_offset": ev["o"], "pending": pending})
        pending = None
    for v in sorted(unexplained_fires):
        if v in put_versions:
            rep.add(
                "cancel_order_violated", {"fire_id": f"{sid}@{v}", "state_log_versions": sorted(put_versions)}
            )
        else:
            rep.add("fire_without_tombstone", {"fire_id": f"{sid}@{v}"})


def _explain(
    puts: list[int | None],
    fired: frozenset[int],
    cancels: frozenset[int],
    schedule_offsets: list[int],
    put_versions: set[int],
) -> frozenset[int] | None:
    """The fewest fires left unexplained over all consistent explanations of the log, or None if some tombstone
    cannot be explained at all (or the puts are out of order)."""
    bounds = [next((x for x in puts[i + 1 :] if x is not None), 1 << 62) for i in range(len(puts))]
    best: list[frozenset[int] | None] = [None]

    @functools.cache
    def go(
        i: int, consumed: int, pending: int | None, left: frozenset[int], cancels_left: frozenset[int]
    ) -> None:
        if best[0] is not None and not best[0]:
            return  # a perfect explanation is already known
        if i == len(puts):
            if best[0] is None or len(left) < len(best[0]):
                best[0] = left
            return
        w = puts[i]
        if w is not None:
            if w > consumed:
                go(i + 1, w, w, left, cancels_left)
            return
        bound = bounds[i]
        if pending is not None and pending in left:
            go(i + 1, consumed, None, left - {pending}, cancels_left)
        for v in sorted(left):
            if consumed < v < bound and v not in put_versions:
                go(i + 1, v, None, left - {v}, cancels_left)
        for c in sorted(cancels_left):
            if consumed < c < bound and (
                pending is not None or any(consumed < o < c for o in schedule_offsets)
            ):
                go(i + 1, c, None, left, cancels_left - {c})

    go(0, -1, None, fired, cancels)
    return best[0]


def _faults(run_dir: Path) -> dict[str, Any]:
    """Faults injected (events.jsonl) and what they hit (scraped metrics, fenced producers in the logs)."""
    out: dict[str, Any] = {}
    events = _load(run_dir / "events.jsonl")
    injected: Counter[str] = Counter(e["fault"] for e in events if "fault" in e)
    out["faults_injected"] = dict(injected)
    in_txn = (
        "after_begin",
        "after_fire_produce",
        "after_tombstone_produce",
        "after_send_offsets",
        "before_commit",
    )
    out["transactions_killed_in_flight"] = sum(
        1 for e in events if e.get("fault") == "failpoint_kill" and str(e.get("spec", "")).startswith(in_txn)
    )
    out["instance_exits"] = dict(Counter(str(e.get("rc")) for e in events if e.get("event") == "exited"))
    metrics = (
        json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").exists() else {}
    )
    out["transactions_committed"] = int(metrics.get("committed", 0))
    out["transactions_aborted"] = int(metrics.get("aborted", 0))
    # Fenced: a transaction refused because its producer epoch or its group generation was stale (KIP-447).
    fenced = 0
    for path in run_dir.glob("instance-*.log"):
        for line in path.read_text(errors="replace").lower().splitlines():
            if ("scheduler.kafka.txn" not in line and "fatal:" not in line) or "leader epoch" in line:
                continue  # only the transaction runner's own verdicts, not librdkafka's metadata chatter
            if "fenced" in line or "generation id is not valid" in line or "old epoch" in line:
                fenced += 1
    out["fenced"] = fenced
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.chaos.checker RUN_DIR`: re-check a dumped run."""
    import sys

    args = argv if argv is not None else sys.argv[1:]
    report = check(Path(args[0]))
    print(json.dumps({"verdict": report["verdict"], "anomalies": list(report["anomalies"])}, indent=1))
    return 1 if report["verdict"] == "fail" else 0


if __name__ == "__main__":
    raise SystemExit(main())
