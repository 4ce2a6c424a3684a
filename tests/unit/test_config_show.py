"""`kafka-scheduler config show`: what `run` would use, forced settings applied, every secret masked."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from scheduler.cli import app
from scheduler.cli.config import MASK, mask

SECRETS = {
    "ssl.key.password": "tls-key-secret-1",
    "ssl.keystore.password": "tls-store-secret-2",
    "ssl.key.pem": "-----BEGIN PRIVATE KEY-----inline-3",
    "sasl.oauthbearer.client.secret": "oauth-secret-4",
}


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("KAFKA_SCHEDULER_SASL_PASSWORD", "scram-secret-0")
    monkeypatch.setenv("KAFKA_SCHEDULER_INSTANCE_ID", "east-1")
    props = [arg for key, value in SECRETS.items() for arg in ("-X", f"{key}={value}")]
    result = CliRunner().invoke(
        app, ["config", "show", "--json", "-b", "k1:9093", "-X", "sasl.username=bob", *props]
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_no_secret_is_printed(shown: str) -> None:
    for secret in ["scram-secret-0", *SECRETS.values()]:
        assert secret not in shown


def test_secrets_are_masked_and_the_rest_is_shown(shown: str) -> None:
    doc = json.loads(shown)
    producer = doc["producer"]
    assert producer["sasl.password"] == MASK and doc["settings"]["sasl_password"] == MASK
    assert all(producer[key] == MASK for key in SECRETS)
    assert producer["sasl.username"] == "bob" and producer["bootstrap.servers"] == "k1:9093"
    # the forced settings win over anything a user sets, and show as such
    assert producer["transactional.id"] == "kafka-scheduler-east-1" and producer["acks"] == "all"
    assert doc["consumer"]["isolation.level"] == "read_committed"
    assert doc["topics"]["state"] == "scheduled.state"


def test_mask_leaves_non_secrets_alone() -> None:
    conf = {"security.protocol": "SSL", "ssl.ca.location": "/etc/ca.pem", "ssl.key.location": "/k", "x": None}
    assert mask(conf) == conf  # file locations are not secrets; absent values stay absent
    assert mask({"nested": {"sasl.password": "p"}}) == {"nested": {"sasl.password": MASK}}
