"""The recurring engine's cost per step (no Kafka): `every`, `cron` on a cache hit and on a miss, and after a long
gap, against a same-run baseline: one state record's `encode_state` + `decode_state` round trip (what a fire
costs the scheduler anyway for its state write).

    .venv/bin/python -m bench.recurring_engine [--n 20000]

A cache hit is a million schedules sharing "0 2 * * *": the first to fire computes the next night, the rest
look it up. A miss is an expression/instant nobody asked for yet (one cronsim step, a parse included).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from scheduler import _cron
from scheduler.codec import decode_state, encode_state
from scheduler.model import Recurrence, Schedule
from scheduler.recurring import arm, step

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000


def per_call_us(fn: Callable[[int], object], n: int) -> float:
    best = float("inf")
    for _ in range(5):  # best of 5: the machine is shared
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="steps per measurement")
    n = parser.parse_args().n
    kw = {"grace_ms": 60_000, "catch_up_ms": DAY, "limit": 100}

    sched = Schedule("invoice-job", "target", T0, b"x" * 100, b"key")
    blob = encode_state(sched, 42)
    baseline = per_call_us(lambda i: decode_state(encode_state(sched, 42)), n)
    empty = per_call_us(lambda i: None, n)
    del blob

    every, _ = arm(Recurrence(every_ms=1000), T0)
    on_time = per_call_us(lambda i: step(every, T0, T0 + 5, **kw), n)

    cron, _ = arm(Recurrence(cron="0 2 * * *", timezone="Europe/Paris"), T0)
    step(cron, cron.occurrence_ms, cron.occurrence_ms + 5, **kw)  # warm: the next night is now cached
    hit = per_call_us(lambda i: step(cron, cron.occurrence_ms, cron.occurrence_ms + 5, **kw), n)

    def miss(i: int) -> object:
        _cron.next_after.cache_clear()
        return step(cron, cron.occurrence_ms, cron.occurrence_ms + 5, **kw)

    missed = per_call_us(miss, max(n // 10, 100))
    gap = per_call_us(lambda i: step(cron, cron.occurrence_ms, cron.occurrence_ms + 365 * DAY, **kw), 50)
    every_gap = per_call_us(lambda i: step(every, T0, T0 + 365 * DAY, **kw), n)

    print(f"baseline  encode_state + decode_state   {baseline:8.2f} µs   (empty loop {empty:.2f} µs)")
    for label, us in [
        ("every     on time", on_time),
        ("every     after a year down (latest)", every_gap),
        ('cron      "0 2 * * *" Paris, cache hit', hit),
        ('cron      "0 2 * * *" Paris, cache miss', missed),
        ("cron      after a year down (latest)", gap),
    ]:
        print(f"{label:40s}{us:8.2f} µs   {us / baseline:5.2f}x baseline")


if __name__ == "__main__":
    main()
