"""B8 failover: two schedulers under steady load; SIGKILL the owner of half the partitions; measure the gap.

    python -m bench.failover [--rate 1000] [--before 6] [--after 16] [--partitions 6] [--scenario ...]

Commands arrive at `--rate` per second on every partition (due 0.5-2 s ahead). After `--before` seconds one of
the two instances (holding half the partitions) is SIGKILLed. The instance ids are pinned (i0, i1), so both are
static group members (group.instance.id). Two scenarios, each on fresh topics:
- `gone`: the victim is not restarted. The survivor takes its partitions when its session expires (6 s) and
  fences its transactional id (read from the offsets' metadata): the open transaction that pinned the state
  partitions' LSO is aborted then, not at `transaction.timeout.ms` (the stack's 10 s).
  Goal: fires resume within session.timeout.ms + 1.5 s.
- `restart`: the victim is restarted at once with the same instance id: it rejoins as the same static member
  (no rebalance, its own partitions back) and its init_transactions fences the dead producer.
  Goal: fires resume within 2 s of the kill.
Figures: time from the kill until fires resume for the killed instance's partitions (first fire of those
partitions with a fired-at after the kill, visible at the target), and the lateness spike. The baseline is the
same run's lateness before the kill. For `restart`, where the time went: the restarted process's log lines
(first line, HTTP up, partitions assigned, last partition rebuilt) in ms after the kill.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import datetime
from typing import Any

from bench.common import (
    Counter,
    closing,
    console,
    fast_producer,
    percentile,
    progress,
    save,
    schedule,
    stack,
    start_scheduler,
    table,
    uid,
    wait_ready,
)
from scheduler.codec import encode_schedule
from scheduler.partitioner import partition_for

SESSION_TIMEOUT_MS, TRANSACTION_TIMEOUT_MS = 6000, 10000
GOALS_MS = {"gone": SESSION_TIMEOUT_MS + 1500, "restart": 2000}
MILESTONES = {  # log line -> milestone of a restart
    "first log line": "",
    "http up": "metrics and health on",
    "assigned": "assigned partitions",
    "rebuilt": "rebuilt in",
}


def log_ms(line: str) -> int | None:
    """The wall-clock ms of a scheduler log line (`2026-12-03T15:35:55.752+00:00 INFO ...`), or None."""
    try:
        return int(datetime.fromisoformat(line.split(" ", 1)[0]).timestamp() * 1000)
    except ValueError:
        return None


def timeline(log_text: str, kill_ms: int) -> dict[str, int]:
    """ms after the kill of each milestone's (last for `rebuilt`, else first) log line."""
    out: dict[str, int] = {}
    for line in log_text.splitlines():
        at = log_ms(line)
        if at is None:
            continue
        for name, marker in MILESTONES.items():
            if marker in line and (name == "rebuilt" or name not in out):
                out[name] = at - kill_ms
    return out


def owned_partitions(instance: Any) -> set[int]:
    """Partitions an instance serves, from its pending gauge labels (one series per owned partition)."""
    _status, text = instance.get("/metrics")
    found = set()
    for line in text.splitlines():
        if line.startswith("kafka_scheduler_pending_schedules{") and 'partition="' in line:
            found.add(int(line.split('partition="', 1)[1].split('"', 1)[0]))
    return found


def scenario(name: str, rate: float, before_s: float, after_s: float, parts: int) -> dict[str, Any]:
    with closing(stack("failover", parts)) as st:
        target = st.create_target(uid("bench-failover-target"), parts)
        first = start_scheduler(st)
        wait_ready(first)
        second = start_scheduler(st)
        wait_ready(second)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # both members serving, each with half
            mine, theirs = owned_partitions(first), owned_partitions(second)
            if mine and theirs and len(mine | theirs) == parts and first.ready() and second.ready():
                break
            time.sleep(0.2)
        counter = Counter(target).start()
        killed = owned_partitions(second)
        producer = fast_producer(**{"linger.ms": 2})
        rng = random.Random(8)
        total_s = before_s + after_s
        start, sent, kill_ms, restarted = time.perf_counter(), 0, 0, None
        with progress() as bar:
            task = bar.add_task(f"{name}: steady load", total=int(total_s * rate))
            while (elapsed := time.perf_counter() - start) < total_s:
                if not kill_ms and elapsed >= before_s:
                    second.kill()  # SIGKILL
                    kill_ms = int(time.time() * 1000)
                    if name == "restart":  # same group.instance.id and transactional.id as the victim
                        restarted = start_scheduler(st, instance_id="i1")
                now = int(time.time() * 1000)
                while sent < int(elapsed * rate):
                    s = schedule(sent, target, now + rng.randint(500, 2000), now)
                    # to the id's own partition (murmur2), as SchedulerClient does: no forwarding
                    producer.produce(
                        st.scheduled_topic,
                        encode_schedule(s),
                        s.id.encode(),
                        partition=partition_for(s.id.encode(), parts),
                    )
                    sent += 1
                producer.poll(0)
                bar.update(task, completed=sent)
                time.sleep(0.005)
        producer.flush(30)
        counter.wait(sent, timeout_s=90, label="waiting for the last fires")
        counter.stop()
        steps = {} if restarted is None else timeline(restarted.log_path.read_text(errors="replace"), kill_ms)
        fenced = sum(i.metric("kafka_scheduler_fenced_departed_total") for i in (first, restarted) if i)
    from_killed = [s for s in counter.seen if partition_for(s.schedule_id, parts) in killed]
    resumed = min((s.visible_ms for s in from_killed if s.fired_ms > kill_ms), default=float("nan"))
    before = [s.visible_ms - s.due_ms for s in counter.seen if s.due_ms < kill_ms - 500]
    spike = [s.visible_ms - s.due_ms for s in from_killed if s.due_ms >= kill_ms - 2000]
    return {
        "scenario": name,
        "killed_partitions": sorted(killed),
        "sent": sent,
        "fired": len(counter.seen),
        "unique_fired": len({s.schedule_id for s in counter.seen}),
        "early": sum(1 for s in counter.seen if s.fired_ms < s.due_ms),
        "resume_after_kill_ms": resumed - kill_ms,
        "goal_ms": GOALS_MS[name],
        "goal_met": resumed - kill_ms <= GOALS_MS[name],
        "fenced_departed": fenced,
        "restart_timeline_ms": steps,
        "lateness_before_kill_p99_ms": percentile(before, 0.99),
        "lateness_before_kill_max_ms": max(before, default=float("nan")),
        "killed_partitions_lateness_p50_ms": percentile(spike, 0.5),
        "killed_partitions_lateness_p99_ms": percentile(spike, 0.99),
        "killed_partitions_lateness_max_ms": max(spike, default=float("nan")),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="schedules per second (all partitions)")
    parser.add_argument("--before", type=float, default=6.0, help="seconds of load before the kill")
    parser.add_argument("--after", type=float, default=16.0, help="seconds of load after the kill")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--scenario", nargs="+", choices=["gone", "restart"], default=["gone", "restart"])
    args = parser.parse_args(argv)
    console.print(
        f"B8 failover: {args.rate:,.0f}/s, kill after {args.before}s, {args.after}s more, "
        f"{args.partitions} partitions, session.timeout.ms {SESSION_TIMEOUT_MS}, "
        f"transaction.timeout.ms {TRANSACTION_TIMEOUT_MS}"
    )
    runs = [scenario(name, args.rate, args.before, args.after, args.partitions) for name in args.scenario]
    table(
        f"B8 failover at {args.rate:,.0f}/s: SIGKILL of the owner of half the partitions (ms)",
        [
            "scenario",
            "resumed after",
            "goal",
            "before p99",
            "before max",
            "spike p50",
            "spike p99",
            "spike max",
            "sent",
            "fired",
            "unique",
            "early",
        ],
        [
            [
                r["scenario"],
                r["resume_after_kill_ms"],
                f"≤ {r['goal_ms']}: {'met' if r['goal_met'] else 'NOT MET'}",
                r["lateness_before_kill_p99_ms"],
                r["lateness_before_kill_max_ms"],
                r["killed_partitions_lateness_p50_ms"],
                r["killed_partitions_lateness_p99_ms"],
                r["killed_partitions_lateness_max_ms"],
                r["sent"],
                r["fired"],
                r["unique_fired"],
                r["early"],
            ]
            for r in runs
        ],
    )
    for r in runs:
        if r["restart_timeline_ms"]:
            steps = ", ".join(f"{k} {v}" for k, v in r["restart_timeline_ms"].items())
            console.print(
                f"{r['scenario']}: after the kill (ms): {steps}; resumed {r['resume_after_kill_ms']}"
            )
        console.print(f"{r['scenario']}: departed owners fenced: {r['fenced_departed']:.0f}")
    result = {
        "rate": args.rate,
        "partitions": args.partitions,
        "session_timeout_ms": SESSION_TIMEOUT_MS,
        "transaction_timeout_ms": TRANSACTION_TIMEOUT_MS,
        "transactional_id": "<group>-<instance id>; the stack pins instance ids i0, i1 (static members)",
        "runs": runs,
    }
    save("failover", result)
    return result


if __name__ == "__main__":
    main()
