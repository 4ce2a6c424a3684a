"""`make demo`: a local broker, two schedulers, an example consumer and Prometheus, and schedules that fire.

Everything it starts is recorded under .run/demo so `make stop` (`kafka-scheduler dev demo --stop`) ends it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import cast

from confluent_kafka import Consumer

from scheduler.dev import broker
from scheduler.logs import LIBRDKAFKA_LOG

__all__ = ["run_demo", "stop_demo"]

RUN = Path(os.environ.get("KAFKA_SCHEDULER_RUN_DIR", ".run"))
DEMO = RUN / "demo"
SCHEDULED = "scheduled"
TARGET = "reservations.timers"  # the reservations example's timer topic
EXPIRY_S = 3.0
SCHEDULER_PORTS = (9400, 9402)
CONSUMER_PORT = 9401
PROMETHEUS_PORT = 9090


def _say(text: str) -> None:
    print(text, flush=True)


def _ensure_broker() -> str:
    state = RUN / "broker.json"
    if state.exists():
        handle = broker.BrokerHandle.from_json(state.read_text())
        if broker.status(handle):
            return handle.bootstrap
    _say("starting a local Apache Kafka broker (first run downloads the jars from Maven Central)...")
    started = time.monotonic()
    handle = broker.start()
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(handle.to_json())
    _say(f"  broker ready at {handle.bootstrap} in {time.monotonic() - started:.1f}s")
    return handle.bootstrap


def _spawn(name: str, argv: list[str], env: dict[str, str]) -> None:
    DEMO.mkdir(parents=True, exist_ok=True)
    log = open(DEMO / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it open
    proc = subprocess.Popen(
        argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    (DEMO / f"{name}.pid").write_text(str(proc.pid))


def _create_topics(bootstrap: str) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    from scheduler.settings import ServiceSettings
    from scheduler.topics import create_topics

    admin = AdminClient({**LIBRDKAFKA_LOG, "bootstrap.servers": bootstrap})
    create_topics(admin, ServiceSettings(bootstrap_servers=bootstrap, scheduled_topic=SCHEDULED), 6, 1)
    try:
        admin.create_topics([NewTopic(TARGET, 6, 1)])[TARGET].result(timeout=30)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise


def _example_env(bootstrap: str) -> dict[str, str]:
    """The reservations example, with its database under .run/demo and a short expiry."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_SCHEDULER_SCHEDULED_TOPIC": SCHEDULED,
        "KAFKA_SCHEDULER_METRICS_PORT": str(CONSUMER_PORT),
        "EXAMPLE_RESERVATIONS_DB": str((DEMO / "reservations.sqlite3").resolve()),
        "EXAMPLE_RESERVATIONS_DELAY_S": str(EXPIRY_S),
    }


def _start_processes(bootstrap: str) -> None:
    base = {"KAFKA_SCHEDULER_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_SCHEDULER_SCHEDULED_TOPIC": SCHEDULED}
    for n, port in enumerate(SCHEDULER_PORTS):
        env = {**base, "KAFKA_SCHEDULER_HTTP_PORT": str(port), "KAFKA_SCHEDULER_INSTANCE_ID": f"demo-{n}"}
        env["KAFKA_SCHEDULER_WORKERS"] = "1"  # two members in the group, whatever the machine's cores
        _spawn(f"scheduler-{n}", [sys.executable, "-m", "scheduler.cli", "run"], env)
    consume = [sys.executable, "-m", "scheduler.cli", "consume", "examples.reservations:app"]
    _spawn("consumer", consume, _example_env(bootstrap))
    prometheus = shutil.which("prometheus")
    if prometheus:
        config = DEMO / "prometheus.yml"
        targets = [f"127.0.0.1:{p}" for p in SCHEDULER_PORTS]
        config.write_text(
            "global: {scrape_interval: 5s, evaluation_interval: 5s}\n"
            f"rule_files: [{Path('deploy/prometheus/alerts.yml').resolve()}]\n"
            "scrape_configs:\n"
            f"  - job_name: kafka-scheduler\n    static_configs: [{{targets: {json.dumps(targets)}}}]\n"
            f"  - job_name: kafka-consumers\n    static_configs: [{{targets: ['127.0.0.1:{CONSUMER_PORT}']}}]\n"
        )
        argv = [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={DEMO / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
        ]
        _spawn("prometheus", argv, {})


def _scrape(port: int, path: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def _assigned(metrics: str) -> float:
    lines = [ln for ln in metrics.splitlines() if ln.startswith("kafka_scheduler_assigned_partitions ")]
    return float(lines[0].split()[1]) if lines else 0.0


def _wait_ready(partitions: int = 6, timeout_s: float = 90.0) -> None:
    """Both instances ready and, between them, owning every partition (the group has settled)."""
    deadline = time.monotonic() + timeout_s
    while True:
        ready = all(_scrape(port, "/readyz")[0] == 200 for port in (*SCHEDULER_PORTS, CONSUMER_PORT))
        owned = sum(_assigned(_scrape(port, "/metrics")[1]) for port in SCHEDULER_PORTS)
        if ready and owned == partitions:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"schedulers not ready ({owned}/{partitions} partitions); see {DEMO}/*.log")
        time.sleep(0.2)


def _watcher(bootstrap: str) -> Consumer:
    consumer = Consumer(
        {
            **LIBRDKAFKA_LOG,
            "bootstrap.servers": bootstrap,
            "group.id": f"demo-watch-{uuid.uuid4().hex[:6]}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "latest",
            "fetch.wait.max.ms": 10,
        }
    )
    consumer.subscribe([TARGET])
    deadline = time.monotonic() + 15
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(0.1)
    return consumer


def _schedule_and_watch(bootstrap: str, count: int, spread_s: float) -> None:
    """Create reservations through the example service; every fourth is picked up before it expires."""
    os.environ.update(_example_env(bootstrap))
    from examples.reservations import service

    consumer = _watcher(bootstrap)
    run = uuid.uuid4().hex[:4]
    ids = [f"{run}-{40 + i}" for i in range(count)]
    picked = set(ids[3::4])
    _say(
        f"creating {count} reservations over {spread_s:.0f}s; each expires {EXPIRY_S:.0f}s later unless picked up"
    )
    started, fired = time.monotonic(), 0
    seen: set[str] = set()
    pending = list(ids)
    deadline = started + spread_s + EXPIRY_S + 30
    while (pending or fired < count - len(picked)) and time.monotonic() < deadline:
        due_index = int((time.monotonic() - started) / spread_s * count) if spread_s else count
        while pending and ids.index(pending[0]) <= due_index:
            rid = pending.pop(0)
            service.create(rid, amount_cents=1000 + len(seen) * 5)
            seen.add(rid)
            _say(f"  created  reservation {rid}" + ("  (will be picked up)" if rid in picked else ""))
            if rid in picked:
                service.pick_up(rid)
                _say(f"  picked up reservation {rid}: its expiry is cancelled")
        msg = consumer.poll(0.05)
        if msg is None or msg.error() is not None:
            continue
        raw = cast("list[tuple[str, bytes | None]]", msg.headers() or [])
        headers = {k: (v or b"").decode() for k, v in raw}
        late = time.time() * 1000 - int(headers.get("scheduler-due-at", "0"))
        fired += 1
        sid = headers.get("scheduler-schedule-id", "?")
        _say(f"  fired    {sid:34} partition={msg.partition()} lateness={late:6.1f} ms")
    consumer.close()
    time.sleep(1.0)  # the example consumer commits its refund right after the fire is visible
    refunds = sorted(r for r in service.refunds() if r.startswith(run))
    _say(
        f"{fired} expiries fired (none early, each once); {len(picked)} picked up in time were cancelled; "
        f"the example consumer refunded {len(refunds)}: {', '.join(refunds)}"
    )


def run_demo(count: int = 12, spread_s: float = 10.0) -> None:
    bootstrap = _ensure_broker()
    _create_topics(bootstrap)
    if not list(DEMO.glob("scheduler-*.pid")):
        _start_processes(bootstrap)
    _say("waiting for two scheduler instances to rebuild their partitions...")
    _wait_ready()
    _schedule_and_watch(bootstrap, count, spread_s)
    _say(
        "\nstill running (make stop ends it all):\n"
        f"  scheduler metrics  http://127.0.0.1:{SCHEDULER_PORTS[0]}/metrics  "
        f"http://127.0.0.1:{SCHEDULER_PORTS[1]}/metrics\n"
        f"  health             http://127.0.0.1:{SCHEDULER_PORTS[0]}/readyz\n"
        f"  example consumer   http://127.0.0.1:{CONSUMER_PORT}/metrics\n"
        f"  Prometheus         http://127.0.0.1:{PROMETHEUS_PORT}/graph?g0.expr=kafka_scheduler_fired_total\n"
        f"  logs               {DEMO}/*.log\n"
        f"  bootstrap          {bootstrap}"
    )


def stop_demo() -> None:
    for pid_file in sorted(DEMO.glob("*.pid")):
        pid = int(pid_file.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        pid_file.unlink()
    deadline = time.monotonic() + 30
    state = RUN / "broker.json"
    if state.exists():
        handle = broker.BrokerHandle.from_json(state.read_text())
        broker.stop(handle, timeout_s=max(1.0, deadline - time.monotonic()))
        shutil.rmtree(handle.run_dir, ignore_errors=True)
        state.unlink()
    shutil.rmtree(DEMO, ignore_errors=True)
    _say("stopped the demo: schedulers, consumer, Prometheus and the local broker")
