"""Burst: N schedules due in one millisecond drained by a serving scheduler, alone and under a steady stream.

    python -m bench.burst [--n 100000] [--rate 1000] [--partitions 6] [--spread 0.2 0.6]

(a) Baseline: N state records (100 B payloads) all due at one instant T are pre-loaded, one
`kafka-scheduler run` process rebuilds them and is serving (and idle) well before T; at T they fire. Fires per
second = N / (last - first burst fire visible at the target, read_committed).
(b) The same burst, plus a steady stream of `--rate` schedules per second produced to `scheduled` from a separate
process from T - 1 s until the burst has drained, each due `spread` seconds after it was sent (so most come due
while the burst drains). Burst drain fires/s (goal: >= 0.8 of (a)), and the stream's visible lateness (visible at
the target minus due) p50 / p99 / max (goal: p99 <= 100 ms). Early fires (visible or fired-at before due) must be
0 in both. Both sides run in the same invocation on fresh topics, so the ratio is the figure to compare.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from typing import Any

from bench.common import (
    Counter,
    Seen,
    add_env_option,
    closing,
    console,
    percentile,
    preload_state,
    save,
    scheduler_env,
    stack,
    start_scheduler,
    table,
    uid,
    wait_ready,
)
from bench.sustained import arrivals, cpu_seconds

GOAL_RATIO, GOAL_P99_MS = 0.8, 100.0
STREAM_SEED = 7  # stream ids are s-7000..., burst ids s-0000... (bench.common.schedule numbers them)


def is_stream(seen: Seen) -> bool:
    return seen.schedule_id.startswith(b"s-") and int(seen.schedule_id[2:] or b"0") >= 100_000_000


def run(
    n: int, partitions: int, rate: float, spread: tuple[float, float], env: dict[str, str] | None = None
) -> dict[str, Any]:
    """One side: rate 0 is the baseline (the burst alone)."""
    with closing(stack("burst", partitions)) as st:
        target = st.create_target(uid("bench-burst-target"), partitions)
        lead_s = 8.0 + n / 10_000  # the rebuild of N records must end well before T
        burst_at = int(time.time() * 1000 + lead_s * 1000)
        preload_state(st, target, n, lambda _i: burst_at)
        counter = Counter(target).start()
        instance = start_scheduler(st, **(env or {}))
        ready = wait_ready(instance)
        idle_before_s = burst_at / 1000 - time.time()
        if idle_before_s < 1.0:
            console.print(f"[yellow]ready only {idle_before_s:.1f}s before the burst: raise the lead")
        sent = 0
        achieved = 0.0
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            job = None
            if rate > 0:
                time.sleep(max(0.0, burst_at / 1000 - 1.0 - time.time()))
                seconds = 1.0 + 1.5 * n / 20_000 + spread[1]  # the stream outlasts the burst's drain
                sent = int(rate * seconds)
                job = pool.apply_async(
                    arrivals, (st.scheduled_topic, target, rate, sent, spread, STREAM_SEED)
                )
            time.sleep(max(0.0, burst_at / 1000 - time.time()))
            machine, wall = cpu_seconds(), time.perf_counter()  # the machine's busy cores while it drains
            complete = counter.wait(n + sent, timeout_s=lead_s + 60 + n / 2000, label="fires")
            machine_cpu = (cpu_seconds() - machine) / (time.perf_counter() - wall)
            if job is not None:
                achieved = job.get()
        counter.stop()
        burst = [s for s in counter.seen if not is_stream(s)]
        stream = [s for s in counter.seen if is_stream(s)]
        visible = sorted(s.visible_ms for s in burst)
        drain_s = (visible[-1] - visible[0]) / 1000 if len(visible) > 1 else float("nan")
        lateness = [s.visible_ms - s.due_ms for s in stream]
        during = [
            s.visible_ms - s.due_ms for s in stream if visible and visible[0] <= s.due_ms <= visible[-1]
        ]
        return {
            "n": n,
            "rate": rate,
            "rate_achieved": achieved,
            "complete": complete,
            "ready_before_burst_s": idle_before_s,
            "ready_perf": ready,
            "burst_fired": len(burst),
            "burst_first_late_ms": visible[0] - burst_at if visible else float("nan"),
            "burst_drain_s": drain_s,
            "burst_fires_per_s": len(burst) / drain_s if drain_s else float("nan"),
            "stream_sent": sent,
            "stream_fired": len(stream),
            "stream_due_during_drain": len(during),
            "stream_p50_ms": percentile(lateness, 0.5),
            "stream_p99_ms": percentile(lateness, 0.99),
            "stream_max_ms": max(lateness, default=float("nan")),
            "stream_during_drain_p99_ms": percentile(during, 0.99),
            # the scheduler's share of it: its fired-at header (the tick's clock) minus due
            "stream_fired_at_p50_ms": percentile([float(s.fired_ms - s.due_ms) for s in stream], 0.5),
            "stream_fired_at_p99_ms": percentile([float(s.fired_ms - s.due_ms) for s in stream], 0.99),
            # the latest stream fires: (due, fired-at, visible) in ms after the burst instant
            "stream_latest": [
                (s.due_ms - burst_at, s.fired_ms - burst_at, round(s.visible_ms - burst_at))
                for s in sorted(stream, key=lambda s: s.due_ms - s.visible_ms)[:5]
            ],
            "early": sum(1 for s in counter.seen if s.visible_ms < s.due_ms or s.fired_ms < s.due_ms),
            "machine_cpu": machine_cpu,
            "transactions": instance.metric("kafka_scheduler_transactions_total"),
        }


def row(label: str, side: dict[str, Any], ratio: float, goal: str) -> list[Any]:
    stream = [side[k] for k in ("stream_fired", "stream_p50_ms", "stream_p99_ms", "stream_max_ms")]
    figures = [side["burst_fires_per_s"], ratio, side["burst_drain_s"], *stream, side["early"]]
    return [label, *figures, side["machine_cpu"], goal]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.burst", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="schedules due in the same millisecond")
    parser.add_argument("--rate", type=float, default=1000.0, help="the stream's schedules per second")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--spread", type=float, nargs=2, default=[0.2, 0.6], help="stream due in [a, b] s")
    add_env_option(parser)
    args = parser.parse_args(argv)
    env = scheduler_env(args)
    console.print(
        f"Burst: n={args.n:,} due at one instant; stream {args.rate:,.0f}/s; goal ratio >= {GOAL_RATIO}"
    )
    alone = run(args.n, args.partitions, 0.0, tuple(args.spread), env)
    mixed = run(args.n, args.partitions, args.rate, tuple(args.spread), env)
    ratio = mixed["burst_fires_per_s"] / alone["burst_fires_per_s"]
    ok = (
        ratio >= GOAL_RATIO and mixed["stream_p99_ms"] <= GOAL_P99_MS and alone["early"] + mixed["early"] == 0
    )
    table(
        f"Burst of {args.n:,} due at one instant (fires/s and lateness in ms, read_committed at the target)",
        [
            "side",
            "burst fires/s",
            "ratio",
            "drain s",
            "stream fired",
            "p50",
            "p99",
            "max",
            "early",
            "machine cores busy",
            "goal",
        ],
        [
            row("(a) burst alone", alone, 1.0, ""),
            row("(b) burst + stream", mixed, ratio, "met" if ok else "NOT MET"),
        ],
    )
    result = {
        "n": args.n,
        "partitions": args.partitions,
        "env": env,
        "goal_ratio": GOAL_RATIO,
        "goal_p99_ms": GOAL_P99_MS,
        "alone": alone,
        "with_stream": mixed,
        "ratio": ratio,
        "goal_met": ok,
    }
    save("burst", result)
    return result


if __name__ == "__main__":
    main()
