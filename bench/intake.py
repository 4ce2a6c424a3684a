"""B6 intake: commands consumed and committed into the state topic per second vs a raw consume of the same records.

    python -m bench.intake [--n 100000] [--partitions 6] [--misrouted 0.5]

N schedule commands (Avro envelopes, 100 B payloads, due in a day so nothing fires) are produced to `scheduled`
before the scheduler starts, each to its id's murmur2 partition; then one `kafka-scheduler run` process takes them
in. Rate = N / (last state record visible read_committed - /readyz answered 200). Baseline, same run: a plain
read_committed consume of the same N commands from `scheduled` to its high watermarks. A second pass on fresh
topics sends a share (`--misrouted`, default half) to another partition, as a producer on librdkafka's default
partitioner does: the scheduler forwards those to their id's partition first, and the ratio of the two passes is
the cost of forwarding. Goal: ratio >= 0.5.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Counter,
    closing,
    console,
    fast_producer,
    produce,
    progress,
    save,
    schedule,
    stack,
    start_scheduler,
    table,
    uid,
    wait_ready,
)
from bench.rebuild import raw_replay
from scheduler.codec import encode_schedule
from scheduler.partitioner import partition_for

GOAL = 0.5


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="commands (full: 1000000)")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--misrouted", type=float, default=0.5, help="share sent to the wrong partition (pass 2)"
    )
    parser.add_argument("--profile", help="run the scheduler under pyinstrument, output here (.txt or .html)")
    args = parser.parse_args(argv)
    n, parts = args.n, args.partitions
    console.print(f"B6 intake: n={n:,} commands, partitions={parts}, goal ratio >= {GOAL}")
    home = one_pass(n, parts, 0.0, args.profile)
    misrouted = one_pass(n, parts, args.misrouted, None) if args.misrouted > 0 else None
    rows = [
        ["raw read_committed consume", home["raw_count"], home["raw_s"], home["raw"], 1.0, ""],
        _row("scheduler: consumed -> state committed", home, home["raw"]),
    ]
    if misrouted is not None:
        share = f"{args.misrouted:.0%}"
        rows.append(_row(f"scheduler, {share} misrouted (forwarded first)", misrouted, home["raw"]))
    table(
        f"B6 intake of {n:,} commands (per second)",
        ["side", "records", "seconds", "records/s", "ratio", "goal"],
        rows,
    )
    ratio = home["ours"] / home["raw"]
    result = {
        "n": n,
        "partitions": parts,
        "raw_records_per_s": home["raw"],
        "raw_s": home["raw_s"],
        "scheduler_records_per_s": home["ours"],
        "scheduler_s": home["ours_s"],
        "complete": home["complete"],
        "ratio": ratio,
        "goal_ratio": GOAL,
        "goal_met": ratio >= GOAL,
    }
    if misrouted is not None:
        result["misrouted_share"] = args.misrouted
        result["misrouted_records_per_s"] = misrouted["ours"]
        result["misrouted_complete"] = misrouted["complete"]
        result["forwarding_cost"] = 1 - misrouted["ours"] / home["ours"]
        console.print(
            f"forwarding {args.misrouted:.0%} of the commands costs {result['forwarding_cost']:.0%}"
        )
    save("intake", result)
    return result


def _row(label: str, run: dict[str, Any], raw: float) -> list[Any]:
    ratio = run["ours"] / raw
    return [label, run["count"], run["ours_s"], run["ours"], ratio, "met" if ratio >= GOAL else "NOT MET"]


def one_pass(n: int, parts: int, misrouted: float, profile: str | None) -> dict[str, Any]:
    """Fresh topics, N commands (a share sent to another partition than their id's), one instance takes them."""
    rng = random.Random(n)
    with closing(stack("intake", parts)) as st:
        target = st.create_target(uid("bench-intake-target"), parts)
        producer = fast_producer()
        due = int(time.time() * 1000) + 86_400_000
        with progress() as bar:
            task = bar.add_task(f"produce commands ({misrouted:.0%} misrouted)", total=n)
            for i in range(n):
                s = schedule(i, target, due + i, due - 86_400_000)
                key = s.id.encode()
                partition = partition_for(key, parts)
                if rng.random() < misrouted:
                    partition = (partition + rng.randrange(1, parts)) % parts
                produce(producer, st.scheduled_topic, encode_schedule(s), key, partition)
                if i % 5000 == 0:
                    producer.poll(0)
                    bar.update(task, completed=i)
        assert producer.flush(60) == 0
        raw_s, raw_count = raw_replay(st.scheduled_topic, parts)
        counter = Counter(st.settings.state).start()
        instance = start_scheduler(st, Path(profile) if profile else None)
        ready = wait_ready(instance)
        complete = counter.wait(n, timeout_s=max(120.0, n / 300), label="state records committed")
        counter.stop()
        ours_s = counter.last_at - ready
    count = len(counter.seen)
    return {
        "raw_s": raw_s,
        "raw_count": raw_count,
        "raw": raw_count / raw_s,
        "count": count,
        "ours_s": ours_s,
        "ours": count / ours_s,
        "complete": complete,
    }


if __name__ == "__main__":
    main()
