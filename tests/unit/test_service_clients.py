"""The scheduler's forced client settings: one place, and the ones correctness depends on."""

from __future__ import annotations

import pytest

from scheduler.errors import ConfigError
from scheduler.kafka.clients import consumer_forced, producer_config
from scheduler.settings import ServiceSettings


def test_undeliverable_records_fail_before_the_transaction_times_out() -> None:
    """Otherwise the coordinator aborts first and fences the producer (seen with a deleted target)."""
    for timeout in (1000, 10_000, 60_000):
        conf = producer_config(ServiceSettings(transaction_timeout_ms=timeout))
        assert conf["message.timeout.ms"] < conf["transaction.timeout.ms"] == timeout


def test_producer_is_transactional_idempotent_and_never_creates_topics() -> None:
    settings = ServiceSettings(group_id="g", instance_id="i1")
    conf = producer_config(settings)
    assert conf["transactional.id"] == "g-i1"
    assert conf["enable.idempotence"] is True
    assert conf["acks"] == "all"
    assert conf["allow.auto.create.topics"] is False


def test_intake_reads_committed_and_commits_only_in_transactions() -> None:
    forced = consumer_forced(ServiceSettings())
    assert forced["isolation.level"] == "read_committed"
    assert forced["enable.auto.commit"] is False
    assert forced["allow.auto.create.topics"] is False


def test_a_user_setting_that_contradicts_a_forced_one_is_an_error() -> None:
    with pytest.raises(ConfigError):
        producer_config(ServiceSettings(producer={"enable.idempotence": False}))
