"""The commands against a live cluster, fed what a new operator gets wrong (issue 25, points 6-7 and 9)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from scheduler.cli import app
from scheduler.topics import LOG_CONFIG, STATE_CONFIG
from tests.integration.scheduler_helpers import read_all
from tests.scheduler_proc import SchedulerStack, run_cli

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
            **scheduler_topics.env(KAFKA_SCHEDULER_INSTANCE_ID="busy"),
            "KAFKA_SCHEDULER_HTTP_HOST": "127.0.0.1",
            "KAFKA_SCHEDULER_HTTP_PORT": str(port),
        }
        done = run_cli("run", env=env)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"error: cannot serve metrics and health on 127.0.0.1:{port}: Address already in use"
    )
    assert "--http-port" in last


def test_cancel_and_import_name_a_missing_commands_topic_at_once(
    kafka_bootstrap: str, unique: Callable[[str], str], tmp_path: Path
) -> None:
    missing = unique("missing")
    rows = tmp_path / "rows.csv"
    rows.write_text("id,topic,delay\na,t,1m\n", encoding="utf-8")
    for args in (["cancel", "x"], ["import", str(rows)]):
        started = time.monotonic()
        code, _out, err = cli(kafka_bootstrap, missing, *args)
        assert code == 1 and len(err) == 1, err
        assert err[0].startswith(f"error: topic {missing} does not exist") and "topics create" in err[0]
        assert time.monotonic() - started < 15  # not after the producer's 30 s metadata wait


def test_replay_refuses_a_journal_it_cannot_write_before_sending(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str], tmp_path: Path
) -> None:
    source, dlt = create_topic(unique("source")), create_topic(unique("dlt"))
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    headers = [("consumer-dlt-reason", b"x"), ("consumer-dlt-original-topic", source.encode())]
    producer.produce(dlt, b"v", b"k", headers=headers)
    assert producer.flush(30) == 0
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    journal = str(blocked / "journal.jsonl")
    code, _out, err = cli(
        kafka_bootstrap, unique("scheduled"), "dlq", "replay", "--dlt", dlt, "--journal", journal
    )
    assert (
        code == 1 and len(err) == 1 and err[0].startswith(f"error: cannot write the replay journal {journal}")
    )
    assert read_all(kafka_bootstrap, source) == []
