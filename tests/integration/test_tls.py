"""TLS end to end on a private broker: client, scheduler and consumer over SSL; trusting another CA fails loudly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from scheduler.client import SchedulerClient
from scheduler.config import ClientSettings
from scheduler.dev import broker
from scheduler.errors import DeliveryError
from tests.conftest import ReadCommitted, SecureStack

CERT_REJECTED = "certificate verify failed"  # librdkafka's words for a broker certificate the CA did not sign


def _tls(handle: broker.BrokerHandle) -> tuple[str, dict[str, str]]:
    assert handle.ssl_bootstrap is not None and handle.ssl_ca is not None
    return handle.ssl_bootstrap, {"security.protocol": "SSL", "ssl.ca.location": handle.ssl_ca}


def test_schedule_fires_through_tls(
    secure_broker: broker.BrokerHandle, secure_stack: SecureStack, read_committed: ReadCommitted
) -> None:
    bootstrap, tls = _tls(secure_broker)
    stack, target = secure_stack(bootstrap, tls)
    instance = stack.start_instance(KAFKA_SCHEDULER_KAFKA=json.dumps(tls))
    try:
        settings = ClientSettings(
            bootstrap_servers=bootstrap, scheduled_topic=stack.scheduled_topic, kafka=tls
        )
        with SchedulerClient(settings=settings) as client:
            client.schedule("secure", topic=target, value="through TLS", delay=timedelta(milliseconds=300))
        assert read_committed(bootstrap, target, tls) == [b"through TLS"]
    finally:
        assert instance.stop() == 0, instance.log_tail()


def test_trusting_another_ca_fails_naming_certificate_verification(
    secure_broker: broker.BrokerHandle, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap, _ = _tls(secure_broker)
    wrong_ca = str(broker.make_ca(tmp_path, "other-ca"))
    env = {
        **os.environ,
        "KAFKA_SCHEDULER_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_SCHEDULER_SCHEDULED_TOPIC": f"tls-bad-{uuid.uuid4().hex[:6]}",
        "KAFKA_SCHEDULER_KAFKA__security.protocol": "SSL",  # the key-by-key form of KAFKA_SCHEDULER_KAFKA
        "KAFKA_SCHEDULER_KAFKA__ssl.ca.location": wrong_ca,
        "KAFKA_SCHEDULER_HTTP_PORT": "0",
        "KAFKA_SCHEDULER_HTTP_HOST": "127.0.0.1",
    }
    started = time.monotonic()
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "scheduler.cli", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        # While the scheduler gives up (its 30 s metadata timeout), the producer client fails the same way.
        kafka = {"security.protocol": "SSL", "ssl.ca.location": wrong_ca, "message.timeout.ms": "3000"}
        settings = ClientSettings(bootstrap_servers=bootstrap, scheduled_topic="tls-bad", kafka=kafka)
        with (
            pytest.raises(DeliveryError, match="not delivered"),
            SchedulerClient(settings=settings) as client,
        ):
            client.schedule("never", topic="anywhere", value="x", delay=timedelta(0))
        # librdkafka's log goes through Python logging (the `librdkafka` logger) and says why
        said = [r.getMessage() for r in caplog.records if r.name == "librdkafka"]
        assert any(CERT_REJECTED in line for line in said), (
            "librdkafka's log must say why nothing was delivered"
        )
        out, err = scheduler.communicate(timeout=60)
    finally:
        scheduler.kill()
    assert scheduler.returncode == 1, err[-3000:]
    assert time.monotonic() - started < 60
    assert CERT_REJECTED in err, err[-3000:]
    assert "ssl.ca.location" in err, err[-3000:]  # librdkafka names the setting to check
    last = err.strip().splitlines()[-1]
    assert last.startswith("fatal: cannot reach Kafka at") and "TLS handshake failed" in last, err[-3000:]
    assert "ssl.ca.location" in last, err[-3000:]
    assert "Traceback" not in out + err, err[-3000:]
