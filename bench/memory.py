"""B4 memory: bytes held per pending schedule by the due index, beyond the 100 B payload, vs a naive index.

    python -m bench.memory [--n 200000] [--partitions 6]

In process, no broker: N real `encode_state` records (100 B payloads) are put into `--partitions` DueIndex
instances, and the memory they retain is measured as a tracemalloc delta and as an RSS delta (/proc/self/statm),
each divided by N minus the payload bytes. The naive baseline holds the same records in a heap of
(due, id, record) tuples plus a dict id -> record, measured the same way. Goal: <= 150 B per schedule.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import multiprocessing
import os
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from bench.common import PAYLOAD, console, progress, save, schedule, table
from scheduler.codec import encode_state, peek_due_ms
from scheduler.service.index import DueIndex

GOAL = 150.0
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class Naive:
    """A heap of (due, id, record) plus a dict: what one writes first."""

    def __init__(self) -> None:
        self.heap: list[tuple[int, bytes, bytes]] = []
        self.records: dict[bytes, bytes] = {}

    def put(self, sid: bytes, record: bytes) -> None:
        self.records[sid] = record
        heapq.heappush(self.heap, (peek_due_ms(record), sid, record))


def measure(make: Callable[[], Any], n: int, partitions: int, traced: bool, label: str) -> tuple[float, Any]:
    """Bytes retained per schedule by `partitions` indexes holding n records in total."""
    now = int(time.time() * 1000)
    gc.collect()
    if traced:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = rss()
    indexes = [make() for _ in range(partitions)]
    with progress() as bar:
        task = bar.add_task(label, total=n)
        for i in range(n):
            s = schedule(i, "bench-target", now + (i * 7919) % 86_400_000, now)
            indexes[i % partitions].put(s.id.encode(), encode_state(s, i))
            if i % 20_000 == 0:
                bar.update(task, completed=i)
    gc.collect()
    if traced:
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    else:
        after = rss()
    return (after - before) / n, indexes


KINDS: dict[str, Callable[[], Any]] = {"DueIndex": DueIndex, "naive heap + dict": Naive}


def one(name: str, n: int, partitions: int, traced: bool) -> float:
    per_schedule, indexes = measure(
        KINDS[name], n, partitions, traced, f"{name} ({'traced' if traced else 'RSS'})"
    )
    if isinstance(indexes[0], DueIndex):
        assert all(ix.next_due_ms() is not None for ix in indexes)
    return per_schedule


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="pending schedules (full: 1000000)")
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args(argv)
    n, parts = args.n, args.partitions
    now = int(time.time() * 1000)
    record_len = len(encode_state(schedule(0, "bench-target", now, now), 0))
    payload = len(PAYLOAD)
    console.print(f"B4 memory: n={n:,}, {parts} partitions, state record {record_len} B, payload {payload} B")
    rows, result = [], {"n": n, "partitions": parts, "record_bytes": record_len, "payload_bytes": payload}
    spawn = multiprocessing.get_context("spawn")  # a fresh heap per measurement, or freed arenas hide RSS
    for name in KINDS:
        with spawn.Pool(1) as pool:
            traced = pool.apply(one, (name, n, parts, True))
        with spawn.Pool(1) as pool:
            resident = pool.apply(one, (name, n, parts, False))
        beyond_traced, beyond_rss = traced - payload, resident - payload
        rows.append([name, traced, beyond_traced, resident, beyond_rss, traced - record_len - 33])
        result[name] = {
            "traced_per_schedule": traced,
            "traced_beyond_payload": beyond_traced,
            "rss_per_schedule": resident,
            "rss_beyond_payload": beyond_rss,
            "traced_beyond_state_record_object": traced - record_len - 33,
        }
    ours = result["DueIndex"]["traced_beyond_payload"]
    result["goal_bytes"] = GOAL
    result["goal_met"] = ours <= GOAL
    result["ratio_to_naive"] = ours / result["naive heap + dict"]["traced_beyond_payload"]
    rows.append(
        ["goal: DueIndex beyond payload <= 150 B", "", "met" if ours <= GOAL else "NOT MET", "", "", ""]
    )
    table(
        f"B4 bytes per pending schedule at {n:,} pending ({record_len} B state records, 100 B payloads)",
        [
            "index",
            "traced B",
            "traced beyond payload",
            "RSS B",
            "RSS beyond payload",
            "beyond the record object",
        ],
        rows,
    )
    save("memory", result)
    return result


if __name__ == "__main__":
    main()
