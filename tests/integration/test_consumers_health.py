"""The metrics port: /metrics carries the consumer metrics; a handler stuck past its time limit is dead-lettered
(no retry allowed here) and /livez fails while its abandoned thread still runs."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable

from consumers import Message, RetryPolicy
from tests.conftest import wait_until
from tests.integration.consumer_helpers import make_app, produce, read_all


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_metrics_and_liveness_on_the_metrics_port(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    topic = create_topic(unique("jobs"), partitions=1)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    release = threading.Event()
    app = make_app(
        kafka_bootstrap,
        unique("g"),
        retry=RetryPolicy(max_attempts=1),
        metrics_port=port,
        metrics_host="127.0.0.1",
        handler_timeout_s=0.5,
    )

    @app.handler(topic)
    def handle(message: Message) -> None:
        if message.value == b"stuck":
            release.wait(30)

    try:
        with app.running():
            wait_until(lambda: _status(f"{base}/readyz") == 200, 30, "ready")
            produce(kafka_bootstrap, topic, [(b"a", b"fine", None)])
            body = ""

            def scraped() -> bool:
                nonlocal body
                with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
                    body = response.read().decode()
                return 'outcome="success"' in body

            wait_until(scraped, 30, "the success counted in /metrics")
            assert "kafka_scheduler_consumer_handler_seconds_bucket" in body
            assert _status(f"{base}/livez") == 200
            produce(kafka_bootstrap, topic, [(b"b", b"stuck", None)])
            wait_until(lambda: _status(f"{base}/livez") == 503, 30, "livez failing on the stuck handler")
            [(key, _, headers)] = read_all(kafka_bootstrap, f"{topic}.{app.group_id}.dlt", 1)
            assert (
                key == b"b" and headers["consumer-dlt-exception-type"] == b"consumers.timeouts.HandlerTimeout"
            )
            assert 'kafka_scheduler_consumer_abandoned_threads{group="' in _scrape(f"{base}/metrics")
            release.set()
            wait_until(lambda: _status(f"{base}/livez") == 200, 30, "livez recovered")
    finally:
        release.set()
