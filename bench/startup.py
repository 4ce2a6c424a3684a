"""B9 start-up: `kafka-scheduler run` from exec to SERVING, phase by phase, vs a bare consumer's exec -> assignment.

    python -m bench.startup [--runs 3] [--pending 5000] [--partitions 6] [--workers 2] [--no-restart] [--no-bytecode]

Each case starts a scheduler process on fresh topics `--runs` times (SIGTERM in between, so every start joins a
group nobody holds) and reads the phases off its log (1 ms timestamps) and /readyz (polled every 10 ms):
exec -> the topic checks passed ("schedule ids live in ...") -> first assignment ("assigned partitions") -> the
last partition SERVING ("partition N rebuilt") -> /readyz 200. Cases: an empty state topic, `--pending` schedules
in it, a unit of `--workers` processes (empty state; its /readyz is ready once every worker is), and (`--restart`)
an instance with that state SIGKILLed and started again at once with the same instance id (exec of the new one ->
its phases: its join waits for the killed member's session to expire unless the member is static).
The baseline, same run, each in its own process as the scheduler is: a bare confluent-kafka consumer's exec ->
its first assignment (subscribe, join a fresh group, the rebalance callback), and `python -c pass`.
Ratio = scheduler exec -> /readyz over the bare consumer's exec -> assignment: how far from the floor we are.

Child processes write and reuse bytecode (a private PYTHONPYCACHEPREFIX), as the project's image does
(UV_COMPILE_BYTECODE=1); `--no-bytecode` compiles every module at every start instead (PYTHONDONTWRITEBYTECODE).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import (
    bootstrap,
    closing,
    console,
    preload_state,
    save,
    stack,
    start_scheduler,
    table,
    uid,
    wait_ready,
)
from bench.rebuild import ASSIGNED, REBUILT, STAMP

PHASES = {  # phase -> the log line that ends it (the first such line; `serving` takes the last)
    "checked": re.compile(STAMP + r"\bschedule ids live in partition", re.MULTILINE),
    "assigned": ASSIGNED,
    "serving": REBUILT,
}
BARE_CONSUMER = """
import sys, time, uuid
from confluent_kafka import Consumer
assigned = []
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "bench-startup-bare-" + uuid.uuid4().hex[:8]})
c.subscribe([sys.argv[2]], on_assign=lambda _c, parts: assigned.append(time.time()))
deadline = time.monotonic() + 60
while not assigned and time.monotonic() < deadline:
    c.poll(0.01)
print(repr(assigned[0]))
c.close()
"""


def child_env(bytecode: bool, cache: Path) -> dict[str, str]:
    """What every child process of this bench gets on top of os.environ: bytecode reused or never written."""
    if bytecode:
        return {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(cache)}
    return {"PYTHONDONTWRITEBYTECODE": "1"}


def _run_child(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env}  # PYTHONDONTWRITEBYTECODE="" counts as unset
    return subprocess.run(args, env=full, capture_output=True, text=True, timeout=120, check=True)


def bare_consumer(topic: str, env: dict[str, str]) -> float:
    """Seconds from exec to a bare consumer's first assignment of `topic` (fresh group), in its own process."""
    started = time.time()
    out = _run_child([sys.executable, "-c", BARE_CONSUMER, bootstrap(), topic], env)
    return float(out.stdout.strip().splitlines()[-1]) - started


def bare_python(env: dict[str, str]) -> float:
    started = time.perf_counter()
    _run_child([sys.executable, "-c", "pass"], env)
    return time.perf_counter() - started


def phases(log: str, started: float) -> dict[str, float]:
    """Seconds from exec to each phase's log line (wall clock, as the log's timestamps are)."""
    out: dict[str, float] = {}
    for name, pattern in PHASES.items():
        found = [datetime.fromisoformat(m.group(1)).timestamp() for m in pattern.finditer(log)]
        if found:
            out[name] = (max(found) if name == "serving" else min(found)) - started
    return out


def one_start(st: Any, env: dict[str, str], instance_id: str | None = None) -> dict[str, float]:
    if instance_id is None:
        # a group nobody holds: the instance stopped before was a static member (its id is set), and a clean
        # stop leaves it in the group until its session times out (docs/transactional-id.md)
        env = {**env, "KAFKA_SCHEDULER_GROUP_ID": uid("bench-startup-group")}
    started_wall, started = time.time(), time.perf_counter()
    instance = start_scheduler(st, instance_id=instance_id, **env)
    ready = wait_ready(instance, timeout_s=120) - started
    text = instance.log_path.read_text(errors="replace")
    instance.stop(timeout_s=30)
    return {**phases(text, started_wall), "ready": ready}


def restart_after_kill(st: Any, env: dict[str, str]) -> dict[str, float]:
    """An instance serving, SIGKILLed, and started again at once with its instance id (so its transactional id):
    the restart's phases. Its join waits for the killed member to leave the group (its session timeout) unless
    the group knows the member by a static id."""
    victim = start_scheduler(st, instance_id="restarted", **env)
    wait_ready(victim, timeout_s=120)
    victim.kill()
    return one_start(st, env, instance_id="restarted")


def case(name: str, st: Any, runs: int, env: dict[str, str], restart: bool = False) -> dict[str, Any]:
    samples = []
    for run in range(runs):
        console.print(f"{name}: start {run + 1} of {runs}")
        samples.append(restart_after_kill(st, env) if restart else one_start(st, env))
    keys = ["checked", "assigned", "serving", "ready"]
    medians = {
        k: statistics.median(s[k] for s in samples if k in s) for k in keys if any(k in s for s in samples)
    }
    return {"case": name, "runs": samples, "median": medians}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="starts per case (the median is printed)")
    parser.add_argument("--pending", type=int, default=5000, help="pending schedules in the small-state case")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2, help="processes of the unit case (0: skip it)")
    parser.add_argument("--no-bytecode", action="store_true", help="compile every module at every start")
    parser.add_argument(
        "--restart",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also restart an instance right after a SIGKILL, with its instance id (the issue's restart case)",
    )
    args = parser.parse_args(argv)
    cache = Path(tempfile.mkdtemp(prefix="bench-startup-pyc-"))
    env = child_env(not args.no_bytecode, cache)
    sched_env = dict(env)
    console.print(
        f"B9 start-up: {args.runs} starts per case, {args.partitions} partitions, {args.pending:,} pending in the "
        f"small case, bytecode {'off' if args.no_bytecode else 'reused'}"
    )
    _run_child(
        [sys.executable, "-c", "import scheduler.cli, scheduler.service.app, scheduler.cli.worker"], env
    )
    cases = []
    with closing(stack("startup-empty", args.partitions)) as st:
        cases.append(case("empty state", st, args.runs, sched_env))
        bare = [bare_consumer(st.scheduled_topic, env) for _ in range(args.runs)]
        if args.workers > 1:
            workers_env = {**sched_env, "KAFKA_SCHEDULER_WORKERS": str(args.workers)}
            cases.append(case(f"empty state, --workers {args.workers}", st, args.runs, workers_env))
    with closing(stack("startup-small", args.partitions)) as st:
        target = st.create_target(uid("bench-startup-target"), args.partitions)
        due = int(time.time() * 1000) + 86_400_000
        preload_state(st, target, args.pending, lambda i: due + i)
        cases.append(case(f"{args.pending:,} pending", st, args.runs, sched_env))
        if args.restart:
            name = f"{args.pending:,} pending, restart after SIGKILL"
            cases.append(case(name, st, args.runs, sched_env, restart=True))
        bare += [bare_consumer(st.scheduled_topic, env) for _ in range(args.runs)]
    python_s = statistics.median(bare_python(env) for _ in range(args.runs))
    floor = statistics.median(bare)
    rows: list[list[Any]] = [
        ["python -c pass (exec floor)", "", "", "", python_s, ""],
        ["bare consumer: exec -> assignment (baseline)", "", floor, "", "", 1.0],
    ]
    for c in cases:
        m = c["median"]
        rows.append(
            [
                f"scheduler, {c['case']}",
                m.get("checked", float("nan")),
                m.get("assigned", float("nan")),
                m.get("serving", float("nan")),
                m["ready"],
                m["ready"] / floor,
            ]
        )
    table(
        f"B9 start-up, exec -> phase (s, median of {args.runs}; a unit's phases are its slowest worker's)",
        ["case", "checks passed", "assigned", "serving", "/readyz", "ratio to baseline"],
        rows,
    )
    result = {
        "partitions": args.partitions,
        "pending": args.pending,
        "runs": args.runs,
        "bytecode": not args.no_bytecode,
        "python_exec_s": python_s,
        "bare_consumer_assignment_s": bare,
        "bare_consumer_median_s": floor,
        "cases": cases,
    }
    save("startup", result)
    return result


if __name__ == "__main__":
    main()
