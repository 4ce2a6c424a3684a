"""A running scheduler whose cluster goes away: /readyz says so, and the log stays readable (issue 25, point 5).

The cluster is a private broker (the shared one must never stop): started, used, stopped under the scheduler.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from scheduler.dev import broker
from tests.conftest import wait_until
from tests.scheduler_proc import SchedulerStack


def test_readyz_fails_and_errors_are_rate_limited_while_the_cluster_is_down(
    private_broker: broker.BrokerHandle, tmp_path: Path
) -> None:
    stack = SchedulerStack(private_broker.bootstrap, f"down-{uuid.uuid4().hex[:8]}", tmp_path).create()
    try:
        instance = stack.start_instance()
        assert instance.get("/readyz")[0] == 200
        before = len(instance.log_path.read_text(errors="replace").splitlines())

        broker.stop(private_broker)
        down_at = time.monotonic()
        wait_until(lambda: instance.get("/readyz")[0] == 503, 45, "/readyz 503 with the cluster down")
        _status, body = instance.get("/readyz")
        assert json.loads(body)["checks"]["brokers_reachable"] is False, body
        assert instance.get("/livez")[0] == 200  # a broker outage must not restart the pod
        # Stay down a while longer: librdkafka retries every connection many times a second meanwhile.
        wait_until(lambda: time.monotonic() - down_at > 20, 30, "20 s with the cluster down", interval_s=0.5)
        lines = instance.log_path.read_text(errors="replace").splitlines()[before:]
        seconds = time.monotonic() - down_at
    finally:
        stack.close()
    errors = [line for line in lines if " ERROR " in line]
    assert len(errors) <= 3, "\n".join(errors[:20])
    assert len(lines) <= seconds, f"{len(lines)} log lines in {seconds:.0f}s:\n" + "\n".join(lines[:40])
    assert not any(line.startswith("%3|") for line in lines), "a raw librdkafka line"
