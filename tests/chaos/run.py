"""One chaos run: `python -m tests.chaos.run --seed N --schedules M --instances K --partitions P --duration S`.

Fresh topics on the broker (KAFKA_BOOTSTRAP_SERVERS, or a private one with --broker-restarts), K supervised
instances, the seeded generator and nemesis for S seconds, then quiesce (no more faults, every instance back
and rebuilt, every due schedule fired, group offsets at the end), dump every topic and run the checker.
`--recurring N` adds N recurring schedules (tests/chaos/recurring_load.py) and an echo consumer (the consumer
framework) that reports their occurrences done; the checker judges them per occurrence (tests/chaos/recurring.py).
Exit 0 on pass, 1 on any anomaly, 2 if inconclusive (faults hit no transaction).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, OffsetSpec

from tests.chaos.checker import check, dump, record_dict
from tests.chaos.generator import BIG_TARGET_MAX, HUGE_TARGET_MAX, STATE_MAX, EdgeLoad, Generator
from tests.chaos.harness import BrokerControl, EchoConsumer, Events, Nemesis, Supervisor
from tests.scheduler_proc import SchedulerStack

__all__ = ["ChaosConfig", "main", "run_chaos"]

SESSION_TIMEOUT_MS = 6000


@dataclass
class ChaosConfig:
    seed: int
    schedules: int = 2000
    instances: int = 3
    partitions: int = 6
    duration_s: float = 60.0
    bootstrap: str | None = None
    run_dir: Path | None = None
    kill_every_s: tuple[float, float] = (10.0, 30.0)
    zombies: int = 1
    storms: int = 1
    broker_restarts: int = 0
    twins: int = 0
    failpoint_probability: float = 0.7
    failpoint_max_hit: int = 40
    quiesce_timeout_s: float = 240.0
    burst: int = 0  # F23: schedules due in one millisecond
    burst_at: float = (
        0.5  # ... at this fraction of the produce window (>= 1: every create before it is eligible)
    )
    oversize: bool = False  # F17: four payload sizes against target, state and producer limits
    doomed: bool = False  # F18: a target deleted half-way through
    misrouted: float = 0.25  # share of commands sent with librdkafka's default partitioner (forwarded home)
    recurring: int = (
        0  # recurring schedules (every, after, paused and resumed, replaced) and an echo consumer
    )


def _pending_total(supervisor: Supervisor) -> float | None:
    total = 0.0
    for slot in supervisor.live():
        if slot.proc is None or not slot.proc.ready():
            return None
        _status, text = slot.proc.get("/metrics")
        for line in str(text).splitlines():
            if line.startswith("kafka_scheduler_pending_schedules{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def _lag(admin: AdminClient, group: str, topic: str, partitions: int) -> int:
    request = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}  # type: ignore[no-untyped-call]
    ends = {tp.partition: f.result(timeout=30).offset for tp, f in admin.list_offsets(request).items()}
    result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(
        timeout=30
    )
    committed = {tp.partition: tp.offset for tp in result.topic_partitions}
    return sum(end - max(0, committed.get(p, 0)) for p, end in ends.items())


def _quiesce(
    cfg: ChaosConfig, stack: SchedulerStack, supervisor: Supervisor, gen: Generator, events: Events
) -> bool:
    deadline = time.monotonic() + cfg.quiesce_timeout_s
    calm = 0
    while time.monotonic() < deadline:
        time.sleep(1.0)
        if time.time() * 1000 < gen.last_due_ms + 1000:
            continue
        try:
            lag = _lag(stack.admin(), stack.group, stack.scheduled_topic, cfg.partitions)
            pending = _pending_total(supervisor)
        except Exception as exc:  # a broker just restarted: try again
            events.add(event="quiesce_probe_failed", error=str(exc))
            stack._admin = None  # stale metadata after a broker restart (FENCED_LEADER_EPOCH): a fresh client
            continue
        ready = len(supervisor.live()) >= cfg.instances
        calm = calm + 1 if (lag == 0 and pending == 0 and ready) else 0
        if calm >= 3:  # the pending snapshot is refreshed every 2 s
            events.add(event="quiesced")
            return True
    events.add(event="quiesce_timeout")
    return False


class DoomedTarget:
    """F18: a target topic tailed read_committed from the start and deleted at `delete_ms`; what the tail saw is
    written as that topic's dump (the topic is gone when the checker dumps the others)."""

    def __init__(self, stack: SchedulerStack, events: Events, delete_ms: int) -> None:
        self.topic = stack.create_target(f"{stack.scheduled_topic}-doomed", 3)
        self._stack = stack
        self._events = events
        self._delete_ms = delete_ms
        self._records: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._tail, name="doomed-tail", daemon=True),
            threading.Thread(target=self._delete, name="doomed-delete", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _tail(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self._stack.bootstrap,
                "group.id": f"chaos-doomed-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "topic.metadata.refresh.interval.ms": 1000,
                "log_level": 0,
            }
        )
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(3)])
        try:
            while not self._stop.is_set():
                for msg in consumer.consume(500, 0.2):
                    if msg.error() is None:
                        self._records.append(record_dict(msg))
        finally:
            consumer.close()

    def _delete(self) -> None:
        self._stop.wait(max(0.0, (self._delete_ms - time.time() * 1000) / 1000))
        if self._stop.is_set():
            return
        self._stack.admin().delete_topics([self.topic])[self.topic].result(timeout=60)
        self._events.add(fault="target_deleted", topic=self.topic)
        time.sleep(5.0)  # the tail drains what was fetched before the deletion
        self._stop.set()

    def write(self, run_dir: Path) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)
        for iso in ("committed", "uncommitted"):
            with (run_dir / f"topic.target.{self.topic}.{iso}.jsonl").open("w") as fh:
                for rec in self._records:
                    fh.write(json.dumps(rec) + "\n")


def _set_max_message(stack: SchedulerStack, topic: str, size: int) -> None:
    entry = ConfigEntry("max.message.bytes", str(size), incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    for future in stack.admin().incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def run_chaos(cfg: ChaosConfig) -> dict[str, Any]:
    run_dir = cfg.run_dir or Path(f"chaos-runs/seed-{cfg.seed}-{uuid.uuid4().hex[:6]}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({**cfg.__dict__, "run_dir": str(run_dir)}, default=str))
    started = time.monotonic()
    broker = BrokerControl() if cfg.broker_restarts else None
    bootstrap = broker.bootstrap if broker else (cfg.bootstrap or os.environ["KAFKA_BOOTSTRAP_SERVERS"])
    events = Events(run_dir / "events.jsonl")
    stack = SchedulerStack(
        bootstrap, f"chaos{cfg.seed}-{uuid.uuid4().hex[:8]}", run_dir, partitions=cfg.partitions
    )
    stack.extra_env = {
        "KAFKA_SCHEDULER_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "KAFKA_SCHEDULER_LOG_LEVEL": "INFO",
        "KAFKA_SCHEDULER_REBUILD_STALL_TIMEOUT_S": "60",
    }
    supervisor: Supervisor | None = None
    echo: EchoConsumer | None = None
    try:
        stack.create()
        targets = [stack.create_target(f"{stack.scheduled_topic}-t{i}", 3) for i in range(2)]
        now_ms = int(time.time() * 1000)
        produce_ms = cfg.duration_s * 0.6 * 1000
        edge = EdgeLoad(burst=cfg.burst, burst_ms=int(now_ms + produce_ms * cfg.burst_at) + 2000)
        if cfg.oversize:
            edge.big_target = stack.create_target(
                f"{stack.scheduled_topic}-big", 3, {"max.message.bytes": str(BIG_TARGET_MAX)}
            )
            edge.huge_target = stack.create_target(
                f"{stack.scheduled_topic}-huge", 3, {"max.message.bytes": str(HUGE_TARGET_MAX)}
            )
            _set_max_message(stack, stack.scheduled_topic, 4 * 1024 * 1024)  # room for the largest case
            _set_max_message(stack, stack.settings.state, STATE_MAX)
        doomed = None
        if cfg.doomed:
            edge.delete_ms = int(now_ms + cfg.duration_s * 0.5 * 1000)
            edge.doomed_until_ms = int(now_ms + produce_ms * 0.3)
            doomed = DoomedTarget(stack, events, edge.delete_ms)
            edge.doomed_target = doomed.topic
        if cfg.recurring:
            echo = EchoConsumer(bootstrap, stack.scheduled_topic, targets, run_dir, f"{stack.group}-echo")
            echo.start()
        rng = random.Random(cfg.seed)
        supervisor = Supervisor(
            stack,
            run_dir,
            events,
            random.Random(rng.random()),
            failpoint_probability=cfg.failpoint_probability,
            failpoint_max_hit=cfg.failpoint_max_hit,
        )
        supervisor.start(cfg.instances)
        gen = Generator(
            bootstrap,
            stack.scheduled_topic,
            targets,
            run_dir,
            random.Random(rng.random()),
            schedules=cfg.schedules,
            produce_s=cfg.duration_s * 0.6,
            max_due_s=cfg.duration_s * 0.85,
            edge=edge,
            misrouted=cfg.misrouted,
            recurring=cfg.recurring,
        )
        nemesis = Nemesis(
            supervisor,
            events,
            random.Random(rng.random()),
            SESSION_TIMEOUT_MS / 1000,
            kill_every_s=cfg.kill_every_s,
            zombies=cfg.zombies,
            storms=cfg.storms,
            broker=broker,
            broker_restarts=cfg.broker_restarts,
            twins=cfg.twins,
        )
        stop = threading.Event()
        threads = [
            threading.Thread(target=gen.run, args=(stop,), name="generator", daemon=True),
            threading.Thread(
                target=nemesis.run, args=(stop, cfg.duration_s * 0.8), name="nemesis", daemon=True
            ),
        ]
        for t in threads:
            t.start()
        threads[1].join(cfg.duration_s)
        threads[0].join(cfg.duration_s + 60)
        stop.set()
        threads[1].join(60)
        supervisor.quiet()
        quiesced = _quiesce(cfg, stack, supervisor, gen, events)
        (run_dir / "end.json").write_text(json.dumps({"end_ms": int(time.time() * 1000)}))
        if echo is not None:  # its last done reports must be consumed before the group offsets are read
            echo.stop()
            echo = None
            quiesced = _quiesce(cfg, stack, supervisor, gen, events) and quiesced
        totals = supervisor.totals()
        supervisor.close()
        (run_dir / "metrics.json").write_text(json.dumps(totals))
        events.add(event="generator", counts=gen.counts, delivered=gen.delivered, failed=gen.failed)
        if doomed is not None:
            doomed.write(run_dir)
        topics = {
            "scheduled": [stack.scheduled_topic],
            "target": targets + [t for t in (edge.big_target, edge.huge_target) if t],
            "state": [stack.settings.state],
            "rejected": [stack.settings.rejected],
            "dlt": [stack.settings.dlt],
        }
        dump(run_dir, bootstrap, topics, stack.group, stack.scheduled_topic)
        report = check(run_dir)
        report["stats"]["quiesced"] = quiesced
        report["stats"]["generated"] = gen.counts
        report["stats"]["produce_failures"] = gen.failed
        report["stats"]["seconds"] = round(time.monotonic() - started, 1)
        report["config"] = {k: v for k, v in cfg.__dict__.items() if k != "run_dir"}
        report["run_dir"] = str(run_dir)
        (run_dir / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True, default=str))
        return report
    finally:
        if echo is not None:
            echo.stop()
        if supervisor is not None:
            supervisor.close()
        events.close()
        if broker is not None:
            broker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.run", description=__doc__)
    parser.add_argument("--seed", type=int, default=1, help="the (first) seed")
    parser.add_argument("--seeds", type=int, default=1, help="run this many seeds: --seed, --seed+1, ...")
    parser.add_argument("--schedules", type=int, default=2000)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds of load and faults (default: 60, or schedules/333)",
    )
    parser.add_argument("--bootstrap", default=None, help="default: $KAFKA_BOOTSTRAP_SERVERS")
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--kill-every", default="10,30", help="random SIGKILL interval range, seconds: a,b")
    parser.add_argument("--zombies", type=int, default=1)
    parser.add_argument("--storms", type=int, default=1)
    parser.add_argument("--twins", type=int, default=0, help="second processes with a live transactional.id")
    parser.add_argument("--broker-restarts", type=int, default=0, help=">0 runs on a private broker")
    parser.add_argument(
        "--burst", type=int, default=0, help="F23: this many schedules due in one millisecond"
    )
    parser.add_argument(
        "--burst-at",
        type=float,
        default=0.5,
        help="when the burst is due, as a fraction of the produce window",
    )
    parser.add_argument(
        "--oversize",
        action="store_true",
        help="F17: four payload sizes against target, state and producer limits",
    )
    parser.add_argument("--doomed", action="store_true", help="F18: a target topic deleted half-way through")
    parser.add_argument(
        "--misrouted",
        type=float,
        default=0.25,
        help="share of commands sent with librdkafka's default partitioner (the scheduler forwards them home)",
    )
    parser.add_argument(
        "--recurring",
        type=int,
        default=0,
        help="recurring schedules (every, after, paused and resumed, replaced) with an echo consumer",
    )
    args = parser.parse_args(argv)
    low, high = (float(x) for x in args.kill_every.split(","))
    verdicts = {}
    for seed in range(args.seed, args.seed + args.seeds):
        run_dir = args.run_dir if args.seeds == 1 else (args.run_dir or Path("chaos-runs")) / f"seed-{seed}"
        verdicts[seed] = _one(args, seed, run_dir, (low, high))
    if args.seeds > 1:
        print(json.dumps({"seeds": verdicts}, indent=1))
    if any(v == "fail" for v in verdicts.values()):
        return 1
    return 0 if all(v == "pass" for v in verdicts.values()) else 2


def _one(args: argparse.Namespace, seed: int, run_dir: Path | None, kill_every: tuple[float, float]) -> str:
    cfg = ChaosConfig(
        seed=seed,
        schedules=args.schedules,
        instances=args.instances,
        partitions=args.partitions,
        duration_s=args.duration or max(60.0, args.schedules / 333),
        bootstrap=args.bootstrap,
        run_dir=run_dir,
        kill_every_s=kill_every,
        zombies=args.zombies,
        storms=args.storms,
        broker_restarts=args.broker_restarts,
        twins=args.twins,
        burst=args.burst,
        burst_at=args.burst_at,
        oversize=args.oversize,
        doomed=args.doomed,
        misrouted=args.misrouted,
        recurring=args.recurring,
    )
    report = run_chaos(cfg)
    summary = {
        "verdict": report["verdict"],
        "anomalies": {k: v["count"] for k, v in report["anomalies"].items()},
        "stats": report["stats"],
        "run_dir": report["run_dir"],
    }
    print(json.dumps(summary, indent=1, sort_keys=True, default=str), flush=True)
    return str(report["verdict"])


if __name__ == "__main__":
    sys.exit(main())
