"""The metrics port over real HTTP: /metrics, /livez, /readyz, /admin/*."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry

from scheduler.http import HealthState, HttpServer
from scheduler.metrics import SchedulerMetrics

Serve = Callable[..., HttpServer]


def get(server: HttpServer, path: str) -> tuple[int, str, bytes]:
    url = f"http://127.0.0.1:{server.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers["Content-Type"], err.read()


def wait_for_status(server: HttpServer, path: str, status: int, deadline_s: float = 5.0) -> None:
    deadline = time.monotonic() + deadline_s
    seen = None
    while time.monotonic() < deadline:
        seen = get(server, path)[0]
        if seen == status:
            return
        threading.Event().wait(0.01)
    pytest.fail(f"{path} still {seen}, expected {status} within {deadline_s}s")


@pytest.fixture
def serve() -> Iterator[Serve]:
    started: list[HttpServer] = []

    def make(health: HealthState | None = None, **kwargs: object) -> HttpServer:
        registry = kwargs.pop("registry", None) or CollectorRegistry()
        server = HttpServer(registry, health or HealthState(), **kwargs)  # type: ignore[arg-type]
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def ready_health() -> HealthState:
    health = HealthState()
    health.mark_started()
    return health


def test_metrics_serves_the_injected_registry(serve: Serve) -> None:
    registry = CollectorRegistry()
    SchedulerMetrics(registry, version="9.9.9").cancelled.inc(2)
    server = serve(registry=registry)
    status, content_type, body = get(server, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    text = body.decode()
    assert 'kafka_scheduler_build_info{version="9.9.9"} 1.0' in text
    assert "kafka_scheduler_cancelled_total 2.0" in text


def test_port_zero_picks_a_free_port(serve: Serve) -> None:
    assert serve().port != serve().port


def test_livez_goes_503_when_the_loop_stops_ticking(serve: Serve) -> None:
    health = HealthState(liveness_timeout_s=0.2)
    server = serve(health)
    health.tick()
    assert get(server, "/livez")[0] == 200
    wait_for_status(server, "/livez", 503)
    assert json.loads(get(server, "/livez")[2]) == {"status": "fail", "checks": {"loop_ticking": False}}
    health.tick()
    assert get(server, "/livez")[0] == 200


def test_livez_fails_on_a_failing_live_check(serve: Serve) -> None:
    health = HealthState()
    health.set_live_check("handlers_not_stuck", lambda: False)
    server = serve(health)
    status, _, body = get(server, "/livez")
    assert status == 503
    assert json.loads(body)["checks"] == {"loop_ticking": True, "handlers_not_stuck": False}


def test_readyz_needs_started(serve: Serve) -> None:
    health = HealthState()
    server = serve(health)
    status, content_type, body = get(server, "/readyz")
    assert (status, content_type) == (503, "application/json")
    assert json.loads(body) == {"status": "fail", "checks": {"started": False, "not_draining": True}}
    health.mark_started()
    status, _, body = get(server, "/readyz")
    assert status == 200
    assert json.loads(body)["status"] == "ok"


def test_readyz_503_while_draining(serve: Serve) -> None:
    health = ready_health()
    server = serve(health)
    assert get(server, "/readyz")[0] == 200
    health.start_draining()
    assert health.draining
    status, _, body = get(server, "/readyz")
    assert status == 503
    assert json.loads(body)["checks"]["not_draining"] is False
    assert get(server, "/livez")[0] == 200  # draining is not death


def test_readyz_reports_each_check(serve: Serve) -> None:
    health = ready_health()
    rebuilt = {"ok": False}
    health.set_ready_check("partitions_rebuilt", lambda: rebuilt["ok"])
    health.set_ready_check("producer_connected", lambda: True)
    server = serve(health)
    status, _, body = get(server, "/readyz")
    assert status == 503
    assert json.loads(body)["checks"] == {
        "started": True,
        "not_draining": True,
        "partitions_rebuilt": False,
        "producer_connected": True,
    }
    rebuilt["ok"] = True
    assert get(server, "/readyz")[0] == 200
    health.set_ready_check("partitions_rebuilt", None)
    assert "partitions_rebuilt" not in json.loads(get(server, "/readyz")[2])["checks"]


def test_a_raising_check_is_a_failing_check(serve: Serve) -> None:
    health = ready_health()

    def broken() -> bool:
        raise RuntimeError("boom")

    health.set_ready_check("broken", broken)
    status, _, body = get(serve(health), "/readyz")
    assert status == 503
    assert json.loads(body)["checks"]["broken"] is False


def test_admin_routes_to_the_callable(serve: Serve) -> None:
    calls: list[tuple[str, dict[str, list[str]]]] = []

    def admin(path: str, query: dict[str, list[str]]) -> tuple[int, object]:
        calls.append((path, query))
        return 200, {"pending": 3}

    server = serve(admin=admin)
    status, content_type, body = get(server, "/admin/partitions?id=1&id=2&x=y")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == {"pending": 3}
    assert calls == [("/admin/partitions", {"id": ["1", "2"], "x": ["y"]})]


def test_admin_errors(serve: Serve) -> None:
    assert get(serve(), "/admin/anything")[0] == 404

    def broken(path: str, query: dict[str, list[str]]) -> tuple[int, object]:
        raise KeyError(path)

    status, _, body = get(serve(admin=broken), "/admin/x")
    assert status == 500
    assert json.loads(body) == {"error": "KeyError"}


def test_unknown_path_is_404(serve: Serve) -> None:
    assert get(serve(), "/nope")[0] == 404


def test_stop_releases_the_port(serve: Serve) -> None:
    server = serve()
    port = server.port
    server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=2)
    server.stop()  # idempotent
