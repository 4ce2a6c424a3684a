"""Security: the target allowlist, SASL/SCRAM end to end on a private broker, bad credentials, secrets never logged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from scheduler.client import SchedulerClient
from scheduler.config import ClientSettings
from scheduler.dev import broker
from scheduler.service.settings import ServiceSettings
from scheduler.topics import create_topics
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


@pytest.fixture(scope="module")
def sasl_broker() -> Iterator[broker.BrokerHandle]:
    try:
        handle = broker.start(sasl=True)
    except Exception as exc:  # no Java or jars on this machine
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"no local SASL broker: {exc}")
        pytest.skip(f"no local SASL broker: {exc}")
    try:
        yield handle
    finally:
        broker.stop(handle)


def _sasl_stack(handle: broker.BrokerHandle, tmp_path: Path) -> tuple[SchedulerStack, str]:
    assert handle.sasl_bootstrap is not None
    scheduled = f"sasl-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": handle.sasl_bootstrap, **SASL, "sasl.password": PASSWORD})
    settings = ServiceSettings(bootstrap_servers=handle.sasl_bootstrap, scheduled_topic=scheduled)
    create_topics(admin, settings, 2, 1)
    stack = SchedulerStack(handle.sasl_bootstrap, scheduled, tmp_path, partitions=2)
    stack._admin = admin
    target = stack.create_target(f"{scheduled}-target", 2)
    return stack, target


def test_schedule_fires_through_sasl_scram(sasl_broker: broker.BrokerHandle, tmp_path: Path) -> None:
    stack, target = _sasl_stack(sasl_broker, tmp_path)
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
        fired = _read_sasl(stack.bootstrap, target, consumer_conf)
        assert fired == [b"through SASL"]
    finally:
        assert instance.stop() == 0, instance.log_tail()
    log = instance.log_path.read_text(errors="replace")
    assert "DEBUG" in log  # the log level really was DEBUG
    assert PASSWORD not in log, "the SASL password appeared in the scheduler's log"


def _read_sasl(bootstrap: str, topic: str, conf: dict[str, str]) -> list[bytes | None]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"sasl-reader-{uuid.uuid4().hex[:6]}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            **conf,
        }
    )
    out: list[bytes | None] = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(2)])
        deadline = time.monotonic() + 40
        while not out and time.monotonic() < deadline:
            out += [m.value() for m in consumer.consume(10, 0.5) if m.error() is None]
        return out
    finally:
        consumer.close()


def test_bad_sasl_password_exits_with_a_clear_error(sasl_broker: broker.BrokerHandle, tmp_path: Path) -> None:
    assert sasl_broker.sasl_bootstrap is not None
    env = {
        **os.environ,
        "KAFKA_SCHEDULER_BOOTSTRAP_SERVERS": sasl_broker.sasl_bootstrap,
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
