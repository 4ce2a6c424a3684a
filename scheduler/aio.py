"""AsyncSchedulerClient: the same validation and wire format as SchedulerClient, over AIOProducer."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from types import TracebackType
from typing import Any, Self

from confluent_kafka import KafkaException
from confluent_kafka.aio import AIOProducer

from scheduler import codec
from scheduler.client import (
    TARGET_CHECK_TIMEOUT_S,
    ClientCore,
    Duration,
    HeadersIn,
    Instant,
    RecurrenceArgs,
    ScheduleOptions,
    When,
    backfill_command,
    check_id,
    done_command,
    recurrence_args,
    schedule_options,
)
from scheduler.config import ClientSettings
from scheduler.errors import DeliveryError
from scheduler.kafka.clients import create
from scheduler.model import Missed, Overlap, Pause, Resume, Schedule

__all__ = ["AsyncSchedulerClient"]


class AsyncSchedulerClient:
    """Schedule and cancel from asyncio code without blocking the event loop."""

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        *,
        settings: ClientSettings | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self._core = ClientCore(bootstrap_servers, settings, config)
        self._producer: Any = None  # AIOProducer needs a running loop: created on first use
        self._topic = self._core.topic

    async def schedule(
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
        """Queue one schedule (same id = replace); returns what was sent. Delivery is confirmed by flush().
        The options are SchedulerClient.schedule()'s."""
        core = self._core
        if core.latch.failed or core.closed:
            core.check_open()
        # the common case, validated and encoded in one native call; None: the full path decides (and raises)
        sent = core.fast.prepare(schedule_id, topic, value, key, headers, at, delay, partition)
        if sent is None:
            options = schedule_options(topic, value, key, headers, at, delay, partition)
            sent = await self._prepare(schedule_id, options)
        schedule, key, value = sent
        try:  # _produce, inline: a coroutine less per call
            future = await (self._producer or self._started()).produce(self._topic, value, key)
        except KafkaException as exc:
            raise DeliveryError(f"producing to {self._topic} failed: {exc}") from exc
        future.add_done_callback(lambda f: self._on_done(key, f))
        return schedule

    async def schedule_recurring(
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
        """Queue a recurring schedule (same id = replace); the options are SchedulerClient.schedule_recurring()'s."""
        options = schedule_options(topic, value, key, headers, None, None, partition)
        spec = recurrence_args(
            cron, every, after, timezone, (starts_at, ends_at, max_runs), (missed, overlap, catch_up), paused
        )
        schedule, record_key, record_value = await self._prepare(schedule_id, options, spec)
        await self._produce(record_key, record_value)
        return schedule

    async def pause(self, schedule_id: str) -> None:
        """Hold recurring schedule `schedule_id`: nothing fires until resume()."""
        await self._produce(*self._core.control(Pause(schedule_id)))

    async def resume(self, schedule_id: str) -> None:
        """Go on from the next future occurrence (none of those while paused fire)."""
        await self._produce(*self._core.control(Resume(schedule_id)))

    async def done(self, schedule_id: str, fire_id: str, finished_at: Instant | None = None) -> None:
        """Report occurrence `fire_id` finished; SchedulerClient.done()'s."""
        await self._produce(*self._core.control(done_command(schedule_id, fire_id, finished_at)))

    async def backfill(self, schedule_id: str, from_: Instant, to: Instant) -> None:
        """Fire now the occurrences nominally in [from_, to]; SchedulerClient.backfill()'s."""
        await self._produce(*self._core.control(backfill_command(schedule_id, from_, to)))

    async def _prepare(
        self, schedule_id: str, options: ScheduleOptions, spec: RecurrenceArgs | None = None
    ) -> tuple[Schedule, bytes, bytes]:
        prepared = self._core.prepare(schedule_id, options, spec)
        if prepared.lookup is not None:
            self._core.learn_target(prepared.lookup, await self._metadata(prepared.lookup))
        self._core.accepted(prepared.schedule.target_topic)
        return prepared.schedule, prepared.key, prepared.value

    async def _metadata(self, topic: str) -> object:
        try:
            return await self._started().list_topics(topic, timeout=TARGET_CHECK_TIMEOUT_S)
        except KafkaException as exc:
            return exc

    def _started(self) -> Any:
        if self._producer is None:
            self._producer = create(AIOProducer, self._core.producer_config)  # needs the running loop
        return self._producer

    async def cancel(self, schedule_id: str) -> None:
        """Forget `schedule_id` if it has not fired yet."""
        self._core.check_open()
        await self._produce(check_id(schedule_id), codec.encode_cancel(schedule_id))

    async def flush(self, timeout: float = 30.0) -> int:
        """Wait for delivery reports; DeliveryError for a lost command; returns the count still queued."""
        remaining = 0 if self._producer is None else int(await self._producer.flush(timeout))
        await asyncio.sleep(0)  # let the delivery futures' callbacks run before reading the latch
        self._core.latch.raise_if_failed()
        return remaining

    async def close(self, timeout: float = 30.0) -> None:
        """Flush, then refuse further calls; raises DeliveryError if anything was not delivered."""
        if self._core.closed:
            return
        self._core.closed = True
        remaining = await self.flush(timeout)
        if self._producer is not None:
            await self._producer.close()
        if remaining:
            raise DeliveryError(
                f"{remaining} command(s) still undelivered after {timeout}s: they may be lost"
            )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _on_done(self, key: bytes, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self._core.latch.record(key, "cancelled before delivery")
        elif future.exception() is not None:
            self._core.latch.record(key, future.exception())

    async def _produce(self, key: bytes, value: bytes) -> None:
        try:
            future = await self._started().produce(self._core.topic, value, key)
        except KafkaException as exc:
            raise DeliveryError(f"producing to {self._core.topic} failed: {exc}") from exc
        future.add_done_callback(lambda f: self._on_done(key, f))
