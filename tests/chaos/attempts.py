"""Checks over the scheduler's per-transaction logs (`instance-*.txn.jsonl`, see scheduler/service/txnlog.py).

Every fire the checker reads back (target or dead letter, read_committed) is matched to the attempts that wrote it:
- a fire visible read_committed must belong to an attempt that committed or whose outcome is unknown (killed in
  flight, or a commit that never resolved); one that only refused attempts (aborted, fenced, failed) wrote is an
  aborted attempt made visible;
- every fire of an attempt logged `committed` must be visible read_committed;
- an attempt with an unknown outcome is all-visible or all-invisible, counting only the fires no other attempt
  that may have committed also wrote (a torn transaction otherwise);
- a visible fire no attempt logged means the log (or the scheduler) is wrong.
Pure over the files; `None` when the run has no transaction logs (older runs).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

__all__ = ["REFUSED", "check_attempts", "load_attempts"]

REFUSED = frozenset({"aborted", "fenced", "failed"})
UNKNOWN = "in_flight"  # no outcome line: the process died between begin and outcome


def load_attempts(run_dir: Path) -> dict[str, dict[str, Any]] | None:
    paths = sorted(run_dir.glob("instance-*.txn.jsonl"))
    if not paths:
        return None
    attempts: dict[str, dict[str, Any]] = {}
    for path in paths:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by SIGKILL mid-write (the begin line is flushed whole in practice)
                att = attempts.setdefault(
                    entry["attempt"], {"outcome": UNKNOWN, "fids": [], "file": path.name}
                )
                if "outcome" in entry:
                    att["outcome"] = entry["outcome"]
                else:
                    fids = [fid for _topic, fid in entry.get("fires", [])] + entry.get("dead_letters", [])
                    att["fids"] = [fid for fid in fids if fid is not None]
    return attempts


def check_attempts(
    attempts: dict[str, dict[str, Any]], visible: set[str]
) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """(anomalies by kind, stats) for the fire ids `visible` read_committed."""
    anomalies: dict[str, list[Any]] = defaultdict(list)
    by_fid: dict[str, list[str]] = defaultdict(list)
    for name, att in attempts.items():
        for fid in att["fids"]:
            by_fid[fid].append(name)
    committed_fids = {fid for a in attempts.values() if a["outcome"] == "committed" for fid in a["fids"]}
    live = {name for name, att in attempts.items() if att["outcome"] not in REFUSED}

    for name, att in attempts.items():
        if att["outcome"] == "committed":
            missing = [fid for fid in att["fids"] if fid not in visible]
            if missing:
                anomalies["committed_attempt_fire_missing"].append(
                    {"attempt": name, "fire_ids": missing[:10]}
                )
        elif att["outcome"] not in REFUSED:
            # unknown outcome: all or nothing of the fires no other attempt that may have committed also wrote
            own = [
                fid for fid in att["fids"] if fid not in committed_fids and live & set(by_fid[fid]) == {name}
            ]
            shown = [fid for fid in own if fid in visible]
            if shown and len(shown) != len(own):
                hidden = [fid for fid in own if fid not in visible]
                anomalies["torn_attempt"].append(
                    {"attempt": name, "visible": shown[:5], "invisible": hidden[:5], "of": len(own)}
                )

    for fid in sorted(visible):
        writers = by_fid.get(fid)
        if not writers:
            anomalies["fire_without_logged_attempt"].append(fid)
        elif all(attempts[w]["outcome"] in REFUSED for w in writers):
            anomalies["fire_visible_from_refused_attempt"].append(
                {"fire_id": fid, "attempts": {w: attempts[w]["outcome"] for w in writers}}
            )

    outcomes = Counter(att["outcome"] for att in attempts.values())
    stats = {"attempts": len(attempts), "attempt_outcomes": dict(sorted(outcomes.items()))}
    return anomalies, stats
