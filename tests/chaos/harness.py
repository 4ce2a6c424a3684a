"""Scheduler instances under a supervisor, and the nemesis that hurts them.

The supervisor keeps `instances` slots of `kafka-scheduler run` subprocesses alive: a slot whose process died
(SIGKILL from a failpoint or from the nemesis, a fatal exit after being fenced) is restarted, each time with a
freshly drawn failpoint spec in KAFKA_SCHEDULER_FAILPOINTS. Slot i always uses instance id `c<i>`, so its
transactional.id is stable and a restart fences the previous incarnation. The supervisor scrapes every live
instance's transaction counters every second and right before the nemesis kills it.

Every fault is appended to `events.jsonl` as {"t": seconds since start, "fault": kind, ...}.

With recurring schedules, an `EchoConsumer` (the consumer framework itself) consumes the target topics, logs when
it saw each occurrence (`observed.jsonl`) and reports awaited occurrences done on `scheduled`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumers import App, ConsumerSettings, InMemoryStore, Message
from scheduler.dev import broker as dev_broker
from scheduler.model import HEADER_AWAIT_DONE, HEADER_FIRE_ID, HEADER_OCCURRENCE_AT
from tests.scheduler_proc import SchedulerProcess, SchedulerStack

__all__ = ["KILL_FAILPOINTS", "BrokerControl", "EchoConsumer", "Events", "Nemesis", "Supervisor"]

# Failpoints wired into the service (on_revoke_* have no transaction to interrupt: none is open between ticks).
KILL_FAILPOINTS = (
    "after_begin",
    "after_fire_produce",
    "after_tombstone_produce",
    "after_send_offsets",
    "before_commit",
    "after_commit_before_index",
    "mid_rebuild",
    "after_abort_before_seek",
)


class Events:
    """Append-only, thread-safe event log of a run."""

    def __init__(self, path: Path) -> None:
        self._fh = path.open("a")
        self._lock = threading.Lock()
        self._start = time.monotonic()

    def add(self, **event: Any) -> None:
        with self._lock:
            self._fh.write(json.dumps({"t": round(time.monotonic() - self._start, 3), **event}) + "\n")
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def scrape_transactions(proc: SchedulerProcess) -> dict[str, float] | None:
    try:
        _status, text = proc.get("/metrics")
    except (OSError, http.client.HTTPException, ValueError):  # dying, starting, or killed mid-response
        return None
    out = {}
    for line in str(text).splitlines():
        if line.startswith("kafka_scheduler_transactions_total{"):
            label = line.split('result="', 1)[1].split('"', 1)[0]
            out[label] = float(line.rsplit(" ", 1)[1])
    return out


@dataclass
class Slot:
    index: int
    want: bool = True
    failpoints: str = ""
    incarnation: int = 0
    proc: SchedulerProcess | None = None
    paused: bool = False
    expect_death: bool = False


@dataclass
class Supervisor:
    stack: SchedulerStack
    run_dir: Path
    events: Events
    rng: random.Random
    failpoint_probability: float = 0.7
    failpoint_max_hit: int = 40
    slots: list[Slot] = field(default_factory=list)
    scraped: dict[tuple[int, int], dict[str, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    failpoints_armed: bool = True

    def _draw_failpoints(self) -> str:
        if not self.failpoints_armed or self.rng.random() >= self.failpoint_probability:
            return ""
        name = self.rng.choice(KILL_FAILPOINTS)
        return f"{name}=kill@{self.rng.randint(1, self.failpoint_max_hit)}"

    def start_slot(self, slot: Slot) -> None:
        slot.failpoints = self._draw_failpoints()
        slot.incarnation += 1
        env = self.stack.env(KAFKA_SCHEDULER_INSTANCE_ID=f"c{slot.index}")
        env["KAFKA_SCHEDULER_FAILPOINTS"] = slot.failpoints
        env["KAFKA_SCHEDULER_TXN_LOG"] = str(self.run_dir / f"instance-{slot.index}.txn.jsonl")
        slot.proc = SchedulerProcess(env, self.run_dir / f"instance-{slot.index}.log").start()
        slot.paused = False
        slot.expect_death = False
        self.events.add(
            event="started", slot=slot.index, incarnation=slot.incarnation, failpoints=slot.failpoints
        )

    def add_slot(self) -> Slot:
        with self._lock:
            slot = Slot(len(self.slots))
            self.slots.append(slot)
            self.start_slot(slot)
            return slot

    def start(self, instances: int) -> None:
        for _ in range(instances):
            self.add_slot()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._thread.start()

    def scrape(self, slot: Slot) -> None:
        if slot.proc is None or slot.paused:
            return
        values = scrape_transactions(slot.proc)
        if values:
            self.scraped[(slot.index, slot.incarnation)] = values

    def _watch(self) -> None:
        while not self._stop.wait(0.3):
            try:
                self._watch_once()
            except Exception as exc:  # the supervisor must outlive anything one probe throws
                self.events.add(event="supervisor_error", error=repr(exc))

    def _watch_once(self) -> None:
        with self._lock:
            for slot in self.slots:
                proc = slot.proc
                if proc is None or proc.proc is None:
                    continue
                rc = proc.proc.poll()
                if rc is None:
                    if int(time.monotonic() * 3) % 3 == 0:
                        self.scrape(slot)
                    continue
                if slot.want:
                    self.events.add(event="exited", slot=slot.index, rc=rc, failpoints=slot.failpoints)
                    if rc == -signal.SIGKILL and slot.failpoints and not slot.expect_death:
                        self.events.add(fault="failpoint_kill", slot=slot.index, spec=slot.failpoints)
                    self.start_slot(slot)

    def live(self) -> list[Slot]:
        return [
            s
            for s in self.slots
            if s.want and s.proc is not None and s.proc.proc is not None and s.proc.proc.poll() is None
        ]

    def kill(self, slot: Slot) -> None:
        with self._lock:
            self.scrape(slot)
            if slot.proc is not None:
                slot.expect_death = True
                slot.proc.signal(signal.SIGCONT)
                slot.proc.kill()

    def retire(self, slot: Slot) -> None:
        """Stop a slot for good (SIGTERM, graceful leave)."""
        with self._lock:
            slot.want = False
            self.scrape(slot)
        if slot.proc is not None:
            rc = slot.proc.stop(timeout_s=30)
            self.events.add(event="retired", slot=slot.index, rc=rc)

    def quiet(self) -> None:
        """No more failpoints; restart every wanted slot that carries one (so nothing dies while draining)."""
        self.failpoints_armed = False
        for slot in list(self.slots):
            if slot.paused and slot.proc is not None:
                slot.proc.signal(signal.SIGCONT)
                slot.paused = False
            if slot.want and slot.failpoints:
                self.kill(slot)  # the watcher restarts it without failpoints

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for values in self.scraped.values():
            for label, value in values.items():
                out[label] = out.get(label, 0.0) + value
        return out

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for slot in self.slots:
            self.scrape(slot)
            if slot.proc is not None:
                slot.proc.signal(signal.SIGCONT)
                slot.proc.stop(timeout_s=30)


class BrokerControl:
    """A private broker (scheduler.dev.broker) that the nemesis may hard-kill and restart on the same port."""

    def __init__(self) -> None:
        self.handle = dev_broker.start()
        self.bootstrap = self.handle.bootstrap
        self._proc: subprocess.Popen[bytes] | None = None

    def _pid(self) -> int:
        return self._proc.pid if self._proc is not None else self.handle.pid

    def hard_restart(self, down_s: float) -> None:
        pid = self._pid()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait(30)
        time.sleep(down_s)
        run = Path(self.handle.run_dir)
        java = dev_broker.check_java()
        libs = dev_broker.ensure_jars()
        jvm = [
            f"-Dlog4j2.configurationFile={run / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={run / 'logs'}",
            "-cp",
            str(libs / "*"),
        ]
        heap = ["-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError"]
        with open(run / "logs" / "stdout.log", "ab") as out:
            self._proc = subprocess.Popen(
                [
                    java,
                    *heap,
                    "-Djava.awt.headless=true",
                    *jvm,
                    "kafka.Kafka",
                    str(run / "server.properties"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        dev_broker.wait_ready(self.bootstrap, self._proc, 120)

    def stop(self) -> None:
        if self._proc is None:
            dev_broker.stop(self.handle)
            return
        try:
            os.killpg(self._proc.pid, signal.SIGTERM)
            self._proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self._proc.pid, signal.SIGKILL)


@dataclass
class Nemesis:
    """Random faults on a seeded schedule: SIGKILL, zombies (SIGSTOP past the session timeout), rebalance storms,
    broker hard restarts. Failpoint kills are drawn by the supervisor at every (re)start."""

    supervisor: Supervisor
    events: Events
    rng: random.Random
    session_timeout_s: float
    kill_every_s: tuple[float, float] = (10.0, 30.0)
    zombies: int = 1
    storms: int = 1
    broker: BrokerControl | None = None
    broker_restarts: int = 0
    twins: int = 0

    def run(self, stop: threading.Event, duration_s: float) -> None:
        rng = self.rng
        start = time.monotonic()
        plan: list[tuple[float, str]] = []
        t = rng.uniform(*self.kill_every_s)
        while t < duration_s:
            plan.append((t, "sigkill"))
            t += rng.uniform(*self.kill_every_s)
        for _ in range(self.zombies):
            plan.append((rng.uniform(0.15, 0.6) * duration_s, "zombie"))
        for _ in range(self.storms):
            plan.append((rng.uniform(0.1, 0.5) * duration_s, "storm"))
        for _ in range(self.twins):
            plan.append((rng.uniform(0.2, 0.6) * duration_s, "twin"))
        for _ in range(self.broker_restarts if self.broker else 0):
            plan.append((rng.uniform(0.3, 0.7) * duration_s, "broker_restart"))
        plan.sort()
        self.events.add(event="nemesis_plan", plan=plan)
        helpers = []
        for at, kind in plan:
            if stop.wait(max(0.0, at - (time.monotonic() - start))):
                break
            if kind in ("zombie", "storm", "twin"):  # long faults overlap with the others
                helper = threading.Thread(target=getattr(self, "_" + kind), args=(stop,), daemon=True)
                helper.start()
                helpers.append(helper)
            else:
                getattr(self, "_" + kind)(stop)
        for helper in helpers:
            helper.join(60)

    def _pick(self) -> Any:
        live = [s for s in self.supervisor.live() if not s.paused]
        return self.rng.choice(live) if live else None

    def _sigkill(self, _stop: threading.Event) -> None:
        slot = self._pick()
        if slot is not None:
            self.events.add(fault="sigkill", slot=slot.index)
            self.supervisor.kill(slot)

    def _zombie(self, stop: threading.Event) -> None:
        slot = self._pick()
        if slot is None or slot.proc is None:
            return
        pause = self.session_timeout_s + self.rng.uniform(2.0, 5.0)
        self.events.add(fault="zombie", slot=slot.index, pause_s=round(pause, 1))
        self.supervisor.scrape(slot)
        slot.paused = True
        slot.proc.signal(signal.SIGSTOP)
        stop.wait(pause)
        slot.proc.signal(signal.SIGCONT)
        slot.paused = False

    def _storm(self, stop: threading.Event) -> None:
        self.events.add(fault="rebalance_storm")
        for _ in range(3):
            extra = self.supervisor.add_slot()
            self.events.add(fault="storm_join", slot=extra.index)
            if stop.wait(self.rng.uniform(2.0, 6.0)):
                self.supervisor.retire(extra)
                return
            self.supervisor.retire(extra)
            self.events.add(fault="storm_leave", slot=extra.index)

    def _twin(self, stop: threading.Event) -> None:
        """F10: an unsupervised second process with a live slot's instance id (same transactional.id)."""
        slot = self._pick()
        if slot is None:
            return
        sup = self.supervisor
        env = sup.stack.env(KAFKA_SCHEDULER_INSTANCE_ID=f"c{slot.index}")
        env["KAFKA_SCHEDULER_TXN_LOG"] = str(sup.run_dir / f"instance-twin-{slot.index}.txn.jsonl")
        twin = SchedulerProcess(env, sup.run_dir / f"instance-twin-{slot.index}.log").start()
        self.events.add(fault="twin_transactional_id", slot=slot.index)
        stop.wait(self.rng.uniform(3.0, 8.0))
        values = scrape_transactions(twin)
        if values:
            sup.scraped[(-1 - slot.index, int(time.monotonic()))] = values
        twin.kill()

    def _broker_restart(self, _stop: threading.Event) -> None:
        if self.broker is None:
            return
        down = self.rng.uniform(1.0, 4.0)
        self.events.add(fault="broker_restart", down_s=round(down, 1))
        self.broker.hard_restart(down)
        self.events.add(event="broker_back")


class EchoConsumer:
    """A consumer-framework app on the target topics: it handles every fire at once, so `after` schedules go on
    through its done reports, and logs {"fid", "seen_ms", "awaits"} for each occurrence it handled."""

    def __init__(
        self, bootstrap: str, scheduled_topic: str, targets: list[str], run_dir: Path, group: str
    ) -> None:
        settings = ConsumerSettings(
            bootstrap_servers=bootstrap,
            scheduled_topic=scheduled_topic,
            commit_interval_s=0.5,
            shutdown_timeout_s=10.0,
        )
        self.app = App(
            group, concurrency=8, idempotency=InMemoryStore(), ordering="relaxed", settings=settings
        )
        for topic in targets:
            self.app.handler(topic)(self._seen)
        self._fh = (run_dir / "observed.jsonl").open("a")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.app.run, args=(self._stop,), name="echo", daemon=True)

    def _seen(self, message: Message) -> None:
        if message.header(HEADER_OCCURRENCE_AT) is None:
            return  # a one-time fire
        entry = {
            "fid": message.header(HEADER_FIRE_ID),
            "seen_ms": time.time_ns() // 1_000_000,
            "awaits": message.header(HEADER_AWAIT_DONE) is not None,
        }
        with self._lock:
            self._fh.write(json.dumps(entry) + "\n")
            self._fh.flush()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        with self._lock:
            self._fh.close()
