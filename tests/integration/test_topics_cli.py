"""`topics create|verify` and `run` against a live cluster, fed what a new operator gets wrong (issue 25, 6-7)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable

from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from scheduler.cli import app
from scheduler.topics import LOG_CONFIG, STATE_CONFIG
from tests.scheduler_proc import SchedulerStack

runner = CliRunner()


def cli(bootstrap: str, topic: str, *args: str) -> tuple[int, str, list[str]]:
    """(exit code, stdout, non-empty stderr lines) of `kafka-scheduler ARGS -b … --topic …`."""
    result = runner.invoke(app, [*args, "-b", bootstrap, "--topic", topic], catch_exceptions=False)
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, [line for line in result.stderr.splitlines() if line.strip()]


def test_create_names_a_replication_the_cluster_cannot_give(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    brokers = len(admin.list_topics(timeout=10).brokers)
    topic = unique("rf")
    code, _out, err = cli(kafka_bootstrap, topic, "topics", "create", "--replication", str(brokers + 1))
    assert code == 1 and len(err) == 1, err
    assert f"pass --replication {brokers} (this cluster has {brokers} broker(s))" in err[0]
    assert topic not in admin.list_topics(timeout=10).topics


def test_create_says_how_existing_topics_differ(kafka_bootstrap: str, unique: Callable[[str], str]) -> None:
    topic = unique("grow")
    assert cli(kafka_bootstrap, topic, "topics", "create", "--partitions", "6")[0] == 0
    same = cli(kafka_bootstrap, topic, "topics", "create", "--partitions", "6")
    assert same[0] == 0 and same[1].count("exists") == 4  # a rerun with the same arguments is fine
    code, out, err = cli(kafka_bootstrap, topic, "topics", "create", "--partitions", "12")
    assert code == 1 and out.count("(6 partitions, not 12)") == 4, out
    assert len(err) == 1 and "migrate to a new set of topics" in err[0]


def test_verify_never_suggests_adding_partitions_and_warns_of_settings_that_cost(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    scheduled = unique("verify")
    create_topic(scheduled, 3, {**LOG_CONFIG, "retention.ms": "3600000"})
    create_topic(f"{scheduled}.rejected", 3, dict(LOG_CONFIG))
    create_topic(f"{scheduled}.dlt", 3, dict(LOG_CONFIG))
    # compacted and safe, but with Kafka's defaults for everything else: segment.ms of 7 days, no max lag
    state_config = {"cleanup.policy": "compact", "delete.retention.ms": STATE_CONFIG["delete.retention.ms"]}
    create_topic(f"{scheduled}.state", 3, state_config)
    code, out, _err = cli(kafka_bootstrap, scheduled, "topics", "verify")
    assert code == 0, out  # warnings, not refusals
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert any(
        f"{scheduled}: has retention.ms=3600000" in w and "retention.ms=604800000" in w for w in warnings
    )
    assert any(f"{scheduled}.state: has segment.ms=604800000" in w for w in warnings), out
    assert any(f"{scheduled}.state: has max.compaction.lag.ms=" in w for w in warnings), out

    mismatched = unique("verify-parts")
    for name, parts, config in [
        (mismatched, 3, LOG_CONFIG),
        (f"{mismatched}.state", 2, STATE_CONFIG),
        (f"{mismatched}.rejected", 3, LOG_CONFIG),
        (f"{mismatched}.dlt", 3, LOG_CONFIG),
    ]:
        create_topic(name, parts, dict(config))
    code, out, _err = cli(kafka_bootstrap, mismatched, "topics", "verify")
    assert code == 3 and "has 2 partitions but" in out
    assert "add partitions to both" not in out and "never add partitions" in out and "Scaling out" in out


def test_run_with_its_http_port_taken_is_one_line(scheduler_topics: SchedulerStack) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {
            **os.environ,
            **scheduler_topics.env(KAFKA_SCHEDULER_INSTANCE_ID="busy"),
            "KAFKA_SCHEDULER_HTTP_HOST": "127.0.0.1",
            "KAFKA_SCHEDULER_HTTP_PORT": str(port),
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
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"error: cannot serve metrics and health on 127.0.0.1:{port}: Address already in use"
    )
    assert "--http-port" in last
