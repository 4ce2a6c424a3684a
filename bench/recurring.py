"""B10 recurring: what an occurrence of a recurring schedule costs against a one-time fire, in the same run.

    python -m bench.recurring [--n 50000] [--partitions 6] [--repeat 3]

Like B1 (bench/fire.py): N state records, all due, are written straight into a fresh state topic and one
`kafka-scheduler run` process drains them; fires per second = N / (last - first fire visible at the target,
read_committed). Three shapes, alternating, on the same broker: one-time schedules (the baseline: each fire writes
a tombstone), `every` 1 h recurring schedules and `cron "0 * * * *"` recurring schedules (each occurrence writes
the schedule's next state record instead, in the same transaction). Cost ratio = one-time fires/s / recurring
fires/s (1.0: an occurrence costs what a one-time fire does). Goal: <= 1.2 (issue 16).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    Counter,
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
from scheduler.model import Recurrence, Schedule

GOAL = 1.2  # recurring occurrence cost / one-time fire cost (issue 16)
HOUR_MS = 3_600_000


def shapes(due: int) -> dict[str, Callable[[Schedule], Schedule] | None]:
    """The three shapes; a recurring one's armed occurrence is `due` (the scheduler fires it and arms the next)."""
    every = Recurrence(every_ms=HOUR_MS, starts_at=due, occurrence_ms=due)
    cron = Recurrence(cron="0 * * * *", occurrence_ms=due)
    return {
        "one-time": None,
        "every 1h": lambda s: dataclasses.replace(s, recurrence=every),
        "cron hourly": lambda s: dataclasses.replace(s, recurrence=cron),
    }


def drain(n: int, partitions: int, shape: str, profile: Path | None = None) -> dict[str, Any]:
    with closing(stack("recurring", partitions)) as st:
        target = st.create_target(uid("bench-recurring-target"), partitions)
        # on a whole hour a little in the past (so the cron shape's occurrence is real), within the missed grace
        now = int(time.time() * 1000)
        due = now - 5_000
        if shape == "cron hourly":
            due = now // HOUR_MS * HOUR_MS
        preload_state(st, target, n, lambda _i: due, shape=shapes(due)[shape])
        counter = Counter(target).start()
        # a grace past the due: an occurrence a few seconds old fires as on time (the missed path is not measured)
        instance = start_scheduler(st, profile, KAFKA_SCHEDULER_MISSED_GRACE_MS=str(2 * HOUR_MS))
        wait_ready(instance)
        complete = counter.wait(n, timeout_s=max(120.0, n / 500), label=f"{shape} fires")
        counter.stop()
        occurrences = instance.metric("kafka_scheduler_occurrences_total")
        return {
            "shape": shape,
            "fired": len(counter.seen),
            "complete": complete,
            "first_to_last_s": counter.last_at - counter.first_at,
            "fires_per_s": len(counter.seen) / (counter.last_at - counter.first_at),
            "occurrences_metric": occurrences,
        }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.recurring", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="due schedules per drain")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the three shapes, alternating")
    parser.add_argument(
        "--profile", type=Path, help="run the scheduler of one shape (--profile-shape) under pyinstrument"
    )
    parser.add_argument("--profile-shape", default="every 1h", choices=list(shapes(0)))
    args = parser.parse_args(argv)
    console.print(
        f"B10 recurring: n={args.n:,} partitions={args.partitions} repeat={args.repeat} goal<={GOAL}"
    )
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in shapes(0)}
    for _ in range(args.repeat):
        for name, results in runs.items():
            results.append(
                drain(args.n, args.partitions, name, args.profile if name == args.profile_shape else None)
            )
    base = statistics.median(r["fires_per_s"] for r in runs["one-time"])
    rows = []
    result: dict[str, Any] = {"n": args.n, "partitions": args.partitions, "goal": GOAL, "runs": runs}
    for name, results in runs.items():
        rate = statistics.median(r["fires_per_s"] for r in results)
        cost = base / rate
        result[name] = {"fires_per_s": rate, "cost_ratio": cost}
        verdict = "" if name == "one-time" else ("met" if cost <= GOAL else "NOT MET")
        rows.append([name, ", ".join(f"{r['fires_per_s']:,.0f}" for r in results), rate, cost, verdict])
    table(
        "B10: recurring occurrence vs one-time fire (same run)",
        ["shape", "fires/s per round", "median fires/s", "cost ratio", f"goal <= {GOAL}"],
        rows,
    )
    save("recurring", result)
    return result


if __name__ == "__main__":
    main()
