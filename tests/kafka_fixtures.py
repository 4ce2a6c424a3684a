"""Where the integration tests' broker comes from: an external cluster, a Docker engine, or the local jars."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

KAFKA_IMAGE = "apache/kafka:4.1.1"


def docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return (
            subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def _testcontainers_broker() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://localhost:9092",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_LOG_CLEANER_BACKOFF_MS": "1000",
    }
    container = DockerContainer(KAFKA_IMAGE).with_bind_ports(9092, 9092)
    for name, value in env.items():
        container = container.with_env(name, value)
    with container:
        wait_for_logs(container, "Kafka Server started", timeout=120)
        yield "localhost:9092"


@contextmanager
def _local_broker() -> Iterator[str]:
    from scheduler.dev import broker

    handle = broker.start()
    atexit.register(broker.stop, handle)
    try:
        yield handle.bootstrap
    finally:
        broker.stop(handle)
        shutil.rmtree(handle.run_dir, ignore_errors=True)


@contextmanager
def kafka_broker() -> Iterator[str]:
    """Yield a bootstrap address: KAFKA_BOOTSTRAP_SERVERS, else testcontainers, else the local jars."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
    elif docker_engine_answers():
        with _testcontainers_broker() as bootstrap:
            yield bootstrap
    else:
        with _local_broker() as bootstrap:
            yield bootstrap
