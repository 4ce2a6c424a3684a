"""B6 intake: commands consumed and committed into the state topic per second vs a raw consume of the same records.

    python -m bench.intake [--n 100000] [--partitions 6]

N schedule commands (Avro envelopes, 100 B payloads, due in a day so nothing fires) are produced to `scheduled`
before the scheduler starts; then one `kafka-scheduler run` process takes them in. Rate = N / (last state record
visible read_committed - /readyz answered 200). Baseline, same run: a plain read_committed consumer reading the
same N commands from `scheduled` to its high watermarks. Goal: ratio >= 0.5.
"""

from __future__ import annotations

import argparse
import time
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

GOAL = 0.5


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="commands (full: 1000000)")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--profile", help="run the scheduler under pyinstrument, output here (.txt or .html)")
    args = parser.parse_args(argv)
    n, parts = args.n, args.partitions
    console.print(f"B6 intake: n={n:,} commands, partitions={parts}, goal ratio >= {GOAL}")
    with closing(stack("intake", parts)) as st:
        target = st.create_target(uid("bench-intake-target"), parts)
        producer = fast_producer()
        due = int(time.time() * 1000) + 86_400_000
        with progress() as bar:
            task = bar.add_task("produce commands", total=n)
            for i in range(n):
                s = schedule(i, target, due + i, due - 86_400_000)
                produce(producer, st.scheduled_topic, encode_schedule(s), s.id.encode(), i % parts)
                if i % 5000 == 0:
                    producer.poll(0)
                    bar.update(task, completed=i)
        assert producer.flush(60) == 0
        raw_s, raw_count = raw_replay(st.scheduled_topic, parts)
        counter = Counter(st.settings.state).start()
        from pathlib import Path

        instance = start_scheduler(st, Path(args.profile) if args.profile else None)
        ready = wait_ready(instance)
        complete = counter.wait(n, timeout_s=max(120.0, n / 300), label="state records committed")
        counter.stop()
        ours_s = counter.last_at - ready
    ours, raw = len(counter.seen) / ours_s, raw_count / raw_s
    ratio = ours / raw
    table(
        f"B6 intake of {n:,} commands (per second)",
        ["side", "records", "seconds", "records/s", "ratio", "goal"],
        [
            ["raw read_committed consume", raw_count, raw_s, raw, 1.0, ""],
            [
                "scheduler: consumed -> state committed",
                len(counter.seen),
                ours_s,
                ours,
                ratio,
                "met" if ratio >= GOAL else "NOT MET",
            ],
        ],
    )
    result = {
        "n": n,
        "partitions": parts,
        "raw_records_per_s": raw,
        "raw_s": raw_s,
        "scheduler_records_per_s": ours,
        "scheduler_s": ours_s,
        "complete": complete,
        "ratio": ratio,
        "goal_ratio": GOAL,
        "goal_met": ratio >= GOAL,
    }
    save("intake", result)
    return result


if __name__ == "__main__":
    main()
