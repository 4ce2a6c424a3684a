"""F17 at the edges: commands bigger than what the scheduler can store or reject as they are.

`scheduled` may accept larger records than the state, rejected or target topics (an operator raised its
max.message.bytes, or the topics were created by hand). Such a command must be rejected with a reason, and the
reject itself must fit the rejected topic, or every transaction of that partition aborts on MSG_SIZE_TOO_LARGE
and the partition stops firing for good.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime, timedelta

from confluent_kafka import Producer
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from scheduler.client import SchedulerClient
from tests.conftest import wait_until
from tests.integration.scheduler_helpers import Tail, read_all
from tests.scheduler_proc import SchedulerStack

BIG = 3 * 1024 * 1024


def test_commands_too_large_to_store_or_reject_as_is_are_rejected_and_firing_goes_on(
    scheduler_topics: SchedulerStack,
) -> None:
    stack = scheduler_topics
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        stack.scheduled_topic,
        incremental_configs=[
            ConfigEntry("max.message.bytes", str(BIG), incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for future in stack.admin().incremental_alter_configs([resource]).values():
        future.result(timeout=30)
    roomy = stack.create_target(f"{stack.scheduled_topic}-roomy", config={"max.message.bytes": str(BIG)})
    normal = stack.create_target(f"{stack.scheduled_topic}-normal")
    stack.start_instance()

    producer = Producer({"bootstrap.servers": stack.bootstrap, "message.max.bytes": BIG + 1024})
    huge = b"x" * (1536 * 1024)  # fits `scheduled` and the roomy target, not the state or rejected topics
    now = [("scheduler-delay-ms", b"0")]
    for key, target in ((b"huge-roomy", roomy), (b"huge-normal", normal)):
        producer.produce(
            stack.scheduled_topic,
            huge,
            key,
            partition=0,
            headers=[("scheduler-target-topic", target.encode()), *now],
        )
    producer.produce(
        stack.scheduled_topic,
        b"good",
        b"good",
        partition=0,
        headers=[("scheduler-target-topic", normal.encode()), *now],
    )
    assert producer.flush(30) == 0

    tail = Tail(stack.bootstrap, normal)
    fired = tail.poll_until(lambda r: len(r) >= 1, 40, "the good command behind two oversize ones fires")
    tail.close()
    assert [r.value for r in fired] == [b"good"]
    rejected = read_all(stack.bootstrap, stack.settings.rejected)
    assert Counter(r.header("scheduler-reject-reason") for r in rejected) == Counter({"payload_too_large": 2})
    for record in rejected:
        # too big for the rejected topic as it is: the value is dropped (and said so); the command itself stays
        # in `scheduled` at the offset the reject names
        assert record.value == b"" and record.header("scheduler-reject-dropped") == f"value={len(huge)}"
        assert record.header("scheduler-reject-offset") in {"0", "1"}
    messages = sorted(r.header("scheduler-reject-message") or "" for r in rejected)
    assert "producer message.max.bytes 1000000" in messages[0] + messages[1], messages
    state = read_all(stack.bootstrap, stack.settings.state)
    assert [(r.key, r.value) for r in state] == [(b"good", None)]  # only the good one's fire tombstone


def test_a_fire_the_target_refuses_is_dead_lettered_alone(scheduler_stack: SchedulerStack) -> None:
    """The target's max.message.bytes is lowered after intake: its fire is refused on every attempt and, after
    `fire_attempts`, dead-lettered as delivery_failed; a schedule fired in the same transactions is not charged."""
    stack = scheduler_stack
    target = stack.create_target(f"{stack.scheduled_topic}-shrinks", 2)
    due = datetime.now(UTC) + timedelta(seconds=5)  # the same millisecond: one transaction fires both
    with SchedulerClient(settings=stack.client_settings) as client:
        big = os.urandom(200_000)  # incompressible: the broker checks the (lz4-compressed) batch size
        client.schedule("big", topic=target, value=big, at=due, partition=0)
        client.schedule("small", topic=target, value=b"ok", at=due, partition=1)
    wait_until(lambda: len(read_all(stack.bootstrap, stack.settings.state)) == 2, 20, "both accepted")
    entry = ConfigEntry("max.message.bytes", "50000", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ConfigResource.Type.TOPIC, target, incremental_configs=[entry])
    for future in stack.admin().incremental_alter_configs([resource]).values():
        future.result(timeout=30)

    letters = Tail(stack.bootstrap, stack.settings.dlt)
    dead = letters.poll_until(lambda r: len(r) == 1, 60, "the refused fire's dead letter")
    letters.close()
    assert dead[0].header("scheduler-dlt-reason") == "delivery_failed"
    assert dead[0].header("scheduler-schedule-id") == "big" and dead[0].value == big
    fired = read_all(stack.bootstrap, target)
    assert [r.value for r in fired] == [b"ok"]  # fired once, never charged for its neighbour's refusals
    assert stack.instances[0].metric("kafka_scheduler_dead_letters_total") == 1
