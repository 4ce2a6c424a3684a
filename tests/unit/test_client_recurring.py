"""The clients' recurring API: what they send decodes to what was asked, and what is wrong is refused at the call
with InvalidRecurrence (reason invalid_recurrence) before anything is queued."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scheduler import (
    AsyncSchedulerClient,
    Backfill,
    ClientSettings,
    Done,
    InvalidRecurrence,
    InvalidScheduleId,
    InvalidTopic,
    Pause,
    Recurrence,
    Resume,
    Schedule,
    SchedulerClient,
)
from scheduler.codec import decode_command
from scheduler.model import RejectReason

QUIET = {"log_level": 0}
SETTINGS = ClientSettings(check_targets=False)
JAN = datetime(2026, 1, 1, tzinfo=UTC)
JAN_MS = 1_767_225_600_000


class Sent:
    """The records a client queued, decoded as the scheduler will."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []

    def decoded(self) -> list[Any]:
        return [decode_command(key, value, None, JAN_MS) for key, value in self.records]


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def client(sent: Sent) -> Iterator[SchedulerClient]:
    c = SchedulerClient("127.0.0.1:1", settings=SETTINGS, config=QUIET)
    c._produce = lambda key, value: sent.records.append((key, value))  # type: ignore[method-assign]
    yield c
    c.close(timeout=1)


def test_a_cron_schedule_with_every_option_is_sent_as_asked(client: SchedulerClient, sent: Sent) -> None:
    s = client.schedule_recurring(
        "invoices",
        topic="jobs",
        value=b"run",
        cron="0 2 * * *",
        timezone="Europe/Paris",
        starts_at=JAN,
        ends_at=JAN_MS + 86_400_000 * 365,
        max_runs=400,
        missed="all",
        overlap="skip",
        catch_up=timedelta(hours=6),
        key=b"k",
        headers={"h": "v"},
        partition=2,
    )
    assert s.recurrence == Recurrence(
        cron="0 2 * * *",
        timezone="Europe/Paris",
        starts_at=JAN_MS,
        ends_at=JAN_MS + 86_400_000 * 365,
        max_runs=400,
        missed="all",
        overlap="skip",
        catch_up_ms=6 * 3_600_000,
    )
    assert (s.target_key, s.headers, s.target_partition, s.due_ms) == (b"k", (("h", b"v"),), 2, s.created_ms)
    assert sent.decoded() == [s]
    assert sent.records[0][0] == b"invoices"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ({"every": timedelta(minutes=15)}, Recurrence(every_ms=900_000)),
        ({"every": 900_000}, Recurrence(every_ms=900_000)),
        ({"after": timedelta(seconds=90), "paused": True}, Recurrence(after_ms=90_000, paused=True)),
    ],
)
def test_every_and_after_take_a_timedelta_or_ms(
    client: SchedulerClient, sent: Sent, kind: dict[str, Any], expected: Recurrence
) -> None:
    s = client.schedule_recurring("refresh", topic="status", value=None, **kind)
    assert s.recurrence == expected and sent.decoded() == [s]


def test_control_commands_are_sent_on_their_branches(client: SchedulerClient, sent: Sent) -> None:
    client.pause("job")
    client.resume("job")
    client.done("job", "job@12/1767225600000", finished_at=JAN_MS + 5)
    client.backfill("job", JAN - timedelta(days=2), JAN_MS)
    assert sent.decoded() == [
        Pause("job"),
        Resume("job"),
        Done("job", "job@12/1767225600000", JAN_MS + 5),
        Backfill("job", JAN_MS - 2 * 86_400_000, JAN_MS),
    ]


def test_done_defaults_to_now(client: SchedulerClient, sent: Sent) -> None:
    before = int(datetime.now(UTC).timestamp() * 1000)
    client.done("a@b", "a@b@3/4")  # an id with an @: the fire id's last @ splits it
    (done,) = sent.decoded()
    assert isinstance(done, Done) and done.fire_id == "a@b@3/4" and done.finished_ms >= before


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({}, "exactly one of cron="),
        ({"cron": "* * * * *", "every": 5000}, "got cron, every"),
        ({"every": 5000, "after": 5000}, "got every, after"),
        ({"cron": ""}, "non-empty"),
        ({"cron": 5}, "non-empty str"),
        ({"every": 0}, "at least 1 ms"),
        ({"every": timedelta(seconds=-1)}, "at least 1 ms"),
        ({"every": 1.5}, "timedelta or int"),
        ({"every": True}, "timedelta or int"),
        ({"after": 5000, "overlap": "skip"}, "never overlaps"),
        ({"every": 5000, "timezone": "Mars/Olympus"}, "not an IANA zone"),
        ({"every": 5000, "timezone": ""}, "IANA zone name"),
        ({"every": 5000, "starts_at": datetime(2026, 1, 1)}, "naive"),
        ({"every": 5000, "starts_at": -1}, "epoch milliseconds"),
        ({"every": 5000, "starts_at": JAN_MS, "ends_at": JAN - timedelta(seconds=1)}, "before starts_at"),
        ({"every": 5000, "max_runs": 0}, "max_runs"),
        ({"every": 5000, "max_runs": "3"}, "max_runs"),
        ({"every": 5000, "missed": "never"}, "skip, latest, all"),
        ({"every": 5000, "overlap": "queue"}, "allow, skip, buffer_one"),
        ({"every": 5000, "catch_up": -1}, "at least 0 ms"),
        ({"every": 5000, "paused": 1}, "paused must be a bool"),
    ],
)
def test_what_the_client_can_check_is_refused_before_sending(
    client: SchedulerClient, sent: Sent, args: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidRecurrence, match=words) as raised:
        client.schedule_recurring("job", topic="jobs", value=b"", **args)
    assert raised.value.reason is RejectReason.INVALID_RECURRENCE
    assert not sent.records


def test_the_message_is_checked_as_for_schedule(client: SchedulerClient, sent: Sent) -> None:
    with pytest.raises(InvalidTopic):
        client.schedule_recurring("job", topic="a b", value=b"", every=5000)
    with pytest.raises(InvalidScheduleId):
        client.schedule_recurring("", topic="jobs", value=b"", every=5000)
    with pytest.raises(InvalidScheduleId):
        client.pause("")
    assert not sent.records


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.done("job", "other@1/2"),
        lambda c: c.done("job", "job"),
        lambda c: c.backfill("job", JAN_MS, JAN_MS - 1),
        lambda c: c.backfill("job", datetime(2026, 1, 1), JAN_MS),
    ],
)
def test_bad_control_commands_are_refused(client: SchedulerClient, sent: Sent, call: Any) -> None:
    with pytest.raises(InvalidRecurrence):
        call(client)
    assert not sent.records


def test_the_async_client_sends_the_same_commands() -> None:
    records: list[tuple[bytes, bytes]] = []

    async def produce(key: bytes, value: bytes) -> None:
        records.append((key, value))

    async def run() -> Schedule:
        async with AsyncSchedulerClient("127.0.0.1:1", settings=SETTINGS, config=QUIET) as c:
            c._produce = produce  # type: ignore[method-assign]
            s = await c.schedule_recurring("job", topic="jobs", value=b"v", every=timedelta(seconds=5))
            await c.pause("job")
            await c.resume("job")
            await c.done("job", "job@1/2", finished_at=3)
            await c.backfill("job", 0, JAN)
            with pytest.raises(InvalidRecurrence):
                await c.schedule_recurring("job", topic="jobs", value=b"v")
            return s

    s = asyncio.run(asyncio.wait_for(run(), 10))
    assert s.recurrence == Recurrence(every_ms=5000)
    assert [decode_command(k, v, None, JAN_MS) for k, v in records] == [
        s,
        Pause("job"),
        Resume("job"),
        Done("job", "job@1/2", 3),
        Backfill("job", 0, JAN_MS),
    ]
