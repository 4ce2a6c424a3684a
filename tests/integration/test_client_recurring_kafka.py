"""Against a real broker (no scheduler): recurring schedules and control commands from both clients and from kcat
land on `scheduled` keyed by the schedule id and decode back to what was sent."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from scheduler import (
    AsyncSchedulerClient,
    Backfill,
    Done,
    Pause,
    Recurrence,
    Resume,
    Schedule,
    SchedulerClient,
)
from scheduler.partitioner import partition_for
from tests.integration.test_client_kafka import decoded, read_all, settings_for


def test_recurring_commands_from_both_clients_decode_to_what_was_sent(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    topic = create_topic(unique("scheduled"), partitions=3)
    starts = datetime(2026, 3, 29, tzinfo=UTC)
    with SchedulerClient(kafka_bootstrap, settings=settings_for(topic)) as client:
        nightly = client.schedule_recurring(
            "invoices-nightly",
            topic="invoices.run",
            value=b'{"all": true}',
            cron="0 2 * * *",
            timezone="Europe/Paris",
            starts_at=starts,
            missed="all",
            overlap="buffer_one",
            headers=[("trace", "t1")],
        )
        client.pause("invoices-nightly")
        client.resume("invoices-nightly")
        client.done("invoices-nightly", "invoices-nightly@4/1774746000000", finished_at=1774746060000)
        client.backfill("invoices-nightly", starts - timedelta(days=3), starts)
        assert client.flush(30) == 0

    async def from_async() -> Schedule:
        async with AsyncSchedulerClient(kafka_bootstrap, settings=settings_for(topic)) as aclient:
            s = await aclient.schedule_recurring(
                "status-refresh", topic="status", value=None, every=timedelta(seconds=30), max_runs=10
            )
            await aclient.pause("status-refresh")
            assert await aclient.flush(30) == 0
            return s

    refresh = asyncio.run(asyncio.wait_for(from_async(), 60))
    records = read_all(kafka_bootstrap, topic, 3, 7)
    for msg in records:
        assert msg.partition() == partition_for(msg.key(), 3)
    by_id: dict[bytes, list[object]] = {}
    for msg in sorted(records, key=lambda m: m.offset()):
        by_id.setdefault(msg.key(), []).append(decoded(msg))
    starts_ms = 1_774_742_400_000
    assert nightly.recurrence == Recurrence(
        cron="0 2 * * *", timezone="Europe/Paris", starts_at=starts_ms, missed="all", overlap="buffer_one"
    )
    assert by_id[b"invoices-nightly"] == [
        nightly,
        Pause("invoices-nightly"),
        Resume("invoices-nightly"),
        Done("invoices-nightly", "invoices-nightly@4/1774746000000", 1_774_746_060_000),
        Backfill("invoices-nightly", starts_ms - 3 * 86_400_000, starts_ms),
    ]
    assert refresh.recurrence == Recurrence(every_ms=30_000, max_runs=10)
    assert by_id[b"status-refresh"] == [refresh, Pause("status-refresh")]


def test_kcat_header_protocol_recurring_and_control(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    topic = create_topic(unique("scheduled"), partitions=1)
    with SchedulerClient(kafka_bootstrap, settings=settings_for(topic)) as client:
        ours = client.schedule_recurring(
            "report", topic="reports", value=b"go", every=900_000, starts_at=1_774_742_400_000, missed="skip"
        )
    base = ["kcat", "-P", "-b", kafka_bootstrap, "-t", topic, "-k", "report"]
    schedule = [
        "-H", "scheduler-target-topic=reports",
        "-H", "scheduler-every-ms=900000",
        "-H", "scheduler-starts-at=2026-03-29T02:00:00+02:00",
        "-H", "scheduler-missed=skip",
    ]  # fmt: skip
    subprocess.run([*base, *schedule], input=b"go\n", check=True, timeout=30)
    subprocess.run([*base, "-H", "scheduler-control=pause"], input=b"x\n", check=True, timeout=30)
    control = ["-H", "scheduler-control=done", "-H", "scheduler-fire-id=report@1/1774742400000"]
    subprocess.run([*base, *control], input=b"x\n", check=True, timeout=30)
    from_client, from_kcat, pause, done = read_all(kafka_bootstrap, topic, 1, 4)
    assert decoded(from_client) == ours
    kcat_schedule = decoded(from_kcat)
    assert isinstance(kcat_schedule, Schedule) and kcat_schedule.headers == ()
    assert kcat_schedule.due_ms == from_kcat.timestamp()[1]  # the record time: the scheduler arms it
    neutral = {"created_ms": 0, "due_ms": 0, "producer": None}
    assert replace(kcat_schedule, **neutral) == replace(ours, **neutral)
    assert decoded(pause) == Pause("report")
    assert decoded(done) == Done("report", "report@1/1774742400000", done.timestamp()[1])
