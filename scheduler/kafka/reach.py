"""Does the cluster answer? Once, before an operator command does anything, and all along for `/readyz`.

A metadata request for one topic is the probe: cheap, answered by any broker, and it fails the same way every
other request would (connection refused, TLS handshake, SASL authentication, a timeout).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from scheduler.errors import ClusterUnreachable
from scheduler.kafka.clients import build_admin
from scheduler.settings import ServiceSettings

__all__ = ["BrokerProbe", "check_reachable", "unreachable"]

log = logging.getLogger(__name__)
_CHECK = (
    "check -b/--bootstrap-servers (KAFKA_SCHEDULER_BOOTSTRAP_SERVERS), that the brokers are up, and the security "
    "settings (security.protocol, sasl.*, ssl.*)"
)
# What librdkafka reported, most telling first: (code, what happened, what to check).
_CAUSES = (
    (
        KafkaError._AUTHENTICATION,
        "authentication failed",
        "check sasl.mechanisms and sasl.username (KAFKA_SCHEDULER_KAFKA) and KAFKA_SCHEDULER_SASL_PASSWORD",
    ),
    (
        KafkaError._SSL,
        "TLS handshake failed",
        "check security.protocol, ssl.ca.location (the CA that signed the brokers' certificates) and "
        "ssl.endpoint.identification.algorithm (KAFKA_SCHEDULER_KAFKA)",
    ),
    (KafkaError._RESOLVE, "the address does not resolve", _CHECK),
)
_DEFINITIVE = (KafkaError._AUTHENTICATION, KafkaError._SSL)  # waiting longer changes nothing


def unreachable(
    settings: ServiceSettings, exc: KafkaException | None, errors: list[KafkaError], timeout_s: float
) -> ClusterUnreachable:
    """One line: where, what librdkafka saw (authentication and TLS first), and what to check."""
    seen = {err.code(): err for err in errors}
    at = f"cannot reach Kafka at {settings.bootstrap_servers} within {timeout_s:g}s"
    for code, what, check in _CAUSES:
        if code in seen:
            return ClusterUnreachable(f"{at}: {what}: {seen[code].str()}; {check}")
    last = errors[-1].str() if errors else (str(exc.args[0].str()) if exc is not None and exc.args else "")
    return ClusterUnreachable(f"{at} ({last or 'no answer'}): {_CHECK}")


def check_reachable(settings: ServiceSettings, timeout_s: float | None = None) -> AdminClient:
    """An admin client whose cluster has answered; ClusterUnreachable saying why within `timeout_s`."""
    timeout = settings.request_timeout_s if timeout_s is None else timeout_s
    errors: list[KafkaError] = []
    admin = build_admin(settings, error_cb=errors.append)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            admin.list_topics(topic=settings.scheduled_topic, timeout=max(0.1, min(1.0, remaining)))
            return admin
        except KafkaException as exc:
            admin.poll(0)  # error_cb runs only when the client is polled
            if remaining <= 1.0 or any(e.code() in _DEFINITIVE for e in errors):
                raise unreachable(settings, exc, errors, timeout) from None


class BrokerProbe:
    """Asks the cluster every `interval_s` on a thread of its own; `reachable()` is a fast read for /readyz."""

    def __init__(
        self,
        admin: AdminClient,
        topic: str,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._admin, self._topic, self._interval, self._clock = admin, topic, interval_s, clock
        self._last_answer = clock()  # the service has just checked its topics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reachable(self) -> bool:
        """An answer within the last two intervals plus the request's own timeout."""
        return self._clock() - self._last_answer <= 3 * self._interval

    def probe_once(self) -> bool:
        try:
            self._admin.list_topics(topic=self._topic, timeout=self._interval)
        except KafkaException as exc:
            log.warning("the cluster did not answer a metadata request: %s", exc)
            return False
        self._last_answer = self._clock()
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="broker-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval + 1)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.probe_once()
