"""B3 rebuild: time from scheduler start to /readyz vs a raw read_committed replay of the same state topic.

    python -m bench.rebuild [--n 200000] [--partitions 6]

The state topic holds N pending schedules (due in a day, 100 B payloads) plus N/10 ids written and then
tombstoned (so the topic holds more records than schedules, as an uncompacted one does). Baselines, same run:
a plain read_committed consumer replaying the topic to its high watermarks (and again keeping every record in a
dict, the least work any Python index does per record), and the start-to-ready time of a
scheduler on an empty state topic (process start, imports, group join). Goal: start-to-ready / raw <= 1.2.
"""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from bench.common import (
    bootstrap,
    closing,
    console,
    preload_state,
    progress,
    save,
    stack,
    start_scheduler,
    table,
    uid,
    wait_ready,
)

GOAL = 1.2
REBUILT = re.compile(r"partition \d+ rebuilt in ([0-9.]+)s: (\d+) state records replayed, (\d+) pending")


def raw_replay(topic: str, partitions: int, keep: bool = False) -> tuple[float, int]:
    """Seconds from creating a read_committed consumer to position >= high watermark on every partition.

    keep: also hold every record in a dict (key -> value, tombstones deleted), the least any index must do.
    """
    kept: dict[bytes, bytes] = {}
    start = time.perf_counter()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap(),
            "group.id": uid("bench-replay"),
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
            "queued.max.messages.kbytes": 262144,
        }
    )
    parts = [TopicPartition(topic, p) for p in range(partitions)]
    ends = {tp.partition: consumer.get_watermark_offsets(tp, 10, False)[1] for tp in parts}
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    count = 0
    with progress() as bar:
        task = bar.add_task("raw replay", total=sum(ends.values()))
        while True:
            for msg in consumer.consume(10_000, 0.05):
                if msg.error() is None:
                    count += 1
                    if keep:
                        value = msg.value()
                        if value is None:
                            kept.pop(msg.key(), None)
                        else:
                            kept[msg.key()] = value
            bar.update(task, completed=count)
            positions = consumer.position(parts)
            if all(tp.offset >= ends[tp.partition] for tp in positions):
                break
    elapsed = time.perf_counter() - start
    consumer.close()
    return elapsed, count


def start_to_ready(st: Any) -> tuple[float, dict[str, int | float]]:
    started = time.perf_counter()
    instance = start_scheduler(st)
    ready = wait_ready(instance)
    replay_s, replayed, pending = 0.0, 0, 0
    for match in REBUILT.finditer(instance.log_path.read_text(errors="replace")):
        replay_s = max(replay_s, float(match.group(1)))
        replayed += int(match.group(2))
        pending += int(match.group(3))
    return ready - started, {"slowest_partition_s": replay_s, "replayed": replayed, "pending": pending}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.rebuild", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="pending schedules (full: 1000000)")
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args(argv)
    console.print(f"B3 rebuild: n={args.n:,} pending, partitions={args.partitions}, goal ratio <= {GOAL}")
    with closing(stack("rebuild-empty", args.partitions)) as empty:
        empty_s, _ = start_to_ready(empty)
    with closing(stack("rebuild", args.partitions)) as st:
        target = st.create_target(uid("bench-rebuild-target"), args.partitions)
        due = int(time.time() * 1000) + 86_400_000
        records = preload_state(st, target, args.n, lambda i: due + i, extra_tombstones=args.n // 10)
        raw_s, raw_count = raw_replay(st.settings.state, args.partitions)
        dict_s, _ = raw_replay(st.settings.state, args.partitions, keep=True)
        ours_s, info = start_to_ready(st)
    ratio = ours_s / raw_s
    table(
        f"B3 rebuild: {records:,} state records, {args.n:,} pending",
        ["measure", "seconds", "records", "ratio"],
        [
            ["raw read_committed replay to HWM", raw_s, raw_count, 1.0],
            ["raw replay into a dict (a Python floor)", dict_s, raw_count, dict_s / raw_s],
            ["scheduler start -> /readyz", ours_s, info["replayed"], ratio],
            ["  of which slowest partition rebuild", info["slowest_partition_s"], "", ""],
            ["scheduler start -> /readyz, empty state", empty_s, 0, ""],
            ["goal: ratio <= 1.2", "", "", "met" if ratio <= GOAL else "NOT MET"],
        ],
    )
    result = {
        "n_pending": args.n,
        "state_records": records,
        "partitions": args.partitions,
        "raw_replay_s": raw_s,
        "raw_records": raw_count,
        "raw_replay_into_dict_s": dict_s,
        "start_to_ready_s": ours_s,
        "empty_start_to_ready_s": empty_s,
        "scheduler": info,
        "ratio": ratio,
        "goal_ratio": GOAL,
        "goal_met": ratio <= GOAL,
    }
    save("rebuild", result)
    return result


if __name__ == "__main__":
    main()
