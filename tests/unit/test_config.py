"""Forced producer settings are in one dict, contradictions are errors, and murmur2 is Kafka's partitioner."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from scheduler import ClientSettings, ConfigError, SchedulerClient
from scheduler.config import PRODUCER_FORCED, merge_config


def test_producer_forces_the_java_compatible_partitioner_and_durability() -> None:
    assert PRODUCER_FORCED["partitioner"] == "murmur2_random"
    assert PRODUCER_FORCED["acks"] == "all"
    assert PRODUCER_FORCED["enable.idempotence"] is True


def test_client_config_carries_the_forced_settings_over_user_and_defaults() -> None:
    client = SchedulerClient("127.0.0.1:1", config={"linger.ms": 50, "log_level": 0, "acks": "all"})
    try:
        conf = client._core.producer_config
        assert {k: conf[k] for k in PRODUCER_FORCED} == PRODUCER_FORCED
        assert conf["linger.ms"] == 50 and conf["bootstrap.servers"] == "127.0.0.1:1"
    finally:
        client.close(timeout=1)


def test_merge_order_is_defaults_then_user_then_forced() -> None:
    merged = merge_config({"a": 1, "b": 1, "f": "x"}, {"b": 2, "c": 2}, {"f": "x"})
    assert merged == {"a": 1, "b": 2, "c": 2, "f": "x"}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("acks", "1"),
        ("acks", 0),
        ("enable.idempotence", False),
        ("enable.idempotence", "false"),
        ("partitioner", "random"),
    ],
)
def test_user_value_contradicting_a_forced_one_is_an_error_naming_key_and_why(
    key: str, value: object
) -> None:
    with pytest.raises(ConfigError, match=rf"{key}=.*contradicts.*\(.+\)"):
        merge_config({}, {key: value}, PRODUCER_FORCED)


@pytest.mark.parametrize(
    ("key", "value"), [("acks", "all"), ("enable.idempotence", "true"), ("enable.idempotence", True)]
)
def test_user_value_equal_to_the_forced_one_is_fine(key: str, value: object) -> None:
    assert merge_config({}, {key: value}, PRODUCER_FORCED)[key] == PRODUCER_FORCED[key]


def test_client_refuses_a_contradicting_config() -> None:
    with pytest.raises(ConfigError, match="partitioner"):
        SchedulerClient("127.0.0.1:1", config={"partitioner": "consistent_random"})


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SCHEDULER_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("KAFKA_SCHEDULER_SCHEDULED_TOPIC", "sched.in")
    monkeypatch.setenv("KAFKA_SCHEDULER_MAX_PAYLOAD_BYTES", "1000")
    monkeypatch.setenv("KAFKA_SCHEDULER_SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("KAFKA_SCHEDULER_KAFKA__security.protocol", "SASL_SSL")
    s = ClientSettings()
    assert (s.bootstrap_servers, s.scheduled_topic, s.max_payload_bytes) == (
        "k1:9092,k2:9092",
        "sched.in",
        1000,
    )
    assert s.kafka == {"security.protocol": "SASL_SSL"}
    assert isinstance(s.sasl_password, SecretStr) and "hunter2" not in repr(s)
    assert s.librdkafka()["sasl.password"] == "hunter2"


def test_settings_defaults() -> None:
    s = ClientSettings(_env_file=None)  # type: ignore[call-arg]
    assert s.scheduled_topic == "scheduled" and s.max_payload_bytes == 1024 * 1024
    assert s.horizon.days == 36525
