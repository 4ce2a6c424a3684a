"""B2 sustained: lateness of fires while schedules arrive at a steady rate, at fractions of the B1 drain rate.

    python -m bench.sustained [--rate FIRES_PER_S] [--fractions 0.25 0.5 0.75] [--seconds 12] [--spread 0.5 3]

Commands (Avro envelopes, 100 B payloads) are produced to `scheduled` from a separate process at
`fraction * rate` per second, with due times uniformly spread over the next `spread` seconds; one
`kafka-scheduler run` process fires them. Lateness is measured two ways per fire: visible at the target
(read_committed consumer, wall clock) minus due, and the `scheduler-fired-at` header minus due. Early fires
(either figure < 0) must be 0. The mean tick transaction time comes from the scheduler's /metrics. The rate
defaults to the B1 scheduler figure in bench/results/fire.json. Goal at 0.5: visible p99 <= 50 ms, max <= 250 ms.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Counter,
    closing,
    console,
    fast_producer,
    load,
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

GOAL_P99_MS, GOAL_MAX_MS = 50.0, 250.0


def arrivals(
    scheduled: str, target: str, rate: float, total: int, spread: tuple[float, float], seed: int
) -> float:
    """Produce `total` schedules at `rate` per second, due `spread` seconds ahead; returns the rate achieved."""
    # murmur2_random, as SchedulerClient sets it: each command lands in its id's partition (librdkafka's default
    # partitioner would send most elsewhere, and the scheduler would forward them first: a transaction's hop)
    producer = fast_producer(**{"linger.ms": 2, "partitioner": "murmur2_random"})
    rng = random.Random(seed)
    lo_ms, hi_ms = int(spread[0] * 1000), int(spread[1] * 1000)
    start = time.perf_counter()
    sent = 0
    while sent < total:
        should = min(total, int((time.perf_counter() - start) * rate))
        now = int(time.time() * 1000)
        while sent < should:
            s = schedule(seed * 100_000_000 + sent, target, now + rng.randint(lo_ms, hi_ms), now)
            while True:
                try:
                    producer.produce(scheduled, encode_schedule(s), s.id.encode())
                    break
                except BufferError:
                    producer.poll(0.01)
            sent += 1
        producer.poll(0)
        time.sleep(0.002)
    producer.flush(30)
    return sent / (time.perf_counter() - start)


def txn_totals(instance: Any) -> tuple[float, float]:
    """(seconds spent in tick transactions, transactions) so far, from the scheduler's /metrics."""
    return (
        instance.metric("kafka_scheduler_transaction_seconds_sum"),
        instance.metric("kafka_scheduler_transaction_seconds_count"),
    )


def run_rate(st: Any, rate: float, seconds: float, spread: tuple[float, float], seed: int) -> dict[str, Any]:
    """One fraction: arrivals from a separate process, so the counting consumer never waits for their GIL."""
    instance = st.instances[0]
    txn_before = txn_totals(instance)
    target = st.create_target(uid("bench-sustained-target"), st.partitions)
    counter = Counter(target).start()
    total = int(rate * seconds)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        job = pool.apply_async(arrivals, (st.scheduled_topic, target, rate, total, spread, seed))
        with progress() as bar:
            task = bar.add_task(f"{rate:,.0f}/s for {seconds:.0f}s", total=total)
            while not job.ready():
                bar.update(task, completed=len(counter.seen))
                time.sleep(0.1)
        achieved = job.get()
    counter.wait(total, timeout_s=spread[1] + 60, label="waiting for the last fires")
    counter.stop()
    txn_after = txn_totals(instance)
    txn_s, txns = txn_after[0] - txn_before[0], txn_after[1] - txn_before[1]
    visible = [s.visible_ms - s.due_ms for s in counter.seen]
    fired = [float(s.fired_ms - s.due_ms) for s in counter.seen]
    return {
        "rate_target": rate,
        "rate_achieved": achieved,
        "sent": total,
        "fired": len(counter.seen),
        "visible_p50_ms": percentile(visible, 0.5),
        "visible_p99_ms": percentile(visible, 0.99),
        "visible_max_ms": max(visible, default=float("nan")),
        "fired_at_p50_ms": percentile(fired, 0.5),
        "fired_at_p99_ms": percentile(fired, 0.99),
        "fired_at_max_ms": max(fired, default=float("nan")),
        "transactions": txns,
        "mean_transaction_ms": 1000 * txn_s / txns if txns else float("nan"),
        "early": sum(1 for v, f in zip(visible, fired, strict=True) if v < 0 or f < 0),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.sustained", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rate", type=float, help="the B1 drain rate (default: from bench/results/fire.json)"
    )
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--seconds", type=float, default=12.0, help="seconds of arrivals per fraction")
    parser.add_argument("--spread", type=float, nargs=2, default=[0.5, 3.0], help="due in [a, b] s from now")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--profile", type=Path, help="run the scheduler under pyinstrument, output here")
    args = parser.parse_args(argv)
    rate = args.rate
    if rate is None:
        b1 = load("fire")
        rate = b1["scheduler"]["fires_per_s"] if b1 else 5000.0
    console.print(
        f"B2 sustained: B1 rate {rate:,.0f} fires/s, fractions {args.fractions}, {args.seconds}s each"
    )
    rows, results = [], []
    with closing(stack("sustained", args.partitions)) as st:
        wait_ready(start_scheduler(st, args.profile))
        for i, fraction in enumerate(args.fractions):
            r = run_rate(st, rate * fraction, args.seconds, tuple(args.spread), i + 1)
            r["fraction"] = fraction
            results.append(r)
            goal = ""
            if fraction == 0.5:
                ok = r["visible_p99_ms"] <= GOAL_P99_MS and r["visible_max_ms"] <= GOAL_MAX_MS
                goal = "met" if ok and r["early"] == 0 else "NOT MET"
            rows.append(
                [
                    f"{fraction:.2f}",
                    r["rate_achieved"],
                    r["fired"],
                    r["visible_p50_ms"],
                    r["visible_p99_ms"],
                    r["visible_max_ms"],
                    r["fired_at_p50_ms"],
                    r["fired_at_p99_ms"],
                    r["fired_at_max_ms"],
                    r["early"],
                    r["mean_transaction_ms"],
                    goal,
                ]
            )
    table(
        f"B2 lateness (ms) at fractions of {rate:,.0f} fires/s; goal at 0.5: p99 <= 50, max <= 250, early = 0",
        [
            "fraction",
            "sched/s",
            "fired",
            "vis p50",
            "vis p99",
            "vis max",
            "at p50",
            "at p99",
            "at max",
            "early",
            "txn ms",
            "goal",
        ],
        rows,
    )
    result = {"b1_rate": rate, "seconds": args.seconds, "spread_s": args.spread, "runs": results}
    save("sustained", result)
    return result


if __name__ == "__main__":
    main()
