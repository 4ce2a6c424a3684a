"""The client refuses bad commands before sending, with the named error, and never loses a delivery error."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler import (
    AsyncSchedulerClient,
    ClientSettings,
    DeliveryError,
    InvalidDeliverAt,
    InvalidHeaders,
    InvalidScheduleId,
    InvalidTopic,
    PayloadTooLarge,
    Schedule,
    SchedulerClient,
    SchedulerError,
    ValidationError,
)
from scheduler.client import ClientCore, DeliveryLatch, due_ms
from scheduler.codec import decode_command
from scheduler.model import RejectReason

NOW = 1_767_225_600_000
YEAR = timedelta(days=365)
HORIZON = timedelta(days=36525)
QUIET = {"log_level": 0}


@pytest.fixture
def client() -> Iterator[SchedulerClient]:
    """A client pointed nowhere: validation must fail before anything reaches its queue."""
    c = SchedulerClient("127.0.0.1:1", config=QUIET)
    sent: list[bytes] = []
    c._produce = lambda key, value: sent.append(key)  # type: ignore[method-assign]
    c._send = lambda topic, value, key, *_: sent.append(key)  # schedule()'s own produce call
    yield c
    c.close(timeout=1)
    assert not sent, "a refused command was queued"


def send(client: SchedulerClient, **overrides: Any) -> Schedule:
    args: dict[str, Any] = {"topic": "orders", "value": b"v", "delay": timedelta(0)}
    args.update(overrides)
    return client.schedule(args.pop("schedule_id", "id-1"), **args)


@pytest.mark.parametrize("bad", ["", "x" * 256, "é" * 128, 42, None, "\ud800"])
def test_bad_ids_are_refused(client: SchedulerClient, bad: Any) -> None:
    with pytest.raises(InvalidScheduleId):
        send(client, schedule_id=bad)
    with pytest.raises(InvalidScheduleId):
        client.cancel(bad)


def test_longest_id_is_255_utf8_bytes() -> None:
    core = ClientCore("127.0.0.1:1", None, QUIET)
    s, key, _ = core.build("é" * 127 + "x", topic="t", value=None, delay=timedelta(0))
    assert len(key) == 255 and s.id == "é" * 127 + "x"


@pytest.mark.parametrize("bad", ["", ".", "..", "a b", "a/b", "x" * 250, "ü", 7])
def test_bad_topics_are_refused(client: SchedulerClient, bad: Any) -> None:
    with pytest.raises(InvalidTopic, match="legal Kafka topic"):
        send(client, topic=bad)


@pytest.mark.parametrize(
    "when",
    [
        {},
        {"at": NOW, "delay": timedelta(0)},
        {"at": datetime(2030, 1, 1)},  # naive
        {"at": -1},
        {"at": True},
        {"at": 1.5e12},
        {"at": "2030-01-01T00:00:00Z"},
        {"delay": timedelta(milliseconds=-1)},
        {"delay": 5000},
        {"at": datetime.now(UTC) + HORIZON + timedelta(days=2)},
        {"at": NOW * 1000},  # microseconds passed as milliseconds
    ],
)
def test_bad_due_times_are_refused(client: SchedulerClient, when: dict[str, Any]) -> None:
    args = {"topic": "orders", "value": b"v", **when}
    with pytest.raises(InvalidDeliverAt):
        client.schedule("id-1", **args)


def test_zero_means_now_not_missing() -> None:
    """arq's truthiness bug: at=0 and delay=timedelta(0) are real values, not absent ones."""
    assert due_ms(None, timedelta(0), NOW, HORIZON) == NOW
    assert due_ms(0, None, NOW, HORIZON) == 0
    with pytest.raises(InvalidDeliverAt, match="exactly one"):
        due_ms(0, timedelta(0), NOW, HORIZON)


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.timezones()))
def test_aware_datetimes_become_exact_epoch_ms(at: datetime) -> None:
    expected = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert due_ms(at, None, NOW, HORIZON) == expected


def test_offsets_are_honoured() -> None:
    at = datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    assert due_ms(at, None, NOW, HORIZON) == NOW


def test_horizon_is_configurable() -> None:
    assert due_ms(NOW + 10 * 86_400_000, None, NOW, timedelta(days=10)) == NOW + 10 * 86_400_000
    with pytest.raises(InvalidDeliverAt, match="horizon"):
        due_ms(NOW + 10 * 86_400_000 + 1, None, NOW, timedelta(days=10))


def test_values_keys_and_headers_accept_bytes_str_none() -> None:
    core = ClientCore("127.0.0.1:1", None, QUIET)
    s, key, value = core.build(
        "é-1",
        topic="orders",
        value="ünï",
        key="k",
        headers={"a": "x", "b": None, "c": b"\x00"},
        at=NOW,
        partition=3,
    )
    assert (s.payload, s.target_key, s.headers) == (
        "ünï".encode(),
        b"k",
        (("a", b"x"), ("b", None), ("c", b"\x00")),
    )
    assert decode_command(key, value, None, NOW) == s


def test_header_pairs_keep_order_and_duplicates(client: SchedulerClient) -> None:
    core = ClientCore("127.0.0.1:1", None, QUIET)
    s, _, _ = core.build("i", topic="t", value=None, headers=[("b", "1"), ("a", "2"), ("b", "3")], at=NOW)
    assert s.headers == (("b", b"1"), ("a", b"2"), ("b", b"3"))


@pytest.mark.parametrize(
    "bad",
    [
        [(1, b"x")],
        [("", b"x")],
        [("a", 5)],
        [("a", b"x", b"y")],
        ["ab"],
        {"scheduler-target-topic": b"elsewhere"},
        {"scheduler-epoch": b"1"},
    ],
)
def test_bad_headers_are_refused(client: SchedulerClient, bad: Any) -> None:
    with pytest.raises(InvalidHeaders):
        send(client, headers=bad)


@pytest.mark.parametrize(
    "bad", [{"value": 12}, {"value": {"a": 1}}, {"key": 3.0}, {"partition": -1}, {"partition": True}]
)
def test_bad_values_are_refused(client: SchedulerClient, bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        send(client, **bad)


def test_size_limit_counts_payload_key_and_headers() -> None:
    client = SchedulerClient("127.0.0.1:1", settings=ClientSettings(max_payload_bytes=100), config=QUIET)
    try:
        client._core.build("i", topic="t", value=b"x" * 50, key=b"k" * 25, headers={"h": b"y" * 24}, at=NOW)
        with pytest.raises(PayloadTooLarge, match="max_payload_bytes=100"):
            send(client, value=b"x" * 50, key=b"k" * 25, headers={"h": b"y" * 25})
        with pytest.raises(PayloadTooLarge):
            send(client, value=b"x" * 101)
    finally:
        client.close(timeout=1)


def test_validation_errors_are_value_errors_under_one_root() -> None:
    for cls in (InvalidScheduleId, InvalidTopic, InvalidDeliverAt, PayloadTooLarge, InvalidHeaders):
        assert (
            issubclass(cls, ValidationError)
            and issubclass(cls, ValueError)
            and issubclass(cls, SchedulerError)
        )


def test_latched_delivery_error_is_raised_once_at_the_next_call() -> None:
    latch = DeliveryLatch()
    latch.raise_if_failed()
    latch.record(b"a", "Broker: topic authorization failed")
    latch.record(b"b", "timed out")
    with pytest.raises(DeliveryError, match=r"2 earlier command.*b'a'.*authorization"):
        latch.raise_if_failed()
    latch.raise_if_failed()


def test_latched_error_surfaces_at_schedule_cancel_and_flush(client: SchedulerClient) -> None:
    for call in (lambda: send(client), lambda: client.cancel("x"), lambda: client.flush(0)):
        client._on_delivery(_FakeError("lost"), _FakeMessage(b"id-9"))
        with pytest.raises(DeliveryError, match=r"id-9.*lost"):
            call()


def test_closed_client_refuses_calls() -> None:
    c = SchedulerClient("127.0.0.1:1", config=QUIET)
    c.close(timeout=1)
    with pytest.raises(SchedulerError, match="closed"):
        c.cancel("x")


def test_async_client_shares_validation() -> None:
    async def run() -> None:
        async with AsyncSchedulerClient("127.0.0.1:1", config=QUIET) as c:
            with pytest.raises(InvalidDeliverAt):
                await c.schedule("i", topic="t", value=b"", at=datetime(2030, 1, 1))
            with pytest.raises(InvalidScheduleId):
                await c.cancel("")
            assert c._producer is None  # nothing was ever produced

    asyncio.run(asyncio.wait_for(run(), 10))


class _FakeError:
    def __init__(self, text: str) -> None:
        self.text = text

    def str(self) -> str:
        return self.text


class _FakeMessage:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def key(self) -> bytes:
        return self._key


@pytest.mark.parametrize("bad", [2**31, 2**40, 10**400, -1, True, 1.0, "3"], ids=repr)
def test_partitions_the_scheduler_cannot_take_are_refused_with_its_reason(
    client: SchedulerClient, bad: Any
) -> None:
    with pytest.raises(InvalidTopic, match="invalid_target_topic") as refused:
        send(client, partition=bad)
    assert refused.value.reason == RejectReason.INVALID_TARGET_TOPIC
    assert len(str(refused.value)) < 300  # 10**400 is not repeated back


def test_the_largest_partition_is_an_int32() -> None:
    core = ClientCore("127.0.0.1:1", None, QUIET)
    schedule, _key, _value = core.build("i", topic="t", value=None, partition=2**31 - 1, delay=timedelta(0))
    assert schedule.target_partition == 2**31 - 1


@pytest.mark.parametrize(
    "topic",
    [
        "__consumer_offsets",
        "__transaction_state",
        "sched.in",
        "sched.in.state",
        "sched.in.rejected",
        "sched.in.dlt",
    ],
)
def test_internal_and_the_schedulers_own_topics_are_refused_with_its_reason(topic: str) -> None:
    core = ClientCore("127.0.0.1:1", ClientSettings(scheduled_topic="sched.in", _env_file=None), QUIET)  # type: ignore[call-arg]
    with pytest.raises(InvalidTopic, match="forbidden_target_topic") as refused:
        core.build("i", topic=topic, value=None, delay=timedelta(0))
    assert refused.value.reason == RejectReason.FORBIDDEN_TARGET_TOPIC


def test_own_topics_follow_the_schedulers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SCHEDULER_STATE_TOPIC", "custom-state")
    core = ClientCore("127.0.0.1:1", None, QUIET)
    with pytest.raises(InvalidTopic, match="one of the scheduler's own topics"):
        core.build("i", topic="custom-state", value=None, delay=timedelta(0))
    core.build("i", topic="scheduled.state-archive", value=None, delay=timedelta(0))  # only the exact names


def test_every_refusal_carries_a_word_of_the_schedulers_reasons() -> None:
    for error in (InvalidScheduleId, InvalidTopic, InvalidDeliverAt, PayloadTooLarge):
        assert error("x").reason in set(RejectReason)
    with pytest.raises(InvalidDeliverAt) as late:
        due_ms(NOW + (HORIZON + YEAR) // timedelta(milliseconds=1), None, NOW, HORIZON)
    assert late.value.reason == RejectReason.DUE_OUT_OF_RANGE


WHEN = st.one_of(
    st.fixed_dictionaries({"delay": st.timedeltas(min_value=timedelta(days=-2), max_value=HORIZON * 2)}),
    st.fixed_dictionaries({"at": st.integers(min_value=-(2**40), max_value=2**62)}),
    st.fixed_dictionaries({"at": st.integers(min_value=0, max_value=2**45), "delay": st.just(timedelta(0))}),
    st.fixed_dictionaries({"at": st.booleans()}),
)


@given(WHEN)
def test_the_short_paths_of_build_decide_due_times_as_due_ms(when: dict[str, Any]) -> None:
    core = ClientCore("127.0.0.1:1", None, QUIET)
    try:
        expected: int | None = due_ms(when.get("at"), when.get("delay"), NOW, HORIZON)
    except InvalidDeliverAt:
        expected = None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("scheduler.client.now_ms", lambda: NOW)
        try:
            schedule: Schedule | None = core.build("i", topic="t", value=None, **when)[0]
        except InvalidDeliverAt:
            schedule = None
    assert (None if schedule is None else schedule.due_ms) == expected


def test_a_target_checked_once_does_not_let_another_through() -> None:
    core = ClientCore("127.0.0.1:1", ClientSettings(scheduled_topic="sched.in", _env_file=None), QUIET)  # type: ignore[call-arg]
    for _ in range(2):
        core.build("i", topic="orders", value=None, delay=timedelta(0))
    for bad in ("sched.in.state", "__consumer_offsets", "a b", 7, ["orders"]):
        with pytest.raises(InvalidTopic):
            core.build("i", topic=bad, value=None, delay=timedelta(0))
