"""What the scheduler benches share: topics, pre-loaded state, a read_committed counter, tables and JSON results.

Every bench prints its figure next to a baseline measured in the same run on the same broker, because the machine
is shared and absolute numbers drift; the ratio is the figure to compare across runs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from scheduler.codec import encode_state
from scheduler.model import HEADER_DUE_AT, HEADER_FIRED_AT, HEADER_SCHEDULE_ID, Schedule
from scheduler.partitioner import partition_for
from tests.scheduler_proc import SchedulerProcess, SchedulerStack

RESULTS = Path(__file__).parent / "results"
PAYLOAD = b"x" * 100
console = Console(width=int(os.environ.get("COLUMNS", "150")))


def bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def add_env_option(parser: argparse.ArgumentParser) -> None:
    """`--env NAME=VALUE ...`: settings for the scheduler a bench starts (an A/B of one setting in one run)."""
    parser.add_argument(
        "--env",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="scheduler settings, e.g. KAFKA_SCHEDULER_X=1",
    )


def scheduler_env(args: argparse.Namespace) -> dict[str, str]:
    return dict(item.split("=", 1) for item in args.env)


def stack(prefix: str, partitions: int, **env: str) -> SchedulerStack:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))
    return SchedulerStack(bootstrap(), uid(f"bench-{prefix}"), workdir, partitions, extra_env=env).create()


def schedule(i: int, target: str, due_ms: int, now: int) -> Schedule:
    return Schedule(
        id=f"s-{i:09d}",
        target_topic=target,
        due_ms=due_ms,
        payload=PAYLOAD,
        target_key=f"k-{i % 10_000}".encode(),
        created_ms=now,
    )


def fast_producer(**extra: Any) -> Producer:
    """Commands land in their ids' partitions, as SchedulerClient and Java producers put them (murmur2): with
    librdkafka's default partitioner (CRC32) 5/6 of them would be forwarded home, and the bench would measure that."""
    conf = {
        "bootstrap.servers": bootstrap(),
        "partitioner": "murmur2_random",
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "compression.type": "lz4",
        **extra,
    }
    return Producer(conf)


def loader() -> Producer:
    """A plain producer for pre-loading topics: large lz4 batches, a deep queue (1M records in seconds)."""
    return fast_producer(
        **{
            "linger.ms": 50,
            "batch.num.messages": 100_000,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )


def spawn_pool() -> Pool:
    """One fresh interpreter: a baseline (or a raw loop) runs in its own process, as the scheduler does."""
    return multiprocessing.get_context("spawn").Pool(1)


def in_own_process(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in a fresh process (fn at a module's top level); its return value."""
    with spawn_pool() as pool:
        return pool.apply(fn, args)


def counted_in_own_process(label: str, counter: Counter, n: int, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in a fresh process while a bar shows what `counter` sees of its `n` records; its return value."""
    with spawn_pool() as pool:
        pending = pool.apply_async(fn, args)
        with progress() as bar:
            task = bar.add_task(label, total=n)
            while not pending.ready():
                bar.update(task, completed=len(counter.seen))
                time.sleep(0.05)
        return pending.get()


def produce(producer: Producer, topic: str, value: bytes | None, key: bytes, partition: int) -> None:
    while True:
        try:
            producer.produce(topic, value, key, partition=partition)
            return
        except BufferError:
            producer.poll(0.05)


def preload_state(
    stack_: SchedulerStack,
    target: str,
    n: int,
    due: Callable[[int], int],
    extra_tombstones: int = 0,
    shape: Callable[[Schedule], Schedule] | None = None,
) -> int:
    """Write `n` pending state records (plus tombstoned ids) straight into the state topic, each in its id's
    partition (where the scheduler keeps it: one elsewhere is moved home first); returns records written.
    `shape` turns each of the `n` schedules into another (a recurring one, say) before it is written."""
    producer = loader()
    state, parts = stack_.settings.state, stack_.partitions
    now = int(time.time() * 1000)
    written = 0
    with progress() as bar:
        task = bar.add_task("pre-load state", total=n + 2 * extra_tombstones)
        for i in range(n):
            s = schedule(i, target, due(i), now)
            if shape is not None:
                s = shape(s)
            key = s.id.encode()
            produce(producer, state, encode_state(s, i), key, partition_for(key, parts))
            written += 1
            if i % 20_000 == 0:
                producer.poll(0)
                bar.update(task, completed=written)
        for j in range(extra_tombstones):
            s = schedule(n + j, target, due(j), now)
            key = s.id.encode()
            produce(producer, state, encode_state(s, j), key, partition_for(key, parts))
            produce(producer, state, None, key, partition_for(key, parts))
            written += 2
            if j % 5000 == 0:
                producer.poll(0)
                bar.update(task, completed=written)
        bar.update(task, completed=written)
        assert producer.flush(120) == 0
    return written


@dataclass
class Seen:
    """One record seen at a target, read_committed: when it became visible, its due and fired-at headers."""

    visible_ms: float
    due_ms: int
    fired_ms: int
    schedule_id: bytes = b""


@dataclass
class Counter:
    """A read_committed consumer on a topic, on its own thread, from the beginning."""

    topic: str
    seen: list[Seen] = field(default_factory=list)
    last_at: float = 0.0  # perf_counter of the latest arrival
    first_at: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Counter:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(30)
        return self

    def _run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap(),
                "group.id": uid("bench-counter"),
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
                "fetch.min.bytes": 1,
            }
        )
        meta = consumer.list_topics(self.topic, timeout=10).topics[self.topic]
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        consumer.consume(1, 0.5)
        self._ready.set()
        while not self._stop.is_set():
            batch = consumer.consume(10_000, 0.001)  # returns at the timeout or 10k: keep the delay small
            if not batch:
                continue
            wall = time.time() * 1000
            now = time.perf_counter()
            for msg in batch:
                if msg.error() is not None:
                    continue
                headers = dict(msg.headers() or [])
                due = headers.get(HEADER_DUE_AT)
                fired = headers.get(HEADER_FIRED_AT)
                sid = headers.get(HEADER_SCHEDULE_ID) or b""
                self.seen.append(Seen(wall, int(due) if due else 0, int(fired) if fired else 0, sid))
            if not self.first_at:
                self.first_at = now
            self.last_at = now
        consumer.close()

    def wait(self, n: int, timeout_s: float, label: str = "fired") -> bool:
        deadline = time.monotonic() + timeout_s
        with progress() as bar:
            task = bar.add_task(label, total=n)
            while len(self.seen) < n and time.monotonic() < deadline:
                bar.update(task, completed=len(self.seen))
                time.sleep(0.05)
            bar.update(task, completed=len(self.seen))
        return len(self.seen) >= n

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


def wait_ready(instance: SchedulerProcess, timeout_s: float = 600.0) -> float:
    """perf_counter when /readyz first answered 200 (polled every 10 ms)."""
    end = time.monotonic() + timeout_s
    while not instance.ready():
        if instance.proc is not None and instance.proc.poll() is not None:
            raise RuntimeError(f"scheduler exited:\n{instance.log_tail()}")
        if time.monotonic() > end:
            raise RuntimeError(f"scheduler not ready in {timeout_s}s:\n{instance.log_tail()}")
        time.sleep(0.01)
    return time.perf_counter()


class ProfiledProcess(SchedulerProcess):
    """`kafka-scheduler run` under pyinstrument (HTML written when it exits on SIGTERM)."""

    profile_path: Path | None = None

    def start(self) -> SchedulerProcess:
        if self.profile_path is None:
            return super().start()
        import subprocess

        env = {**os.environ, **self.env, "KAFKA_SCHEDULER_HTTP_PORT": str(self.port)}
        env["KAFKA_SCHEDULER_HTTP_HOST"] = "127.0.0.1"
        renderer = "text" if self.profile_path.suffix == ".txt" else "html"
        cmd = [sys.executable, "-m", "pyinstrument", "-r", renderer, "-o", str(self.profile_path)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*cmd, "-m", "scheduler.cli", "run"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self


def start_scheduler(
    stack_: SchedulerStack, profile: Path | None = None, instance_id: str | None = None, **env: str
) -> SchedulerProcess:
    n = len(stack_.instances)
    instance = ProfiledProcess(
        stack_.env(KAFKA_SCHEDULER_INSTANCE_ID=instance_id or f"i{n}", **env), stack_.workdir / f"s{n}.log"
    )
    instance.profile_path = profile
    stack_.instances.append(instance)
    instance.start()
    return instance


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    out = Table(title=title)
    for col in columns:
        out.add_column(col, justify="right" if col != columns[0] else "left")
    for row in rows:
        out.add_row(*(_fmt(v) for v in row))
    console.print(out)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def save(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    console.print(f"results: {path}")
    return path


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


@contextmanager
def closing(stack_: SchedulerStack) -> Iterator[SchedulerStack]:
    try:
        yield stack_
    finally:
        for instance in stack_.instances:
            instance.stop(timeout_s=30)
