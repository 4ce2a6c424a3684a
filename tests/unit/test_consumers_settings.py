"""Consumer settings: bad values refused in one line, the environment honoured, each mapping to its own clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from consumers import App, ConsumerSettings
from consumers.idempotency import default_store_path
from consumers.kafka_config import build, consumer_config, producer_config, scheduler_client_config
from scheduler.errors import ConfigError


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("poll_batch", 0),
        ("commit_interval_s", -1.0),
        ("shutdown_timeout_s", -5.0),
        ("revoke_timeout_s", -1.0),
        ("handler_timeout_s", 0.0),
        ("liveness_timeout_s", 0.0),
        ("max_pending_per_partition", 0),
        ("max_queued_per_key", 0),
        ("metrics_port", 70_000),
        ("retry_topic_template", "retries"),
        ("dlt_topic_template", "{topic}.{grop}.dlt"),
        ("log_level", "LOUD"),
    ],
)
def test_a_bad_setting_is_refused_in_one_line_that_names_it(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        ConsumerSettings(**{field: value})
    message = str(caught.value)
    assert f"{field}={value}" in message and "\n" not in message


def test_the_topic_templates_must_differ() -> None:
    with pytest.raises(ConfigError, match="must differ"):
        ConsumerSettings(dlt_topic_template="{topic}.{group}.retry")


def test_app_honours_the_bootstrap_servers_of_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SCHEDULER_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    assert App("g", idempotency=None).bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert App("g", bootstrap_servers="other:9092", idempotency=None).bootstrap_servers == "other:9092"
    settings = ConsumerSettings(poll_batch=10)
    assert consumer_config(settings, "g")["bootstrap.servers"] == "kafka-1:9092,kafka-2:9092"


def test_consumer_and_producer_properties_go_only_to_their_own_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_SCHEDULER_CONSUMER__session.timeout.ms", "6000")
    monkeypatch.setenv("KAFKA_SCHEDULER_KAFKA__client.id", "billing")
    settings = ConsumerSettings(producer={"linger.ms": "20"})
    consumer, producer = consumer_config(settings, "g"), producer_config(settings)
    client = scheduler_client_config(settings)
    assert consumer["session.timeout.ms"] == "6000" and consumer["client.id"] == "billing"
    assert "session.timeout.ms" not in producer and "session.timeout.ms" not in client
    assert producer["linger.ms"] == "20" and client["linger.ms"] == "20" and "linger.ms" not in consumer
    assert producer["client.id"] == "billing" and client["client.id"] == "billing"
    for conf in (consumer, producer, client):
        assert conf["logger"].name == "librdkafka", "librdkafka's lines must go through Python logging"


def test_a_forced_setting_and_an_unknown_property_are_one_line_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"isolation.level='read_uncommitted' contradicts"):
        consumer_config(ConsumerSettings(consumer={"isolation.level": "read_uncommitted"}), "g")
    conf = consumer_config(ConsumerSettings(consumer={"sesion.timeout.ms": "6000"}), "g")
    with pytest.raises(ConfigError) as caught:
        build(Consumer, conf)
    assert 'No such configuration property: "sesion.timeout.ms"' in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_default_store_does_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    here = default_store_path("billing", None)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert (
        default_store_path("billing", None)
        == here
        == tmp_path / "state/kafka-scheduler/billing.idempotency.sqlite3"
    )
    assert default_store_path("a/b", tmp_path / "mine") == tmp_path / "mine/a_b.idempotency.sqlite3"


def test_a_store_left_in_the_working_directory_by_earlier_versions_is_still_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "billing.idempotency.sqlite3").write_bytes(b"")
    assert default_store_path("billing", None) == tmp_path / "billing.idempotency.sqlite3"
