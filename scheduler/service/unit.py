"""`kafka-scheduler run --workers N`: N consumer-group members, one process each, behind one metrics/health port.

Worker K runs today's loop unchanged with instance id `<instance>-wK` (transactional id `<group>-<instance>-wK`,
docs/transactional-id.md) and serves on a loopback port of its own; the unit serves /metrics (every worker's
series with a `worker` label), /readyz (ready when every worker is) and /livez (fails if a worker is dead).
Fail closed: a worker that exits on its own ends the unit non-zero and the orchestrator restarts the whole unit,
whose new workers fence the old ones' ids (docs/operations.md, "Workers").
"""

from __future__ import annotations

import contextlib
import faulthandler
import http.client
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType

from prometheus_client import CollectorRegistry, Gauge

from scheduler.http import HealthState, HttpServer, serve
from scheduler.metrics import PREFIX, package_version
from scheduler.service.merge import WorkerMetricsCollector
from scheduler.settings import ServiceSettings

__all__ = ["WorkerUnit", "worker_settings"]

log = logging.getLogger(__name__)

# A worker that cannot answer its loopback port in this long counts as not answering: health answers within a
# probe's usual 1 s timeout even when a worker hangs; a scrape waits longer (Prometheus allows 10 s).
HEALTH_TIMEOUT_S = 0.8
METRICS_TIMEOUT_S = 5.0
WATCH_INTERVAL_S = 0.1
KILL_MARGIN_S = 5.0  # beyond a worker's own shutdown deadline, before the unit SIGKILLs it


def worker_settings(settings: ServiceSettings, worker: int) -> ServiceSettings:
    """Worker K's settings: its own stable instance id (so its own transactional id), a loopback port, one
    member per process, and its own transaction log file."""
    update: dict[str, object] = {
        "instance_id": f"{settings.instance_id}-w{worker}",
        # resolved here: the worker's id is always "set", but static only if the unit's id was
        "static_membership": "off" if settings.group_instance_id is None else "on",
        "workers": 1,
        "http_host": "127.0.0.1",
        "http_port": None if settings.http_port is None else 0,
    }
    if settings.txn_log is not None:
        path = settings.txn_log
        update["txn_log"] = path.with_name(f"{path.stem}-w{worker}{path.suffix}")
    return settings.model_copy(update=update)


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen[bytes]
    port: int | None = None  # known once the worker serves
    failure: str | None = None  # the one line a worker that failed printed
    reports: threading.Thread | None = None

    @property
    def label(self) -> str:
        return str(self.index)

    def ask(self, path: str, timeout_s: float = HEALTH_TIMEOUT_S) -> tuple[int, bytes] | None:
        """GET path on the worker's loopback port (no proxy: http.client); None if it did not answer."""
        if self.port is None:
            return None
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()


class UnitHealth(HealthState):
    """The unit's own checks (started, not draining, its watch loop ticking) and every worker's, asked live."""

    def __init__(self, unit: WorkerUnit) -> None:
        super().__init__(liveness_timeout_s=30.0)
        self._unit = unit

    def readiness(self) -> tuple[bool, dict[str, bool]]:
        ok, checks = super().readiness()
        answers = self._unit.ask_all("/readyz")
        workers = {f"worker_{w}_ready": a is not None and a[0] == 200 for w, a in answers.items()}
        return ok and all(workers.values()), checks | workers

    def liveness(self) -> tuple[bool, dict[str, bool]]:
        ok, checks = super().liveness()
        answers = self._unit.ask_all("/livez")
        workers = {f"worker_{w.label}_alive": _alive(w, answers.get(w.label)) for w in self._unit.workers}
        return ok and all(workers.values()), checks | workers


def _alive(worker: Worker, answer: tuple[int, bytes] | None) -> bool:
    if worker.proc.poll() is not None:
        return False
    if worker.port is None:  # starting: alive while it runs, as a process is before its first tick
        return True
    return answer is not None and answer[0] == 200


class WorkerUnit:
    """`run()` starts the workers and blocks until `stop()`, SIGTERM or a worker's exit; returns the exit code."""

    def __init__(self, settings: ServiceSettings, count: int | None = None) -> None:
        self.settings = settings
        self.count = count or settings.worker_count
        self.registry = CollectorRegistry()
        Gauge(
            PREFIX + "build_info",
            "Always 1; the version label says what runs.",
            ("version",),
            registry=self.registry,
        ).labels(package_version()).set(1)
        self.registry.register(WorkerMetricsCollector(self.scrape_all, skip={PREFIX + "build_info"}))
        self.health = UnitHealth(self)
        self.stopping = threading.Event()
        self.workers: list[Worker] = []
        self.failure: str | None = None  # after run(): the line to end on when it returns non-zero
        self.http: HttpServer | None = None
        self._pool = ThreadPoolExecutor(max_workers=min(64, 2 * self.count), thread_name_prefix="ask-worker")

    def install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: FrameType | None) -> None:
            log.info("received signal %d: stopping %d workers", signum, len(self.workers))
            self.stop()

        faulthandler.register(signal.SIGUSR1)
        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def stop(self) -> None:
        self.health.start_draining()
        self.stopping.set()

    def run(self) -> int:
        exited: Worker | None = None
        try:
            self._start_http()  # a busy port fails before any worker joins the group
            for index in range(self.count):
                self.workers.append(self._spawn(index))
            log.info(
                "started %d workers (instance ids %s-w0..w%d)",
                self.count,
                self.settings.instance_id,
                self.count - 1,
            )
            self.health.mark_started()
            exited = self._watch()
        finally:
            code = self._shutdown(exited)
        return code

    def ask_all(self, path: str, timeout_s: float = HEALTH_TIMEOUT_S) -> dict[str, tuple[int, bytes] | None]:
        """Every worker's answer to GET path, asked at once."""
        workers = list(self.workers)
        answers = self._pool.map(lambda w: w.ask(path, timeout_s), workers)
        return dict(zip((w.label for w in workers), answers, strict=True))

    def scrape_all(self) -> dict[str, str | None]:
        return {
            w: a[1].decode("utf-8", "replace") if a is not None and a[0] == 200 else None
            for w, a in self.ask_all("/metrics", METRICS_TIMEOUT_S).items()
        }

    def _spawn(self, index: int) -> Worker:
        read_fd, write_fd = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "scheduler.cli.worker", str(index), str(write_fd)],
                stdin=subprocess.PIPE,
                pass_fds=(write_fd,),
                process_group=0,  # a terminal's Ctrl-C reaches the unit only, which stops the workers in order
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it died at once: the watch reports its exit
            proc.stdin.write(pickle.dumps(worker_settings(self.settings, index)))
            proc.stdin.flush()  # and kept open: its end of file tells the worker the unit is gone
        worker = Worker(index, proc)
        worker.reports = threading.Thread(
            target=_read_reports, args=(worker, read_fd), name=f"worker-{index}-reports", daemon=True
        )
        worker.reports.start()
        return worker

    def _watch(self) -> Worker | None:
        """Until stop(): the first worker that exits on its own, which ends the unit (fail closed)."""
        while not self.stopping.is_set():
            for worker in self.workers:
                if worker.proc.poll() is not None:
                    return worker
            self.health.tick()
            self.stopping.wait(WATCH_INTERVAL_S)
        return None

    def _shutdown(self, exited: Worker | None) -> int:
        """SIGTERM every worker, wait for each within its shutdown deadline (SIGKILL after), say how it went."""
        self.health.start_draining()
        code = 0
        if exited is not None:
            code = exited.proc.returncode if exited.proc.returncode > 0 else 1
            log.error(
                "worker %d (pid %d, instance %s-w%d) exited with %s: stopping the unit (fail closed: restart it, "
                "and its new workers fence the old ones' transactional ids)",
                exited.index,
                exited.proc.pid,
                self.settings.instance_id,
                exited.index,
                _describe(exited.proc.returncode),
            )
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_timeout_s + KILL_MARGIN_S
        for worker in self.workers:
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop within the shutdown deadline: killing it", worker.index)
                worker.proc.kill()
                worker.proc.wait()
            if worker is not exited and worker.proc.returncode != 0:
                if worker.reports is not None:
                    worker.reports.join(timeout=2.0)  # its pipe closed when it exited: its last line is in
                log.error(
                    "worker %d exited with %s while stopping%s",
                    worker.index,
                    _describe(worker.proc.returncode),
                    f": {worker.failure}" if worker.failure else "",
                )
                code = code or 1
            if worker.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    worker.proc.stdin.close()
        if self.http is not None:
            self.http.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if code == 0:
            log.info("all %d workers stopped cleanly", len(self.workers))
        elif exited is not None:
            self.failure = self._failure_line(exited)
        return code

    def _failure_line(self, exited: Worker) -> str:
        """The line the unit ends on: the first failed worker's own, or what ended it."""
        if exited.reports is not None:
            exited.reports.join(timeout=2.0)  # its pipe closed when it exited: the last line is in
        if exited.failure:
            return exited.failure
        return (
            f"error: worker {exited.index} (instance {self.settings.instance_id}-w{exited.index}) ended with "
            f"{_describe(exited.proc.returncode)}, so the unit stopped its other workers: restart the unit "
            "(its new workers fence the old transactional ids)"
        )

    def _start_http(self) -> None:
        if self.settings.http_port is None:
            return
        host, port = self.settings.http_host, self.settings.http_port
        self.http = serve(self.registry, self.health, host, port)
        log.info("metrics and health of the unit on http://%s:%d", host, self.http.port)


def _read_reports(worker: Worker, fd: int) -> None:
    with open(fd, encoding="ascii", errors="replace") as reports:
        for line in reports:
            kind, _sep, value = line.strip().partition(" ")
            if kind == "port" and value.isdigit():
                worker.port = int(value)
            elif kind == "failed":
                worker.failure = value


def _describe(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"
