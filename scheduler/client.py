"""SchedulerClient: validate at the edge, send Avro envelopes keyed by id, never drop a delivery error."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from scheduler import codec
from scheduler.config import PRODUCER_FORCED, ClientSettings, merge_config
from scheduler.errors import (
    DeliveryError,
    InvalidDeliverAt,
    InvalidHeaders,
    InvalidScheduleId,
    InvalidTopic,
    PayloadTooLarge,
    SchedulerError,
    ValidationError,
)
from scheduler.logs import LIBRDKAFKA_LOG
from scheduler.model import Headers, Schedule

__all__ = ["DeliveryLatch", "HeadersIn", "SchedulerClient", "When"]

HeadersIn = Mapping[str, bytes | str | None] | Sequence[tuple[str, bytes | str | None]] | None
When = datetime | int | None
# Reports for failures only: the latch needs nothing else, and a Python callback per success costs ~1 µs.
PRODUCER_DEFAULTS: dict[str, Any] = {
    **LIBRDKAFKA_LOG,
    "linger.ms": 5,
    "client.id": "kafka-scheduler-client",
    "delivery.report.only.error": True,
}
QUEUE_FULL_WAIT_S = 30.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def check_id(schedule_id: str) -> bytes:
    """The record key; the id must be non-empty UTF-8 of at most 255 bytes (the scheduler rejects others)."""
    if not isinstance(schedule_id, str) or not schedule_id:
        raise InvalidScheduleId(f"schedule id must be a non-empty str, got {schedule_id!r}")
    try:
        key = schedule_id.encode()
    except UnicodeEncodeError as exc:
        raise InvalidScheduleId(f"schedule id {schedule_id!r} is not encodable as UTF-8: {exc}") from exc
    if len(key) > codec.MAX_ID_BYTES:
        raise InvalidScheduleId(
            f"schedule id is {len(key)} UTF-8 bytes, over {codec.MAX_ID_BYTES}: hash long ids (sha256 hex)"
        )
    return key


def _check_topic(topic: str) -> str:
    if not isinstance(topic, str) or not codec.is_legal_topic(topic):
        raise InvalidTopic(
            f"{topic!r} is not a legal Kafka topic name: use 1-249 of [a-zA-Z0-9._-], not '.' or '..'"
        )
    return topic


def _as_bytes(value: bytes | str | None, what: str) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise ValidationError(
        f"{what} must be bytes, str or None, got {type(value).__name__}: serialize it first"
    )


def _headers(headers: HeadersIn) -> Headers:
    if headers is None:
        return ()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    out: list[tuple[str, bytes | None]] = []
    for pair in pairs:
        if not isinstance(pair, tuple) or len(pair) != 2 or not isinstance(pair[0], str) or not pair[0]:
            raise InvalidHeaders(f"header {pair!r} must be a (non-empty str name, bytes | str | None) pair")
        if pair[0] in codec.CONTROL_HEADERS:
            raise InvalidHeaders(
                f"header {pair[0]} is set by the client: pass topic=, key=, at= or delay= instead"
            )
        try:
            out.append((pair[0], _as_bytes(pair[1], f"header {pair[0]}")))
        except ValidationError as exc:
            raise InvalidHeaders(str(exc)) from exc
    return tuple(out)


def due_ms(at: When, delay: timedelta | None, now: int, horizon: timedelta) -> int:
    """Exactly one of at (aware datetime or epoch ms) and delay (>= 0), by `is None`: at=0 counts."""
    if (at is None) == (delay is None):
        raise InvalidDeliverAt("give exactly one of at= (aware datetime or epoch ms) and delay= (timedelta)")
    if delay is not None:
        if not isinstance(delay, timedelta) or delay < timedelta(0):
            raise InvalidDeliverAt(f"delay must be a timedelta >= 0, got {delay!r}")
        due = now + delay // _ONE_MS
    elif isinstance(at, datetime):
        if at.tzinfo is None or at.utcoffset() is None:
            raise InvalidDeliverAt(f"at={at.isoformat()} is naive: pass an aware datetime (tzinfo=UTC)")
        due = (at - _EPOCH) // _ONE_MS
    elif isinstance(at, int) and not isinstance(at, bool):
        due = at
    else:
        raise InvalidDeliverAt(f"at must be an aware datetime or int epoch milliseconds, got {at!r}")
    if due < 0:
        raise InvalidDeliverAt(f"deliver-at {due} ms is before 1970: pass epoch milliseconds")
    if due > now + horizon // _ONE_MS:
        raise InvalidDeliverAt(
            f"deliver-at {due} ms is beyond the horizon of {horizon.days} days: microseconds instead of ms?"
        )
    return due


class DeliveryLatch:
    """Delivery reports arrive later on librdkafka's callbacks; keep them until the caller's next call."""

    def __init__(self) -> None:
        self._failed = 0
        self._first = ""

    def record(self, key: bytes | str | None, error: object) -> None:
        if self._failed == 0:
            self._first = f"id {key!r}: {error}"
        self._failed += 1

    def raise_if_failed(self) -> None:
        if self._failed:
            failed, first = self._failed, self._first
            self._failed, self._first = 0, ""
            raise DeliveryError(
                f"{failed} earlier command(s) were not delivered (first: {first}); they are not scheduled: "
                "send them again (same id = replace). This call sent nothing."
            )


class ClientCore:
    """What the sync and async clients share: settings, producer config, validation and encoding."""

    def __init__(
        self, bootstrap_servers: str | None, settings: ClientSettings | None, config: dict[str, Any] | None
    ) -> None:
        self.settings = settings if settings is not None else ClientSettings()
        user = {**self.settings.librdkafka(), **(config or {})}
        if bootstrap_servers is not None:
            user["bootstrap.servers"] = bootstrap_servers
        self.producer_config = merge_config(PRODUCER_DEFAULTS, user, PRODUCER_FORCED)
        self.topic = _check_topic(self.settings.scheduled_topic)
        self.latch = DeliveryLatch()
        self.closed = False

    def build(
        self,
        schedule_id: str,
        *,
        topic: str,
        value: bytes | str | None,
        key: bytes | str | None = None,
        headers: HeadersIn = None,
        at: When = None,
        delay: timedelta | None = None,
        partition: int | None = None,
    ) -> tuple[Schedule, bytes, bytes]:
        """Validate everything, then (schedule, record key, record value); raises before anything is sent."""
        record_key = check_id(schedule_id)
        now = now_ms()
        payload, target_key, hdrs = _as_bytes(value, "value"), _as_bytes(key, "key"), _headers(headers)
        if partition is not None and (
            not isinstance(partition, int) or isinstance(partition, bool) or partition < 0
        ):
            raise ValidationError(f"partition must be an int >= 0 or None, got {partition!r}")
        size = len(payload or b"") + len(target_key or b"") + sum(len(n) + len(v or b"") for n, v in hdrs)
        if size > self.settings.max_payload_bytes:
            raise PayloadTooLarge(
                f"payload, key and headers are {size} bytes, over max_payload_bytes="
                f"{self.settings.max_payload_bytes}: store the data elsewhere and schedule a reference to it"
            )
        schedule = Schedule(
            id=schedule_id,
            target_topic=_check_topic(topic),
            due_ms=due_ms(at, delay, now, self.settings.horizon),
            payload=payload,
            target_key=target_key,
            headers=hdrs,
            target_partition=partition,
            created_ms=now,
            producer=self.settings.producer_name,
        )
        return schedule, record_key, codec.encode_schedule(schedule)

    def check_open(self) -> None:
        if self.closed:
            raise SchedulerError("the client is closed: create a new one")
        self.latch.raise_if_failed()


class SchedulerClient:
    """Schedule and cancel messages to the future; thread-compatible, one producer per client."""

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        *,
        settings: ClientSettings | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self._core = ClientCore(bootstrap_servers, settings, config)
        self._producer = Producer(self._core.producer_config)

    def schedule(
        self,
        schedule_id: str,
        *,
        topic: str,
        value: bytes | str | None,
        key: bytes | str | None = None,
        headers: HeadersIn = None,
        at: When = None,
        delay: timedelta | None = None,
        partition: int | None = None,
    ) -> Schedule:
        """Send one schedule (same id = replace); returns what was sent. Delivery is confirmed by flush()."""
        self._core.check_open()
        schedule, record_key, record_value = self._core.build(
            schedule_id,
            topic=topic,
            value=value,
            key=key,
            headers=headers,
            at=at,
            delay=delay,
            partition=partition,
        )
        self._produce(record_key, record_value)
        return schedule

    def cancel(self, schedule_id: str) -> None:
        """Forget `schedule_id` if it has not fired yet."""
        self._core.check_open()
        self._produce(check_id(schedule_id), codec.encode_cancel(schedule_id))

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for delivery reports; DeliveryError for a lost command; returns the count still queued."""
        remaining = int(self._producer.flush(timeout))
        self._core.latch.raise_if_failed()
        return remaining

    def close(self, timeout: float = 30.0) -> None:
        """Flush, then refuse further calls; raises DeliveryError if anything was not delivered."""
        if self._core.closed:
            return
        self._core.closed = True
        remaining = int(self._producer.flush(timeout))
        self._core.latch.raise_if_failed()
        if remaining:
            raise DeliveryError(
                f"{remaining} command(s) still undelivered after {timeout}s: they may be lost"
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._core.latch.record(msg.key(), err.str())

    def _produce(self, key: bytes, value: bytes) -> None:
        deadline = None  # only a full queue needs the clock
        while True:
            try:
                self._producer.produce(self._core.topic, value, key, on_delivery=self._on_delivery)
                break
            except BufferError:
                if deadline is None:
                    deadline = time.monotonic() + QUEUE_FULL_WAIT_S
                elif time.monotonic() > deadline:
                    raise DeliveryError(
                        f"the local queue stayed full for {QUEUE_FULL_WAIT_S}s: is the broker reachable?"
                    ) from None
                self._producer.poll(0.1)
            except KafkaException as exc:
                raise DeliveryError(f"producing to {self._core.topic} failed: {exc}") from exc
        self._producer.poll(0)
