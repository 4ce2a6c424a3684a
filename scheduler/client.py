"""SchedulerClient: validate at the edge, send Avro envelopes keyed by id, never drop a delivery error."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, NamedTuple, Required, Self, TypedDict

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from scheduler import codec
from scheduler.config import PRODUCER_FORCED, ClientSettings, merge_config
from scheduler.errors import (
    DeliveryError,
    InvalidDeliverAt,
    InvalidHeaders,
    InvalidRecurrence,
    InvalidScheduleId,
    InvalidTopic,
    PayloadTooLarge,
    SchedulerError,
    ValidationError,
)
from scheduler.kafka.clients import LIBRDKAFKA_LOG, create
from scheduler.known_topics import KnownTopics, TopicState
from scheduler.model import (
    Backfill,
    Control,
    Done,
    Headers,
    Missed,
    Overlap,
    Pause,
    RejectReason,
    Resume,
    Schedule,
)
from scheduler.recurrence_args import Duration, Instant, RecurrenceArgs, instant_ms, recurrence
from scheduler.settings import forbidden_target

__all__ = [
    "ClientCore",
    "DeliveryLatch",
    "Duration",
    "HeadersIn",
    "Instant",
    "Prepared",
    "RecurrenceArgs",
    "ScheduleOptions",
    "SchedulerClient",
    "When",
    "backfill_command",
    "done_command",
]

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
TARGET_CHECK_TIMEOUT_S = 10.0
CHECKED_TARGETS_MAX = 10_000  # target names remembered as legal and allowed (a bound for generated names)
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


MAX_PARTITION = 2**31 - 1  # a Kafka partition number is an int32; the envelope carries an Avro int


def _check_topic(topic: str) -> str:
    if not isinstance(topic, str) or not codec.is_legal_topic(topic):
        raise InvalidTopic(
            f"{_short(topic)} is not a legal Kafka topic name: use 1-249 of [a-zA-Z0-9._-], not '.' or '..' "
            "(the scheduler would reject it: invalid_target_topic)"
        )
    return topic


def _check_target(topic: str, own: frozenset[str]) -> str:
    """A legal name the scheduler accepts as a target: not internal (`__*`), not one of its own topics."""
    why = forbidden_target(_check_topic(topic), own)
    if why is not None:
        raise InvalidTopic(
            f"{why}: the scheduler would reject it (forbidden_target_topic)",
            RejectReason.FORBIDDEN_TARGET_TOPIC,
        )
    return topic


def _check_partition(partition: int | None) -> int | None:
    if partition is None:
        return None
    if not isinstance(partition, int) or isinstance(partition, bool) or not 0 <= partition <= MAX_PARTITION:
        raise InvalidTopic(
            f"partition must be an int in [0, 2**31) or None, got {_short(partition)} "
            "(the scheduler would reject it: invalid_target_topic)"
        )
    return partition


def _short(value: object, width: int = 60) -> str:
    """repr(value), cut: a partition of 10**400 is not worth 400 digits of error message."""
    text = repr(value)
    return text if len(text) <= width else f"{text[: width - 1]}…"


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
        raise InvalidDeliverAt(
            f"deliver-at {due} ms is before 1970: pass epoch milliseconds", RejectReason.DUE_OUT_OF_RANGE
        )
    if due > now + horizon // _ONE_MS:
        raise InvalidDeliverAt(
            f"deliver-at {due} ms is beyond the horizon of {horizon.days} days: microseconds instead of ms?",
            RejectReason.DUE_OUT_OF_RANGE,
        )
    return due


class DeliveryLatch:
    """Delivery reports arrive later on librdkafka's callbacks; keep them until the caller's next call."""

    def __init__(self) -> None:
        self.failed = 0  # read directly on the hot path: a call checks this one int
        self._first = ""

    def record(self, key: bytes | str | None, error: object) -> None:
        if self.failed == 0:
            self._first = f"id {key!r}: {error}"
        self.failed += 1

    def raise_if_failed(self) -> None:
        if self.failed:
            failed, first = self.failed, self._first
            self.failed, self._first = 0, ""
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
        # per call, validation reads these constants of the settings, taken once (own_topics is computed)
        self._own = self.settings.own_topics
        self._horizon_ms = self.settings.horizon // _ONE_MS
        self._max_payload = self.settings.max_payload_bytes
        self._producer_name = self.settings.producer_name
        self._allowed: set[str] = set()  # target names that passed _check_target: checked once each
        # ...and, of those, the ones known to exist (or not to be checked): the native fast path's targets
        self._ready: set[str] = set()
        self.fast = codec.client_fast(self._ready, self._horizon_ms, self._max_payload, self._producer_name)
        self.latch = DeliveryLatch()
        self.closed = False
        bootstrap = str(self.producer_config.get("bootstrap.servers", ""))
        self.targets = KnownTopics(bootstrap) if self.settings.check_targets else None

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
        """Validate everything, then (schedule, record key, record value); raises before anything is sent.

        The common cases (bytes or None, a timedelta delay or epoch-ms at, a target seen before) take a short
        path; anything else goes through the full checks, which raise with the reason.
        """
        record_key = check_id(schedule_id)
        now = now_ms()
        payload, target_key, hdrs = self._message(topic, value, key, headers)
        horizon = self._horizon_ms
        if at is None and type(delay) is timedelta and 0 <= (ms := delay // _ONE_MS) <= horizon:
            due = now + ms
        elif delay is None and type(at) is int and 0 <= at <= now + horizon:
            due = at
        else:
            due = due_ms(at, delay, now, self.settings.horizon)
        schedule = Schedule(
            schedule_id,
            topic,
            due,
            payload,
            target_key,
            hdrs,
            None if partition is None else _check_partition(partition),
            now,
            self._producer_name,
        )
        return schedule, record_key, codec.encode_schedule(schedule)

    def _message(
        self, topic: str, value: bytes | str | None, key: bytes | str | None, headers: HeadersIn
    ) -> tuple[bytes | None, bytes | None, Headers]:
        """The checked target and the fired message's payload, key and headers (within the size limit)."""
        payload = value if value is None or type(value) is bytes else _as_bytes(value, "value")
        target_key = key if key is None or type(key) is bytes else _as_bytes(key, "key")
        hdrs = () if headers is None else _headers(headers)
        if type(topic) is not str or topic not in self._allowed:
            _check_target(topic, self._own)
            if len(self._allowed) < CHECKED_TARGETS_MAX:
                self._allowed.add(topic)
        size = len(payload or b"") + len(target_key or b"")
        if hdrs:
            size += sum(len(n) + len(v or b"") for n, v in hdrs)
        if size > self._max_payload:
            raise PayloadTooLarge(
                f"payload, key and headers are {size} bytes, over max_payload_bytes="
                f"{self._max_payload}: store the data elsewhere and schedule a reference to it"
            )
        return payload, target_key, hdrs

    def build_recurring(
        self, schedule_id: str, options: ScheduleOptions, spec: RecurrenceArgs
    ) -> tuple[Schedule, bytes, bytes]:
        """`build` for a recurring schedule: due at the record time (the scheduler arms its first occurrence)."""
        record_key = check_id(schedule_id)
        if options.get("at") is not None or options.get("delay") is not None:
            raise InvalidRecurrence("a recurring schedule takes starts_at=, not at= or delay=")
        payload, target_key, hdrs = self._message(
            options["topic"], options["value"], options.get("key"), options.get("headers")
        )
        now = now_ms()
        schedule = Schedule(
            schedule_id,
            options["topic"],
            now,
            payload,
            target_key,
            hdrs,
            _check_partition(options.get("partition")),
            now,
            self._producer_name,
            recurrence(spec),
        )
        return schedule, record_key, codec.encode_schedule(schedule)

    def control(self, command: Control) -> tuple[bytes, bytes]:
        """The record (key, value) of a pause, resume, done or backfill; raises before anything is sent."""
        self.check_open()
        return check_id(command.id), codec.encode_control(command)

    def check_open(self) -> None:
        if self.closed:
            raise SchedulerError("the client is closed: create a new one")
        self.latch.raise_if_failed()

    def prepare(
        self, schedule_id: str, options: ScheduleOptions, spec: RecurrenceArgs | None = None
    ) -> Prepared:
        """Everything before the I/O, for both faces: open, valid, encoded, and the target to look up if any;
        with a `spec`, a recurring schedule."""
        self.check_open()
        if spec is None:
            schedule, record_key, record_value = self.build(schedule_id, **options)
        else:
            schedule, record_key, record_value = self.build_recurring(schedule_id, options, spec)
        topic = schedule.target_topic
        lookup = self.targets is not None and self.targets.needs_lookup(topic)
        return Prepared(schedule, record_key, record_value, topic if lookup else None)

    def accepted(self, topic: str) -> None:
        """`topic` passed the full checks and its lookup (if any): `fast` may take it from now on."""
        if len(self._ready) < CHECKED_TARGETS_MAX and (
            self.targets is None or not self.targets.needs_lookup(topic)
        ):
            self._ready.add(topic)

    def learn_target(self, topic: str, answer: object) -> None:
        """The metadata a face fetched for `topic` (or the KafkaException it got): raises unless it exists."""
        assert self.targets is not None
        if isinstance(answer, KafkaException):
            self.targets.failed(topic, answer)
        self.targets.learn(topic, TopicState.of(answer, topic))


class ScheduleOptions(TypedDict, total=False):
    """The keyword arguments of `schedule()`, the same for the sync and the async client."""

    topic: Required[str]
    value: Required[bytes | str | None]
    key: bytes | str | None
    headers: HeadersIn
    at: When
    delay: timedelta | None
    partition: int | None


def recurrence_args(
    cron: str | None,
    every: Duration | None,
    after: Duration | None,
    timezone: str,
    window: tuple[Instant | None, Instant | None, int | None],
    policy: tuple[Missed | str, Overlap | str, Duration | None],
    paused: bool,
) -> RecurrenceArgs:
    """schedule_recurring()'s keywords (both faces): window = (starts_at, ends_at, max_runs), policy =
    (missed, overlap, catch_up)."""
    starts_at, ends_at, max_runs = window
    missed, overlap, catch_up = policy
    return {
        "cron": cron,
        "every": every,
        "after": after,
        "timezone": timezone,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "max_runs": max_runs,
        "missed": missed,
        "overlap": overlap,
        "catch_up": catch_up,
        "paused": paused,
    }


def done_command(schedule_id: str, fire_id: str, finished_at: Instant | None) -> Done:
    """`done()`'s command: `fire_id` is an occurrence of `schedule_id` ("<id>@<version>/<occurrence>")."""
    if not isinstance(fire_id, str) or fire_id.rsplit("@", 1)[0] != schedule_id or "@" not in fire_id:
        raise InvalidRecurrence(
            f"fire id {_short(fire_id)} is not one of {_short(schedule_id)}'s: pass the fired record's "
            "scheduler-await-done (or scheduler-fire-id) header as it came"
        )
    finished = instant_ms(finished_at, "finished_at")
    return Done(schedule_id, fire_id, now_ms() if finished is None else finished)


def backfill_command(schedule_id: str, from_: Instant, to: Instant) -> Backfill:
    """`backfill()`'s command: the occurrences nominally in [from_, to]."""
    start, end = instant_ms(from_, "from_"), instant_ms(to, "to")
    if start is None or end is None:
        raise InvalidRecurrence("backfill needs from_ and to (aware datetimes or epoch ms)")
    if end < start:
        raise InvalidRecurrence(f"backfill to={end} is before from_={start}")
    return Backfill(schedule_id, start, end)


def schedule_options(
    topic: str,
    value: bytes | str | None,
    key: bytes | str | None,
    headers: HeadersIn,
    at: When,
    delay: timedelta | None,
    partition: int | None,
) -> ScheduleOptions:
    """schedule()'s keyword arguments as the full path takes them (both faces, when the fast path declines)."""
    return {
        "topic": topic,
        "value": value,
        "key": key,
        "headers": headers,
        "at": at,
        "delay": delay,
        "partition": partition,
    }


class Prepared(NamedTuple):
    schedule: Schedule
    key: bytes
    value: bytes
    lookup: str | None  # a target topic whose existence the face must look up first


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
        self._producer = create(Producer, self._core.producer_config)
        self._report = self._on_delivery  # one bound method for every produce()
        # the hot path's callables and constants, looked up once
        self._fast = self._core.fast.send
        self._send = self._producer.produce
        self._poll = self._producer.poll
        self._topic = self._core.topic
        self._latch = self._core.latch

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
        """Send one schedule (same id = replace); returns what was sent. Delivery is confirmed by flush().

        Options: topic (required), value (required; bytes, str or None), key, headers (a mapping or pairs), at (an
        aware datetime or epoch ms) or delay (a timedelta), partition (of the target topic).
        """
        if self._latch.failed or self._core.closed:
            self._core.check_open()
        try:  # the common case, validated, encoded and produced in one native call
            schedule = self._fast(
                self._send,
                self._topic,
                self._report,
                schedule_id,
                topic,
                value,
                key,
                headers,
                at,
                delay,
                partition,
            )
        except KafkaException:
            schedule = None  # nothing was queued: the full path raises the DeliveryError
        if (
            schedule is None
        ):  # anything else (or a full queue): the full path decides, and raises with the reason
            options = schedule_options(topic, value, key, headers, at, delay, partition)
            prepared = self._prepare(schedule_id, options)
            self._produce(prepared[1], prepared[2])
            return prepared[0]
        self._poll(0)  # serve delivery reports (failures only) and librdkafka's callbacks
        return schedule

    def schedule_recurring(
        self,
        schedule_id: str,
        *,
        topic: str,
        value: bytes | str | None,
        cron: str | None = None,
        every: Duration | None = None,
        after: Duration | None = None,
        timezone: str = "UTC",
        starts_at: Instant | None = None,
        ends_at: Instant | None = None,
        max_runs: int | None = None,
        missed: Missed | str = Missed.LATEST,
        overlap: Overlap | str = Overlap.ALLOW,
        catch_up: Duration | None = None,
        paused: bool = False,
        key: bytes | str | None = None,
        headers: HeadersIn = None,
        partition: int | None = None,
    ) -> Schedule:
        """Send a recurring schedule (same id = replace); each occurrence fires once. Delivery: flush().

        Exactly one of cron (an expression in `timezone`: 5 fields, 6 with seconds first, or an @alias), every
        (fixed rate) or after (fixed delay after the previous occurrence is reported done); durations are
        timedeltas or ms, instants aware datetimes or epoch ms. Options: starts_at / ends_at (no occurrence
        outside), max_runs, missed (skip | latest | all), overlap (allow | skip | buffer_one; cron and every),
        catch_up (how far back `all` goes; default the scheduler's), paused (armed but held until resume()).
        The message options are schedule()'s.
        """
        options = schedule_options(topic, value, key, headers, None, None, partition)
        spec = recurrence_args(
            cron, every, after, timezone, (starts_at, ends_at, max_runs), (missed, overlap, catch_up), paused
        )
        prepared = self._prepare(schedule_id, options, spec)
        self._produce(prepared[1], prepared[2])
        return prepared[0]

    def pause(self, schedule_id: str) -> None:
        """Hold recurring schedule `schedule_id`: nothing fires until resume()."""
        self._produce(*self._core.control(Pause(schedule_id)))

    def resume(self, schedule_id: str) -> None:
        """Go on from the next future occurrence (none of those while paused fire, none count as skipped)."""
        self._produce(*self._core.control(Resume(schedule_id)))

    def done(self, schedule_id: str, fire_id: str, finished_at: Instant | None = None) -> None:
        """Report occurrence `fire_id` finished (the consumer framework does this for you): an `after` schedule
        arms its next occurrence, an overlap policy lets the next one fire."""
        self._produce(*self._core.control(done_command(schedule_id, fire_id, finished_at)))

    def backfill(self, schedule_id: str, from_: Instant, to: Instant) -> None:
        """Fire now, on purpose, the occurrences nominally in [from_, to] (each marked scheduler-backfill)."""
        self._produce(*self._core.control(backfill_command(schedule_id, from_, to)))

    def _prepare(
        self, schedule_id: str, options: ScheduleOptions, spec: RecurrenceArgs | None = None
    ) -> tuple[Schedule, bytes, bytes]:
        prepared = self._core.prepare(schedule_id, options, spec)
        if prepared.lookup is not None:
            self._core.learn_target(prepared.lookup, self._metadata(prepared.lookup))
        self._core.accepted(prepared.schedule.target_topic)
        return prepared.schedule, prepared.key, prepared.value

    def _metadata(self, topic: str) -> object:
        try:
            return self._producer.list_topics(topic, timeout=TARGET_CHECK_TIMEOUT_S)
        except KafkaException as exc:
            return exc

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
                self._producer.produce(self._core.topic, value, key, -1, self._report)  # positional: cheaper
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
