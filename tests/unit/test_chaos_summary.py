"""`python -m tests.chaos.summary`: the long tier's figures in the docs come from these totals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.chaos.summary import main


def report(seed: int, verdict: str, fires: int, anomalies: dict[str, int]) -> dict[str, object]:
    return {
        "verdict": verdict,
        "config": {"seed": seed, "schedules": 100},
        "anomalies": {k: {"count": n, "examples": []} for k, n in anomalies.items()},
        "stats": {
            "fires": fires,
            "poison_commands": 3,
            "faults_injected": {"sigkill": 2, "zombie": 1},
            "attempt_outcomes": {"committed": 10, "fenced": 1},
            "lateness_ms": {"p99": 40, "max": 90 + seed},
        },
    }


def test_totals_over_runs_and_a_failure_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for seed, verdict, anomalies in ((1, "pass", {}), (2, "fail", {"lost_fire": 4})):
        run = tmp_path / f"seed-{seed}"
        run.mkdir()
        (run / "report.json").write_text(json.dumps(report(seed, verdict, 50, anomalies)))
    assert main([str(tmp_path), "--json"]) == 1
    out = capsys.readouterr().out
    totals = json.loads(out)
    assert totals["runs"] == 2 and totals["verdicts"] == {"pass": 1, "fail": 1}
    assert totals["totals"]["fires"] == 100 and totals["totals"]["schedules"] == 200
    assert totals["faults_injected"] == {"sigkill": 4, "zombie": 2}
    assert totals["attempt_outcomes"] == {"committed": 20, "fenced": 2}
    assert totals["anomalies"] == {"lost_fire": 4} and totals["lateness_max_ms"] == 92
    (tmp_path / "seed-2" / "report.json").unlink()
    assert main([str(tmp_path), "--json"]) == 0
