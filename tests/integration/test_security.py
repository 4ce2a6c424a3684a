"""Security: the target allowlist, SASL/SCRAM end to end on a private broker, bad credentials, secrets never logged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest

from scheduler.client import SchedulerClient
from scheduler.config import ClientSettings
from scheduler.dev import broker
from scheduler.settings import ServiceSettings
from tests.conftest import ReadCommitted, SecureStack
from tests.integration.scheduler_helpers import Tail, read_all
from tests.scheduler_proc import SchedulerStack

PASSWORD = "scheduler-secret"
SASL = {
    "security.protocol": "SASL_PLAINTEXT",
    "sasl.mechanisms": "SCRAM-SHA-256",
    "sasl.username": "scheduler",
}


def test_custom_target_allow_pattern(scheduler_topics: SchedulerStack) -> None:
    stack = scheduler_topics
    allowed = stack.create_target(f"{stack.scheduled_topic}-orders-expired")
    other = stack.create_target(f"{stack.scheduled_topic}-payments")
    pattern = f"{stack.scheduled_topic}-orders-.*"
    instance = stack.start_instance(KAFKA_SCHEDULER_TARGET_ALLOW=pattern)
    with SchedulerClient(settings=stack.client_settings) as client:
        client.schedule("blocked", topic=other, value="no", delay=timedelta(0))
        client.schedule("allowed", topic=allowed, value="yes", delay=timedelta(0))
    tail = Tail(stack.bootstrap, allowed)
    tail.poll_until(lambda r: len(r) == 1, 30, "the allowed fire")
    tail.close()
    rejected = read_all(stack.bootstrap, stack.settings.rejected)
    assert [r.key for r in rejected] == [b"blocked"]
    assert rejected[0].header("scheduler-reject-reason") == "forbidden_target_topic"
    assert pattern in rejected[0].header("scheduler-reject-message")
    assert read_all(stack.bootstrap, other) == []
    assert instance.metric("kafka_scheduler_rejected_total") == 1


def test_schedule_fires_through_sasl_scram(
    secure_broker: broker.BrokerHandle, secure_stack: SecureStack, read_committed: ReadCommitted
) -> None:
    assert secure_broker.sasl_bootstrap is not None
    stack, target = secure_stack(secure_broker.sasl_bootstrap, {**SASL, "sasl.password": PASSWORD})
    instance = stack.start_instance(
        KAFKA_SCHEDULER_KAFKA=json.dumps(SASL),
        KAFKA_SCHEDULER_SASL_PASSWORD=PASSWORD,
        KAFKA_SCHEDULER_LOG_LEVEL="DEBUG",
    )
    try:
        client_settings = ClientSettings(
            bootstrap_servers=stack.bootstrap,
            scheduled_topic=stack.scheduled_topic,
            sasl_username="scheduler",
            sasl_password=PASSWORD,  # type: ignore[arg-type]
            kafka={k: v for k, v in SASL.items() if k != "sasl.username"},
        )
        with SchedulerClient(settings=client_settings) as client:
            client.schedule("secure", topic=target, value="through SASL", delay=timedelta(milliseconds=300))
        consumer_conf = {**SASL, "sasl.password": PASSWORD}
        fired = read_committed(stack.bootstrap, target, consumer_conf)
        assert fired == [b"through SASL"]
    finally:
        assert instance.stop() == 0, instance.log_tail()
    log = instance.log_path.read_text(errors="replace")
    assert "DEBUG" in log  # the log level really was DEBUG
    assert PASSWORD not in log, "the SASL password appeared in the scheduler's log"


def test_bad_sasl_password_exits_with_a_clear_error(secure_broker: broker.BrokerHandle) -> None:
    assert secure_broker.sasl_bootstrap is not None
    env = {
        **os.environ,
        "KAFKA_SCHEDULER_BOOTSTRAP_SERVERS": secure_broker.sasl_bootstrap,
        "KAFKA_SCHEDULER_SCHEDULED_TOPIC": f"sasl-bad-{uuid.uuid4().hex[:6]}",
        "KAFKA_SCHEDULER_KAFKA": json.dumps(SASL),
        "KAFKA_SCHEDULER_SASL_PASSWORD": "not-the-password",
        "KAFKA_SCHEDULER_HTTP_PORT": "0",
        "KAFKA_SCHEDULER_HTTP_HOST": "127.0.0.1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode not in (0, None), done.stderr
    assert "authentication failed" in done.stderr.lower(), done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "not-the-password" not in done.stdout + done.stderr


def test_password_is_masked_in_settings_repr_and_dumps() -> None:
    settings = ServiceSettings(sasl_password=PASSWORD)  # type: ignore[arg-type]
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings.model_dump())
    assert PASSWORD not in settings.model_dump_json()
    assert settings.base_kafka()["sasl.password"] == PASSWORD  # only the client config carries it


def test_nested_env_and_json_env_both_reach_librdkafka(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SCHEDULER_KAFKA__security.protocol", "SASL_SSL")
    assert ServiceSettings().kafka == {"security.protocol": "SASL_SSL"}
    monkeypatch.delenv("KAFKA_SCHEDULER_KAFKA__security.protocol")
    monkeypatch.setenv("KAFKA_SCHEDULER_KAFKA", json.dumps({"ssl.ca.location": "/etc/ca.pem"}))
    assert ServiceSettings().kafka == {"ssl.ca.location": "/etc/ca.pem"}
