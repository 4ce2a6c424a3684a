"""The metrics port: /metrics, /livez, /readyz and /admin/*; shared by the scheduler and the consumer apps.

Liveness never touches the broker (a broker outage must not restart every pod); readiness does, via checks.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from scheduler.errors import SchedulerError

__all__ = ["AdminHandler", "HealthState", "HttpServer", "ReadyCheck", "serve"]

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], bool]
# (path, query) -> (HTTP status, JSON-able body); path starts with /admin/.
AdminHandler = Callable[[str, dict[str, list[str]]], tuple[int, object]]


class HealthState:
    """Thread-safe liveness and readiness, fed by the poll loop (tick) and the owner (checks, draining)."""

    def __init__(self, liveness_timeout_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.liveness_timeout_s = liveness_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_tick = clock()  # the grace period before the first tick is one timeout
        self._started = False
        self._draining = False
        self._ready_checks: dict[str, ReadyCheck] = {}
        self._live_checks: dict[str, ReadyCheck] = {}

    def tick(self) -> None:
        """Called by the poll loop on every iteration."""
        now = self._clock()
        with self._lock:
            self._last_tick = now

    def mark_started(self) -> None:
        with self._lock:
            self._started = True

    def start_draining(self) -> None:
        """After SIGTERM: /readyz goes 503 so traffic and partitions move away before shutdown."""
        with self._lock:
            self._draining = True

    @property
    def started(self) -> bool:
        with self._lock:
            return self._started

    @property
    def draining(self) -> bool:
        with self._lock:
            return self._draining

    def set_ready_check(self, name: str, check: ReadyCheck | None) -> None:
        """Add or replace a named readiness check (None removes it); checks must be fast and never block."""
        with self._lock:
            _set(self._ready_checks, name, check)

    def set_live_check(self, name: str, check: ReadyCheck | None) -> None:
        """A liveness check beyond the tick, e.g. "no handler stuck past its timeout"; never the broker."""
        with self._lock:
            _set(self._live_checks, name, check)

    def liveness(self) -> tuple[bool, dict[str, bool]]:
        with self._lock:
            age = self._clock() - self._last_tick
            checks = dict(self._live_checks)
        results = {"loop_ticking": age <= self.liveness_timeout_s} | _run(checks)
        return all(results.values()), results

    def readiness(self) -> tuple[bool, dict[str, bool]]:
        with self._lock:
            results = {"started": self._started, "not_draining": not self._draining}
            checks = dict(self._ready_checks)
        results |= _run(checks)
        return all(results.values()), results


def _set(checks: dict[str, ReadyCheck], name: str, check: ReadyCheck | None) -> None:
    if check is None:
        checks.pop(name, None)
    else:
        checks[name] = check


def _run(checks: dict[str, ReadyCheck]) -> dict[str, bool]:
    results: dict[str, bool] = {}
    for name, check in checks.items():
        try:
            results[name] = bool(check())
        except Exception:
            log.exception("health check %s raised; reporting it as failing", name)
            results[name] = False
    return results


class HttpServer:
    """A ThreadingHTTPServer on a daemon thread; port=0 picks a free port (read `.port` after `start()`)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        health: HealthState,
        host: str = "127.0.0.1",
        port: int = 0,
        admin: AdminHandler | None = None,
    ) -> None:
        self._registry = registry
        self._health = health
        self._admin = admin
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("HttpServer.port is known only after start()")
        return int(self._server.server_address[1])

    def start(self) -> None:
        server = ThreadingHTTPServer(self._address, _handler_class(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.1,), name="http-server", daemon=True
        )
        self._thread.start()
        log.info("http server listening", extra={"host": self._address[0], "port": self.port})

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def route(self, raw_path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET; kept apart from the handler so it is plain to test."""
        url = urlsplit(raw_path)
        if url.path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if url.path == "/livez":
            return _health_response(*self._health.liveness())
        if url.path == "/readyz":
            return _health_response(*self._health.readiness())
        if url.path.startswith("/admin/"):
            return self._route_admin(url.path, url.query)
        return _json(404, {"error": "not found", "routes": ["/metrics", "/livez", "/readyz", "/admin/"]})

    def _route_admin(self, path: str, query: str) -> tuple[int, str, bytes]:
        if self._admin is None:
            return _json(404, {"error": "no admin API on this server"})
        try:
            status, body = self._admin(path, parse_qs(query))
        except Exception as exc:
            log.exception("admin handler failed", extra={"path": path})
            return _json(500, {"error": type(exc).__name__})
        return _json(status, body)


def serve(registry: CollectorRegistry, health: HealthState, host: str, port: int) -> HttpServer:
    """A started server for the scheduler's metrics and health; a port in use says what to do about it."""
    server = HttpServer(registry, health, host, port)
    try:
        server.start()
    except OSError as exc:
        raise SchedulerError(
            f"cannot serve metrics and health on {host}:{port}: {exc.strerror or exc}: stop what holds the "
            "port, or pass --http-port / KAFKA_SCHEDULER_HTTP_PORT (0 picks a free port)"
        ) from None
    return server


def _health_response(ok: bool, checks: dict[str, bool]) -> tuple[int, str, bytes]:
    return _json(200 if ok else 503, {"status": "ok" if ok else "fail", "checks": checks})


def _json(status: int, body: object) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(body, default=str).encode()


def _handler_class(server: HttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, content_type, body = server.route(self.path)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("http %s", format % args)

    return Handler
