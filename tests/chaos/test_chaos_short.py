"""The short chaos tier: two seeds of ~2k schedules, 3 supervised instances, 6 partitions, failpoint SIGKILLs,
random SIGKILLs, one zombie and one rebalance storm each, plus the edge loads: 500 schedules due in one
millisecond (F23), oversized payloads in four sizes (F17), a target deleted half-way (F18), a quarter of the
commands sent with librdkafka's default partitioner (forwarded to their id's partition), and 40 recurring
schedules judged per occurrence (tests/chaos/recurring.py). The checker must
find no anomaly and faults must have hit transactions (an inconclusive run fails too). The long tier is
`make chaos` (see docs/reliability.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.chaos.run import ChaosConfig, run_chaos


@pytest.mark.parametrize("seed", [101, 202])
def test_short_chaos_run_finds_no_anomaly(kafka_bootstrap: str, tmp_path: Path, seed: int) -> None:
    cfg = ChaosConfig(
        seed=seed,
        schedules=2000,
        instances=3,
        partitions=6,
        duration_s=40,
        bootstrap=kafka_bootstrap,
        run_dir=tmp_path / f"seed-{seed}",
        kill_every_s=(6.0, 12.0),
        zombies=1,
        storms=1,
        failpoint_probability=1.0,  # every incarnation dies at a failpoint within its first 20 hits
        failpoint_max_hit=20,
        quiesce_timeout_s=90,
        burst=500,
        oversize=True,
        doomed=True,
        recurring=40,  # every / after / paused and resumed / replaced, each occurrence judged (issue 16)
    )
    report = run_chaos(cfg)
    summary = json.dumps({k: report[k] for k in ("verdict", "anomalies", "stats")}, indent=1, default=str)
    assert report["verdict"] == "pass", summary
    assert report["stats"]["quiesced"], summary
    assert report["stats"].get("attempts", 0) > 0, "no per-transaction log was read: " + summary
    # the edge loads happened: a burst in one millisecond, all four payload sizes, a deleted target
    assert report["stats"]["max_schedules_due_in_one_ms"] >= 500, summary
    assert report["stats"]["generated"].get("oversize", 0) >= 4, summary
    assert report["stats"]["doomed"]["commands"] > 0, summary
    assert report["stats"]["forwarded"] > 100, summary  # a quarter went through another partitioner
    assert report["stats"]["faults_injected"].get("target_deleted") == 1, summary
    recurring = report["stats"]["recurring"]  # occurrences fired, done reports consumed, pauses exercised
    assert recurring["fires"] > 100 and recurring["dones"] > 10 and recurring["pauses"] > 0, summary
    assert (
        report["stats"]["faults_injected"].get("sigkill", 0)
        + report["stats"]["faults_injected"].get("failpoint_kill", 0)
        > 0
    ), summary
