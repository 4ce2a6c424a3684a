"""Totals over finished chaos runs: `python -m tests.chaos.summary DIR...` (each DIR a run or a folder of runs).

Reads every `report.json` below the given folders and prints one table row per run and the totals: schedules,
commands, poison, fires, must-fire, faults injected, what they hit (attempt outcomes from the transaction logs,
records visible only read_uncommitted) and anomalies. `--json` prints the totals as JSON.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["main", "summarize"]


def _reports(paths: list[Path]) -> list[dict[str, Any]]:
    found: list[Path] = []
    for path in paths:
        found += (
            [path / "report.json"] if (path / "report.json").exists() else sorted(path.rglob("report.json"))
        )
    return [json.loads(p.read_text()) for p in found]


def summarize(reports: list[dict[str, Any]]) -> dict[str, Any]:
    totals: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    anomalies: Counter[str] = Counter()
    verdicts: Counter[str] = Counter()
    lateness_max = 0
    for rep in reports:
        s = rep["stats"]
        verdicts[rep["verdict"]] += 1
        totals["schedules"] += int(rep.get("config", {}).get("schedules", 0))
        for key in (
            "commands",
            "poison_commands",
            "cancels",
            "replaces",
            "fires",
            "must_fire",
            "dead_letters",
        ):
            totals[key] += int(s.get(key, 0))
        totals["aborted_records"] += int(s.get("aborted_records_visible_only_uncommitted", 0))
        totals["recurring_fires"] += int(s.get("recurring", {}).get("fires", 0))
        faults.update({k: int(v) for k, v in s.get("faults_injected", {}).items()})
        outcomes.update({k: int(v) for k, v in s.get("attempt_outcomes", {}).items()})
        anomalies.update({k: int(v["count"]) for k, v in rep.get("anomalies", {}).items()})
        lateness_max = max(lateness_max, int(s.get("lateness_ms", {}).get("max", 0)))
    return {
        "runs": len(reports),
        "verdicts": dict(verdicts),
        "totals": dict(totals),
        "faults_injected": dict(sorted(faults.items())),
        "attempt_outcomes": dict(sorted(outcomes.items())),
        "anomalies": dict(anomalies),
        "lateness_max_ms": lateness_max,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.summary", description=__doc__)
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    reports = _reports(args.dirs)
    if not args.json:
        print(
            f"{'seed':>6} {'verdict':12} {'schedules':>9} {'fires':>7} {'poison':>6} {'lat p99 ms':>10} anomalies"
        )
        for rep in sorted(reports, key=lambda r: int(r.get("config", {}).get("seed", 0))):
            s, cfg = rep["stats"], rep.get("config", {})
            print(
                f"{cfg.get('seed', '?'):>6} {rep['verdict']:12} {cfg.get('schedules', 0):>9} {s.get('fires', 0):>7} "
                f"{s.get('poison_commands', 0):>6} {s.get('lateness_ms', {}).get('p99', '-'):>10} "
                f"{sum(v['count'] for v in rep.get('anomalies', {}).values())}"
            )
    print(json.dumps(summarize(reports), indent=1))
    return 1 if any(r["verdict"] == "fail" for r in reports) else 0


if __name__ == "__main__":
    raise SystemExit(main())
