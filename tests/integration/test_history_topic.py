"""KAFKA_SCHEDULER_HISTORY_TOPIC: a copy of every fire in the fire's transaction, so exactly the committed fires."""

from __future__ import annotations

import os
import time
from collections import Counter
from datetime import timedelta

from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from scheduler.client import SchedulerClient
from scheduler.settings import ServiceSettings
from scheduler.topics import create_topics, verify_topics
from tests.conftest import wait_until
from tests.integration.scheduler_helpers import read_all
from tests.integration.test_scheduler_faults import pending_in_state
from tests.scheduler_proc import SchedulerStack

SMALL = 10
DUE_IN = timedelta(
    seconds=8
)  # time to lower the target's limit, and for its leader to apply it, before the fires


def test_history_holds_exactly_the_fires_and_nothing_of_aborted_transactions(
    scheduler_topics: SchedulerStack,
) -> None:
    """A fire its target refuses (max.message.bytes lowered after intake) aborts the transactions it is in,
    three times, then goes to the dead letters; the other fires aborted with it commit after."""
    stack = scheduler_topics
    history = f"{stack.scheduled_topic}.history"
    settings = ServiceSettings(
        bootstrap_servers=stack.bootstrap, scheduled_topic=stack.scheduled_topic, history_topic=history
    )
    missing = [p for p in verify_topics(stack.admin(), settings) if p.fatal]
    assert [(p.topic, p.problem) for p in missing] == [(history, "topic does not exist")]
    assert create_topics(stack.admin(), settings, stack.partitions, 1)[history] == "created"
    wait_until(lambda: history in stack.admin().list_topics(timeout=5).topics, 30, "the history topic")
    assert not [p for p in verify_topics(stack.admin(), settings) if p.fatal]

    target = stack.create_target(f"{stack.scheduled_topic}-target")
    # its own topic: in a batch with the small fires, the broker would refuse them all
    refusing = stack.create_target(f"{stack.scheduled_topic}-refusing", partitions=1)
    stack.start_instance(KAFKA_SCHEDULER_HISTORY_TOPIC=history)
    due = time.monotonic() + DUE_IN.total_seconds()
    with SchedulerClient(settings=stack.client_settings) as client:
        for i in range(SMALL):
            client.schedule(f"small-{i}", topic=target, value=str(i), delay=DUE_IN)
        big = os.urandom(300_000)  # incompressible: lz4 cannot bring it under the lowered limit
        client.schedule("big", topic=refusing, value=big, delay=DUE_IN)
    wait_until(lambda: pending_in_state(stack) == SMALL + 1, 30, "all accepted")
    lowered = ConfigEntry("max.message.bytes", "100000", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ConfigResource.Type.TOPIC, refusing, incremental_configs=[lowered])
    for future in stack.admin().incremental_alter_configs([resource]).values():
        future.result(timeout=30)
    assert time.monotonic() < due - 2, "the limit was lowered too close to the fires: inconclusive"
    wait_until(lambda: dead_letters(stack) == ["big"], 60, "the big fire dead-lettered after its attempts")
    wait_until(lambda: pending_in_state(stack) == 0, 30, "state topic drained")

    fires = Counter(r.header("scheduler-fire-id") for r in read_all(stack.bootstrap, target))
    copies = read_all(stack.bootstrap, history)
    assert len(fires) == SMALL and set(fires.values()) == {1}
    assert read_all(stack.bootstrap, refusing) == []
    assert Counter(r.header("scheduler-fire-id") for r in copies) == fires
    assert {r.header("scheduler-fired-topic") for r in copies} == {target}
    uncommitted = Counter(
        r.header("scheduler-fire-id") for r in read_all(stack.bootstrap, history, committed=False)
    )
    aborted = uncommitted - fires
    assert aborted, "the aborted attempts' copies are in the log (read_uncommitted sees them)"
    assert any(fid.startswith("big@") for fid in aborted)


def dead_letters(stack: SchedulerStack) -> list[str]:
    return [r.header("scheduler-schedule-id") for r in read_all(stack.bootstrap, stack.settings.dlt)]
