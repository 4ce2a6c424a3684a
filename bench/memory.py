"""B4 memory: bytes per pending schedule the due index holds beyond the state records' own bytes, judged by RSS.

    python -m bench.memory [--n 1000000] [--partitions 6] [--no-baseline]      (--n 10000000: the 10M figure)

In process, no broker. Each index kind is measured in a child process of its own (a fresh heap, so memory freed by
one cannot hide the other's growth): it puts N real `encode_state` records (100 B payloads, dues spread over a day
in pseudo-random order) into `--partitions` indexes, and reports its RSS growth (/proc/self/statm: tracemalloc
cannot see native allocations) divided by N, minus the mean state record length. The same-run baseline is the
Python index the scheduler used before issue 14 (bench/python_due_index.py, vendored for this), measured the same
way. The native index's own account of its parts (`DueIndex.memory()`) is printed beside it. Goal: <= 48 B.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import time
from collections.abc import Callable
from typing import Any

from bench.common import console, progress, save, schedule, table
from bench.python_due_index import PythonDueIndex
from scheduler.codec import encode_state
from scheduler.service.index import DueIndex

GOAL = 48.0
PAGE = os.sysconf("SC_PAGE_SIZE")
NATIVE, PYTHON = "native DueIndex", "Python DueIndex (before issue 14, baseline)"
KINDS: dict[str, Callable[[], Any]] = {NATIVE: DueIndex, PYTHON: PythonDueIndex}


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def one(name: str, n: int, partitions: int) -> dict[str, Any]:
    """In a child process: RSS growth while `partitions` indexes of kind `name` take n records in total."""
    now = int(time.time() * 1000)
    encode_state(schedule(0, "bench-target", now, now), 0)  # warm the codec before the baseline reading
    gc.collect()
    before = rss()
    indexes = [KINDS[name]() for _ in range(partitions)]
    record_bytes = 0
    started = time.perf_counter()
    with progress() as bar:
        task = bar.add_task(name, total=n)
        for i in range(n):
            s = schedule(i, "bench-target", now + (i * 7919) % 86_400_000, now)
            record = encode_state(s, i)
            record_bytes += len(record)
            indexes[i % partitions].put(s.id.encode(), record)
            if i % 50_000 == 0:
                bar.update(task, completed=i)
    seconds = time.perf_counter() - started
    gc.collect()
    grown = rss() - before
    assert sum(len(ix) for ix in indexes) == n and all(ix.next_due_ms() is not None for ix in indexes)
    started = time.perf_counter()
    overdue = sum(len(ix.due(now + 3_600_000, 1000)) for ix in indexes)
    windows = [ix.count_due_within(now) for ix in indexes]
    queried = time.perf_counter() - started
    out = {
        "rss_growth": grown,
        "rss_total": rss(),
        "record_bytes": record_bytes,
        "per_schedule": grown / n,
        "beyond_records": (grown - record_bytes) / n,
        "build_s": seconds,
        "query_s": queried,
        "due_within_24h": sum(w["24h"] for w in windows),
        "due_sample": overdue,
    }
    if name == NATIVE:
        parts: dict[str, int] = {}
        for ix in indexes:
            for key, value in ix.memory().items():
                parts[key] = parts.get(key, 0) + value
        out["accounted"] = parts
        held = parts["arena_used"] + parts["table"] + parts["order"] - parts["record_bytes"]
        out["accounted_beyond_records"] = held / n
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--n", type=int, default=1_000_000, help="pending schedules (10000000 for the 10M figure)"
    )
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the Python index (it needs ~5 GB at 10M)"
    )
    args = parser.parse_args(argv)
    n, parts = args.n, args.partitions
    console.print(f"B4 memory: n={n:,} pending schedules in {parts} partitions, 100 B payloads")
    result: dict[str, Any] = {"n": n, "partitions": parts, "goal_bytes": GOAL}
    spawn = multiprocessing.get_context("spawn")
    for name in [NATIVE] if args.no_baseline else [NATIVE, PYTHON]:
        with spawn.Pool(1) as pool:
            result[name] = pool.apply(one, (name, n, parts))
    ours = result[NATIVE]
    result["goal_met"] = ours["beyond_records"] <= GOAL
    result["beyond_state_record_bytes"] = ours["beyond_records"]  # the names bench.compare reads
    result["rss_per_schedule"] = ours["per_schedule"]
    rows = []
    for name in KINDS:
        if name in result:
            r = result[name]
            record = r["record_bytes"] / n
            rows.append(
                [name, record, r["per_schedule"], r["beyond_records"], r["rss_total"] / 2**20, r["build_s"]]
            )
    if PYTHON in result:
        result["ratio_to_python"] = ours["beyond_records"] / result[PYTHON]["beyond_records"]
    verdict = "met" if result["goal_met"] else "NOT MET"
    rows.append([f"goal: native beyond the records <= {GOAL:.0f} B", "", "", verdict, "", ""])
    table(
        f"B4 RSS per pending schedule at {n:,} pending",
        ["index", "record B", "RSS B", "RSS beyond the records B", "process RSS MiB", "build s"],
        rows,
    )
    acc = ours["accounted"]
    console.print(
        "native index's own account, per schedule: "
        + ", ".join(f"{k} {v / n:.1f} B" for k, v in acc.items() if k != "arena_chunks")
        + f"; beyond the records {ours['accounted_beyond_records']:.1f} B; {acc['arena_chunks']} arena chunks"
    )
    save("memory", result)
    return result


if __name__ == "__main__":
    main()
