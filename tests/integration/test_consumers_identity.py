"""Through the REAL scheduler: a retried record keeps its identity; its redelivered original is skipped."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta

from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from consumers import Message
from scheduler.cli import app as cli_app
from scheduler.client import SchedulerClient
from tests.conftest import wait_until
from tests.integration.consumer_helpers import produce_raw, read_all, retrying_app
from tests.scheduler_proc import SchedulerStack


def _fire(
    stack: SchedulerStack, create_topic: Callable[..., str], schedule_id: str
) -> tuple[str, dict[str, bytes]]:
    """A fresh topic with one record the scheduler fired into it (key = the id's middle); its headers."""
    topic = create_topic(f"reminders-{uuid.uuid4().hex[:10]}", partitions=2)
    key = schedule_id.split("-")[1]
    client = SchedulerClient(stack.bootstrap, settings=stack.client_settings)
    client.schedule(schedule_id, topic=topic, key=key, value=b"remind", delay=timedelta(0))
    assert client.flush(30) == 0
    client.close()
    [(_, _, headers)] = read_all(stack.bootstrap, topic, 1)
    return topic, headers


def test_a_record_that_succeeded_on_its_third_attempt_keeps_its_identity_and_its_original_is_skipped(
    scheduler_stack: SchedulerStack, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    topic, fired = _fire(scheduler_stack, create_topic, "rem-C-1")
    seen: list[Message] = []
    registry = CollectorRegistry()
    app = retrying_app(scheduler_stack, unique("reminders"), max_attempts=5, registry=registry)

    @app.handler(topic)
    def remind(message: Message) -> None:
        seen.append(message)
        if message.attempt < 3:
            raise RuntimeError(f"attempt {message.attempt} fails")

    skipped = {"group": app.group_id, "topic": topic, "outcome": "duplicate_skipped"}
    with app.running():
        wait_until(lambda: len(seen) == 3, 60, "the third attempt")
        produce_raw(scheduler_stack.bootstrap, topic, b"C", b"remind", fired)  # the original, once more
        wait_until(
            lambda: registry.get_sample_value("kafka_scheduler_consumer_messages_total", skipped) == 1,
            30,
            "the redelivered original counted as a duplicate",
        )
    assert [m.attempt for m in seen] == [1, 2, 3], "the redelivered original ran the handler again"
    assert {m.fire_id for m in seen} == {fired["scheduler-fire-id"].decode()}
    assert {m.schedule_id for m in seen} == {"rem-C-1"}
    assert {m.due_at for m in seen} == {seen[0].due_at}


def test_a_dead_letter_after_retries_shows_the_original_fire_id_in_dlq_inspect(
    scheduler_stack: SchedulerStack, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    topic, fired = _fire(scheduler_stack, create_topic, "rem-D-1")
    attempts: list[int] = []
    group = unique("reminders")
    app = retrying_app(scheduler_stack, group, max_attempts=2)

    @app.handler(topic)
    def remind(message: Message) -> None:
        attempts.append(message.attempt)
        raise RuntimeError("always")

    dlt = f"{topic}.{group}.dlt"
    with app.running():
        wait_until(
            lambda: len(read_all(scheduler_stack.bootstrap, dlt, 1, timeout_s=2)) == 1, 60, "dead letter"
        )
    result = CliRunner().invoke(
        cli_app, ["dlq", "inspect", "--dlt", dlt, "-o", "json", "-b", scheduler_stack.bootstrap]
    )
    assert result.exit_code == 0, result.output
    [letter] = json.loads(result.stdout)["items"]
    assert letter["reasons"]["attempts"] == "2" and attempts == [1, 2]
    assert letter["headers"]["scheduler-fire-id"] == fired["scheduler-fire-id"].decode()
    assert letter["headers"]["scheduler-schedule-id"] == "rem-D-1"
