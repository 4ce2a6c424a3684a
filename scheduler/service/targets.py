"""Intake validation against the cluster (rule 8): what would make a fire transaction fail forever is refused early.

A target must exist, match the allowlist, not be internal or one of the scheduler's own topics, and the fired
record and the state record must fit their topics' max.message.bytes. Topic facts are cached with a TTL;
a topic unknown a moment ago is looked up again before a command naming it is refused.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource

from scheduler.model import HEADER_FIRED_TOPIC, Rejected, RejectReason, Schedule
from scheduler.records import (
    ETF1_HEADERS,
    HEADER_FRAMING,
    MAX_MESSAGE,
    REASON_PREFIX,
    RECORD_FRAMING,
    SCHEDULER_HEADERS,
    is_etf1,
    record_size,
)
from scheduler.settings import ServiceSettings, forbidden_target

__all__ = ["TargetCatalog", "TopicInfo"]

log = logging.getLogger(__name__)
RECORD_OVERHEAD = 512  # batch and record framing, so a record that "fits" is not refused by the broker
DEFAULT_MAX_MESSAGE = 1_048_588
_DLT_HEADERS = ("reason", "message", "target-topic", "failed-at")
PRODUCER_MAX_MESSAGE = 1_000_000  # librdkafka's message.max.bytes default: it refuses bigger records locally


@dataclass(frozen=True, slots=True)
class TopicInfo:
    exists: bool
    partitions: int = 0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE
    # message.timestamp.type=LogAppendTime: the broker stamps a record when it appends it, so a fire produced
    # ahead of its due time would carry an append time before due (G3): such fires are never prepared ahead
    log_append_time: bool = False


class TargetCatalog:
    """Cached topic facts plus the allow/deny policy."""

    def __init__(
        self,
        admin: AdminClient,
        settings: ServiceSettings,
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._admin = admin
        self._own = settings.own_topics
        self._state_topic = settings.state
        self._dlt_topic = settings.dlt
        self._history_topic = settings.history_topic
        producer = {**settings.base_kafka(), **settings.producer}
        self.producer_limit = int(producer.get("message.max.bytes", PRODUCER_MAX_MESSAGE))
        self._allow = re.compile(settings.target_allow)
        self._deny = re.compile(settings.target_deny)
        self._ttl = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, TopicInfo]] = {}
        self._fits: dict[str, _Fits] = {}

    def forbidden(self, topic: str) -> str | None:
        return forbidden_target(topic, self._own, self._deny, self._allow)

    def _max_age(self, info: TopicInfo, ttl: float) -> float:
        return ttl if info.exists else min(ttl, 2.0)

    def info(self, topic: str, *, max_age_s: float | None = None) -> TopicInfo:
        """Cached facts; an unknown topic is looked up again after 2 s, a known one after the TTL."""
        now = self._clock()
        cached = self._cache.get(topic)
        ttl = max_age_s if max_age_s is not None else self._ttl
        if cached is not None and now - cached[0] < self._max_age(cached[1], ttl):
            return cached[1]
        info = self._lookup(topic)
        self._cache[topic] = (now, info)
        self._fits.clear()  # budgets computed from the facts this replaces
        return info

    def limit(self, topic: str) -> int:
        """The largest record (key, value, headers) the scheduler can write to `topic`, framing included."""
        return min(self.info(topic).max_message_bytes, self.producer_limit) - RECORD_OVERHEAD

    def _lookup(self, topic: str) -> TopicInfo:
        metadata = self._admin.list_topics(topic=topic, timeout=10)
        meta = metadata.topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return TopicInfo(False)
        limit, append_time = DEFAULT_MAX_MESSAGE, True  # unknown: as if LogAppendTime, never prepared ahead
        try:
            futures = self._admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
            for future in futures.values():
                configs = future.result(timeout=10)
                limit = int(configs["max.message.bytes"].value)
                append_time = configs["message.timestamp.type"].value != "CreateTime"
        except (KafkaException, KeyError, ValueError) as exc:
            log.warning("could not read the configuration of %s, assuming the defaults: %s", topic, exc)
        return TopicInfo(True, len(meta.partitions), limit, append_time)

    def prepares(self, topic: str) -> bool:
        """May a fire to `topic` be produced before its due time and committed at it (CreateTime targets)?"""
        info = self.info(topic)
        return info.exists and not info.log_append_time

    def validate(self, schedule: Schedule, state_size: int) -> Rejected | None:
        """None if the schedule can be fired (and dead-lettered, and stored); the common case is answered from
        what an accepted schedule to the same target left (`_Fits`), without looking anything up."""
        fits = self._fits.get(schedule.target_topic)
        if fits is not None and fits.admits(schedule, state_size, self._clock()):
            return None
        refused = self._validate(schedule, state_size)
        if refused is None:
            self._fits[schedule.target_topic] = self._fits_of(schedule.target_topic)
        return refused

    def _fits_of(self, topic: str) -> _Fits:
        """The budgets `_validate` checks against for `topic`, valid while every topic fact they use is fresh."""
        size = len(topic.encode())
        fired = [self.limit(topic), self.limit(self._dlt_topic) - _DEAD_LETTER_EXTRA - size]
        used = [topic, self._dlt_topic, self._state_topic]
        if self._history_topic:
            fired.append(self.limit(self._history_topic) - _HISTORY_EXTRA - size)
            used.append(self._history_topic)
        expires = min(at + self._max_age(info, self._ttl) for at, info in (self._cache[t] for t in used))
        return _Fits(
            expires, self.info(topic).partitions, min(fired), self.limit(self._state_topic) - RECORD_FRAMING
        )

    def _validate(self, schedule: Schedule, state_size: int) -> Rejected | None:
        topic = schedule.target_topic
        why = self.forbidden(topic)
        if why is not None:
            return Rejected(RejectReason.FORBIDDEN_TARGET_TOPIC, why, schedule.id)
        info = self.info(topic)
        if not info.exists:
            return Rejected(
                RejectReason.UNKNOWN_TARGET_TOPIC, f"target topic {topic} does not exist", schedule.id
            )
        if schedule.target_partition is not None and schedule.target_partition >= info.partitions:
            message = f"target partition {schedule.target_partition} but {topic} has {info.partitions}"
            return Rejected(RejectReason.INVALID_TARGET_TOPIC, message, schedule.id)
        # The fired record must fit the target, and (should the target refuse it later) the dead-letter topic;
        # the state record the state topic; all of them the producer's own message.max.bytes.
        checks = [
            ("fired record", fired_size(schedule), topic),
            ("dead letter", dead_letter_size(schedule), self._dlt_topic),
            ("state record", state_size + RECORD_FRAMING, self._state_topic),
        ]
        if self._history_topic:
            checks.append(("history copy", history_size(schedule), self._history_topic))
        for what, record, where in checks:
            if record > self.limit(where):
                limit = min(self.info(where).max_message_bytes, self.producer_limit)
                message = (
                    f"{what} of {record} bytes does not fit {where} (max.message.bytes "
                    f"{self.info(where).max_message_bytes}, producer message.max.bytes {self.producer_limit}: "
                    f"{limit} with {RECORD_OVERHEAD} bytes of framing)"
                )
                return Rejected(RejectReason.PAYLOAD_TOO_LARGE, message, schedule.id)
        return None


# What the scheduler adds to a fired record (schedule id and fire id carry the id; numbers are at most 20 digits),
# and what a dead letter adds on top (reason word, message, failed-at; the target topic is counted per schedule).
_FIRED_EXTRA = sum(len(h) + HEADER_FRAMING + 20 for h in SCHEDULER_HEADERS) + 1
# etf1's: a timestamp (20 digits), the id (counted per schedule) and the commands' topic (at most 249 characters)
_ETF1_EXTRA = sum(len(h) + HEADER_FRAMING for h in ETF1_HEADERS) + 20 + 249
_DEAD_LETTER_EXTRA = (
    sum(len(REASON_PREFIX + h) + HEADER_FRAMING for h in _DLT_HEADERS) + 32 + MAX_MESSAGE + 20
)
_FIRED_MAX_EXTRA = _FIRED_EXTRA + _ETF1_EXTRA


_HISTORY_EXTRA = len(HEADER_FIRED_TOPIC) + HEADER_FRAMING


@dataclass(frozen=True, slots=True)
class _Fits:
    """What a target topic admits without a lookup: a partition below `partitions`, a fired record (and its dead
    letter and history copy) within `fired_budget` bytes, a state record within `state_budget`, until `expires`."""

    expires: float
    partitions: int
    fired_budget: int
    state_budget: int

    def admits(self, schedule: Schedule, state_size: int, now: float) -> bool:
        if now >= self.expires or state_size > self.state_budget:
            return False
        if schedule.target_partition is not None and schedule.target_partition >= self.partitions:
            return False
        # The state record holds the id, key, payload and headers' bytes: a bound of the fired record's size
        # that needs no pass over the headers (`fired_size` then decides only for records near the budget).
        bound = RECORD_FRAMING + 4 * state_size + HEADER_FRAMING * len(schedule.headers) + _FIRED_MAX_EXTRA
        return bound <= self.fired_budget or fired_size(schedule) <= self.fired_budget


def fired_size(schedule: Schedule) -> int:
    """An upper bound of the fired record's size: the schedule's own key, payload and headers plus ours."""
    size = record_size(schedule.target_key, schedule.payload, schedule.headers) + _FIRED_EXTRA
    if is_etf1(schedule):
        return size + _ETF1_EXTRA + 3 * len(schedule.id.encode())
    return size + 2 * len(schedule.id.encode())


def history_size(schedule: Schedule) -> int:
    """An upper bound of the history copy's size: the fired record plus the target topic's name."""
    return fired_size(schedule) + _HISTORY_EXTRA + len(schedule.target_topic.encode())


def dead_letter_size(schedule: Schedule) -> int:
    """An upper bound of the dead letter's size: the fired record, the longest reason and message, the target."""
    return fired_size(schedule) + _DEAD_LETTER_EXTRA + len(schedule.target_topic.encode())
