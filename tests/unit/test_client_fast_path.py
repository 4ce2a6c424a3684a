"""The native fast path of schedule() (scheduler._native.ClientFast) against the Python path it short-cuts.

It must accept only what ClientCore.build accepts, produce the same Schedule and byte-identical key and envelope,
and leave everything else (None) to the Python path, which raises with its message.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler import ClientSettings, DeliveryError, Schedule, SchedulerClient, ValidationError
from scheduler.client import ClientCore
from scheduler.codec import CONTROL_HEADERS

NOW = 1_767_225_600_000
HORIZON = timedelta(days=36525)
HORIZON_MS = HORIZON // timedelta(milliseconds=1)
QUIET = {"log_level": 0}
OPTIONS = ("topic", "value", "key", "headers", "at", "delay", "partition")

BLOBS = st.one_of(
    st.none(),
    st.binary(max_size=40),
    st.text(max_size=6),
    st.binary(max_size=4).map(bytearray),
    st.integers(),
)
NAMES = st.one_of(st.text(max_size=5), st.sampled_from(sorted(CONTROL_HEADERS)), st.integers())
PAIR = st.one_of(st.tuples(NAMES, BLOBS), st.lists(st.text(max_size=3), max_size=3).map(tuple))
HEADERS = st.one_of(
    st.none(),
    st.lists(PAIR, max_size=4).map(tuple),
    st.lists(PAIR, max_size=3),
    st.dictionaries(st.text(max_size=4), BLOBS, max_size=3),
)
TOPICS = st.one_of(
    st.sampled_from(["orders", "t.x-1_Z", "a b", "", ".", "__consumer_offsets", "sched", "sched.state", "é"]),
    st.text(alphabet="ab.-_ ", max_size=4),
    st.integers(),
)
IDS = st.one_of(
    st.text(max_size=4),
    st.text(min_size=250, max_size=260),
    st.sampled_from(["é" * 127 + "x", "é" * 128, "\ud800", "x" * 255, "x" * 256]),
    st.integers(),
    st.none(),
)
DELAYS = st.one_of(
    st.timedeltas(min_value=timedelta(days=-2), max_value=HORIZON * 2),
    st.sampled_from([timedelta(0), timedelta(microseconds=-1), timedelta(microseconds=999), HORIZON]),
    st.integers(0, 10),
)
ATS = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**64),
    st.sampled_from([0, NOW, NOW + HORIZON_MS, NOW + HORIZON_MS + 1]),
    st.booleans(),
    st.datetimes(timezones=st.just(UTC)),
    st.just(datetime(2030, 1, 1)),  # naive
)
PARTITIONS = st.one_of(st.none(), st.integers(-2, 2**31 + 2), st.just(2**31 - 1), st.booleans(), st.just("1"))


@st.composite
def calls(draw: st.DrawFn) -> tuple[Any, dict[str, Any]]:
    options: dict[str, Any] = {"topic": draw(TOPICS), "value": draw(BLOBS), "key": draw(BLOBS)}
    options["headers"] = draw(HEADERS)
    when = draw(st.sampled_from(["at", "delay", "both", "neither"]))
    options["at"] = draw(ATS) if when in ("at", "both") else None
    options["delay"] = draw(DELAYS) if when in ("delay", "both") else None
    options["partition"] = draw(PARTITIONS)
    return draw(IDS), options


def python_path(core: ClientCore, schedule_id: Any, options: dict[str, Any]) -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("scheduler.client.now_ms", lambda: NOW)
        try:
            return core.build(schedule_id, **options)
        except ValidationError as exc:
            return exc


def make_core(max_payload: int, producer: str | None) -> ClientCore:
    settings_ = ClientSettings(  # type: ignore[call-arg]
        scheduled_topic="sched", max_payload_bytes=max_payload, producer_name=producer, _env_file=None
    )
    return ClientCore("127.0.0.1:1", settings_, QUIET)


PLAIN_NAMES = st.one_of(st.text(max_size=5), st.sampled_from(sorted(CONTROL_HEADERS)))


@st.composite
def near_plain_calls(draw: st.DrawFn) -> tuple[Any, dict[str, Any]]:
    """Plain calls with one option drawn from the wide strategies: the checks one at a time."""
    blob = st.one_of(st.none(), st.binary(max_size=40))
    options: dict[str, Any] = {
        "topic": "orders",
        "value": draw(blob),
        "key": draw(blob),
        "headers": draw(st.one_of(st.none(), st.lists(st.tuples(PLAIN_NAMES, blob), max_size=3).map(tuple))),
        "at": draw(st.integers(0, NOW)),
        "delay": None,
        "partition": draw(st.one_of(st.none(), st.integers(0, 2**31 - 1))),
    }
    schedule_id: Any = draw(st.text(min_size=1, max_size=20))
    wide = {"id": IDS, "topic": TOPICS, "value": BLOBS, "key": BLOBS, "headers": HEADERS, "at": ATS}
    wide |= {"delay": DELAYS, "partition": PARTITIONS}
    name = draw(st.sampled_from(sorted(wide)))
    if name == "id":
        schedule_id = draw(IDS)
    elif name == "delay":
        options["at"], options["delay"] = None, draw(DELAYS)
    else:
        options[name] = draw(wide[name])
    return schedule_id, options


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(calls(), near_plain_calls()), st.sampled_from([64, 1 << 20]), st.sampled_from([None, "svc-a"])
)
def test_the_fast_path_agrees_with_the_python_path(
    call: tuple[Any, dict[str, Any]], max_payload: int, producer: str | None
) -> None:
    schedule_id, options = call
    core = make_core(max_payload, producer)
    core.targets = None  # no metadata lookups: a legal, allowed target is ready
    expected = python_path(core, schedule_id, options)
    if isinstance(options["topic"], str):
        try:
            core.build("i", topic=options["topic"], value=None, delay=timedelta(0))
        except ValidationError:
            pass
        else:
            core.accepted(options["topic"])  # what the faces do after the full path accepted a target
    fast = core.fast.prepare(schedule_id, *(options[name] for name in OPTIONS), now_ms=NOW)
    if isinstance(expected, ValidationError):
        assert fast is None, f"the fast path accepted what Python refuses: {expected}"
        return
    if fast is None:  # declined: only for what the fast path leaves to Python
        assert not plain(schedule_id, options), "a plain call was left to the slow path"
        return
    assert fast[0] == expected[0]
    assert type(fast[0]) is Schedule
    assert fast[1] == expected[1]
    assert fast[2] == expected[2]  # byte-identical envelope


def plain(schedule_id: Any, options: dict[str, Any]) -> bool:
    """The types the fast path takes itself (a valid call of only these must not fall back)."""

    def blob(v: object) -> bool:
        return v is None or type(v) is bytes

    headers = options["headers"]
    return (
        type(schedule_id) is str
        and blob(options["value"])
        and blob(options["key"])
        and (
            headers is None
            or (type(headers) is tuple and all(type(p) is tuple and blob(p[1]) for p in headers))
        )
        and (options["at"] is None or type(options["at"]) is int)
        and (options["delay"] is None or type(options["delay"]) is timedelta)
    )


def test_a_fresh_and_a_repeated_delay_give_the_same_due_time() -> None:
    core = make_core(1 << 20, None)
    core.targets = None
    core.accepted("orders")
    for delay in (
        timedelta(seconds=5),
        timedelta(seconds=5),
        timedelta(milliseconds=7),
        timedelta(seconds=5),
    ):
        sent = core.fast.prepare("i", "orders", None, None, None, None, delay, None, now_ms=NOW)
        assert sent is not None
        assert sent[0].due_ms == NOW + delay // timedelta(milliseconds=1)


def test_an_unchecked_target_takes_the_python_path_once() -> None:
    core = make_core(1 << 20, None)
    core.targets = None
    args = ("i", "orders", b"v", None, None, None, timedelta(0), None)
    assert core.fast.prepare(*args) is None  # not yet checked
    core.accepted("orders")
    assert core.fast.prepare(*args) is not None


class FakeProducer:
    """produce() as confluent_kafka's (positional), refusing the first `refuse` calls with `error`."""

    def __init__(self, refuse: int = 0, error: type[Exception] = BufferError) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.refuse, self.error = refuse, error

    def produce(
        self, topic: str, value: bytes, key: bytes | str, partition: int = -1, cb: Any = None
    ) -> None:
        if self.refuse:
            self.refuse -= 1
            raise (
                self.error(KafkaError(KafkaError._MSG_TIMED_OUT))
                if self.error is KafkaException
                else self.error()
            )
        self.sent.append((topic, value, key.encode() if isinstance(key, str) else key))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0


def fake_client(producer: FakeProducer) -> SchedulerClient:
    client = SchedulerClient(
        "127.0.0.1:1", settings=ClientSettings(check_targets=False, _env_file=None), config=QUIET
    )  # type: ignore[call-arg]
    client._producer = producer  # type: ignore[assignment]
    client._send, client._poll = producer.produce, producer.poll
    return client


@pytest.mark.parametrize("refuse", [0, 1])
def test_schedule_sends_what_it_returns_also_after_a_full_queue(refuse: int) -> None:
    producer = FakeProducer(refuse=refuse)
    client = fake_client(producer)
    for i in range(
        3
    ):  # the first call takes the Python path (the target is not checked yet), then the fast one
        schedule = client.schedule(f"id-{i}", topic="orders", value=b"v", at=NOW)
        topic, value, key = producer.sent[-1]
        assert (topic, key) == ("scheduled", f"id-{i}".encode())
        assert _native_codec().decode_envelope(value) == schedule
    assert len(producer.sent) == 3


def _native_codec() -> Any:
    from scheduler import codec

    return codec._CODEC


def test_a_produce_refused_by_librdkafka_raises_delivery_error() -> None:
    producer = FakeProducer()
    client = fake_client(producer)
    client.schedule(
        "id-0", topic="orders", value=b"v", at=NOW
    )  # the target is now checked: the fast path next
    producer.refuse, producer.error = 2, KafkaException
    with pytest.raises(DeliveryError, match="producing to scheduled failed"):
        client.schedule("id-1", topic="orders", value=b"v", at=NOW)
    assert len(producer.sent) == 1
