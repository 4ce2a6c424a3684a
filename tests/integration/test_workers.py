"""`kafka-scheduler run --workers N`: N group members behind one port, exactly once, fail closed, no orphans."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.integration.scheduler_helpers import Tail, read_all
from tests.integration.test_scheduler_faults import assert_exactly_once, pending_in_state, schedule_many
from tests.scheduler_proc import SchedulerProcess, SchedulerStack

WORKER_CMD = b"scheduler.cli.worker"


@pytest.fixture
def stack(kafka_bootstrap: str, unique: Callable[[str], str], tmp_path: Path) -> Iterator[SchedulerStack]:
    """Fresh scheduler topics of 4 partitions, so each of two workers owns some; no instance started."""
    made = SchedulerStack(kafka_bootstrap, unique("workers"), tmp_path, partitions=4).create()
    try:
        yield made
    finally:
        made.close()


def unit(stack: SchedulerStack, instance_id: str, workers: int = 2) -> SchedulerProcess:
    """A unit of `workers` members with a fixed instance id (a restart reuses it), started, not awaited."""
    env = stack.env(KAFKA_SCHEDULER_INSTANCE_ID=instance_id, KAFKA_SCHEDULER_WORKERS=str(workers))
    proc = SchedulerProcess(env, stack.workdir / f"{instance_id}-{len(stack.instances)}.log")
    stack.instances.append(proc)
    return proc.start()


def running(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's zombie is its reaper's business)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def worker_pids(parent: int) -> dict[int, int]:
    """Worker index -> pid of the running workers of `parent`, from /proc."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        if ppid == parent and WORKER_CMD in argv:
            found[int(argv[argv.index(WORKER_CMD) + 1])] = int(entry.name)
    return found


def per_worker(proc: SchedulerProcess, sample: str) -> dict[str, float]:
    """worker label -> value summed over the series of `sample` (a name, optionally with leading labels)."""
    _status, text = proc.get("/metrics")
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(sample) and (match := re.search(r'worker="(\d+)"', line)):
            out[match.group(1)] = out.get(match.group(1), 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def test_a_unit_of_two_fires_each_schedule_once_behind_one_port_and_stops_clean(
    stack: SchedulerStack,
) -> None:
    target = stack.create_target(f"{stack.scheduled_topic}-target")
    proc = unit(stack, "u")
    assert proc.proc is not None
    seen_not_ready = False
    deadline = time.monotonic() + 90
    while True:  # /readyz turns 200 only once both workers say they serve
        try:
            status, body = proc.get("/readyz")
        except OSError:
            status, body = 0, None
        if status == 200:
            break
        if status == 503:
            seen_not_ready = True
            assert isinstance(body, (dict, str))
        assert proc.proc.poll() is None, proc.log_tail()
        assert time.monotonic() < deadline, f"unit not ready in 90 s:\n{proc.log_tail()}"
        time.sleep(0.05)
    assert seen_not_ready, "the unit said ready before its workers could have joined"
    assert isinstance(body, dict)
    assert body["checks"] == {
        "started": True,
        "not_draining": True,
        "worker_0_ready": True,
        "worker_1_ready": True,
    }
    assert per_worker(proc, "kafka_scheduler_worker_up") == {"0": 1.0, "1": 1.0}
    assert per_worker(proc, "kafka_scheduler_rebuilding_partitions") == {"0": 0.0, "1": 0.0}
    pids = worker_pids(proc.proc.pid)
    assert sorted(pids) == [0, 1], pids
    wait_until(
        lambda: set(per_worker(proc, "kafka_scheduler_assigned_partitions").values()) == {2.0},
        30,
        "two partitions on each worker",
    )

    schedule_many(stack, target, 200, 2.0, 4.0)
    tail = Tail(stack.bootstrap, target)
    tail.poll_until(lambda r: len({x.header("scheduler-fire-id") for x in r}) >= 200, 60, "200 fires")
    tail.poll_for(1.0)  # a duplicate would come right behind
    tail.close()
    fires = read_all(stack.bootstrap, target)
    assert_exactly_once(fires, 200)
    assert sorted(r.header("scheduler-schedule-id") for r in fires) == sorted(f"s-{i}" for i in range(200))
    fired = per_worker(proc, 'kafka_scheduler_fired_total{result="ok"')
    assert sum(fired.values()) == 200 and set(fired) == {"0", "1"} and min(fired.values()) > 0, fired
    assert proc.metric("kafka_scheduler_build_info") == 1  # the unit's, not one per worker
    assert proc.get("/livez")[0] == 200

    # A worker that cannot answer makes the unit not ready (and not live) until it can again.
    os.kill(pids[1], signal.SIGSTOP)
    try:
        wait_until(lambda: proc.get("/readyz")[0] == 503, 15, "not ready while a worker is stopped")
        status, body = proc.get("/livez")  # a 503's body comes back as text
        checks = json.loads(body)["checks"]
        assert status == 503 and checks["worker_1_alive"] is False and checks["worker_0_alive"], body
    finally:
        os.kill(pids[1], signal.SIGCONT)
    wait_until(lambda: proc.get("/readyz")[0] == 200, 60, "ready again")

    assert proc.stop() == 0, proc.log_tail()
    assert not [pid for pid in pids.values() if running(pid)], "workers outlived their unit"
    wait_until(lambda: pending_in_state(stack) == 0, 30, "state topic drained")


def test_a_killed_worker_ends_the_unit_and_its_restart_fires_what_was_pending_once(
    stack: SchedulerStack,
) -> None:
    target = stack.create_target(f"{stack.scheduled_topic}-target")
    first = unit(stack, "k").wait_ready(90)
    assert first.proc is not None
    pids = worker_pids(first.proc.pid)
    schedule_many(stack, target, 120, 3.0, 12.0)  # some fire before the kill, most after the restart
    wait_until(lambda: first.metric("kafka_scheduler_fired_total") >= 5, 30, "fires before the kill")
    os.kill(pids[1], signal.SIGKILL)
    wait_until(lambda: first.proc is not None and first.proc.poll() is not None, 40, "the unit to stop")
    assert first.proc.returncode == 1, first.log_tail()
    assert "worker 1" in first.log_tail() and "SIGKILL" in first.log_tail()
    assert not running(pids[0]), "the unit left its other worker running"
    assert pending_in_state(stack) > 0  # the restart has work left

    second = unit(stack, "k").wait_ready(90)  # same ids: its workers fence the dead one's at once
    tail = Tail(stack.bootstrap, target)
    tail.poll_until(lambda r: len({x.header("scheduler-fire-id") for x in r}) >= 120, 90, "120 fires")
    tail.poll_for(1.0)
    tail.close()
    assert_exactly_once(read_all(stack.bootstrap, target), 120)
    wait_until(lambda: pending_in_state(stack) == 0, 30, "state topic drained")
    assert second.stop() == 0, second.log_tail()


def test_a_sigkilled_unit_leaves_no_worker_running(stack: SchedulerStack) -> None:
    proc = unit(stack, "o").wait_ready(90)
    assert proc.proc is not None
    pids = worker_pids(proc.proc.pid)
    assert sorted(pids) == [0, 1], pids
    proc.kill()
    # Each worker sees its stdin pipe close, drains and exits within its shutdown deadline (20 s here).
    wait_until(lambda: not any(running(pid) for pid in pids.values()), 30, "the orphaned workers to exit")
    heir = stack.start_instance()  # and the group is free for the next member
    wait_until(lambda: heir.metric("kafka_scheduler_assigned_partitions") == 4, 30, "the heir owns all")
