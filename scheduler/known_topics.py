"""Target topics checked at `schedule()` time, so a typo or a topic never created fails in the caller's code.

The scheduler rejects a schedule to a missing topic (`unknown_target_topic`), but only in `scheduled.rejected`,
where the caller never looks. The clients ask the cluster once per topic they have not seen (a metadata request
for that one topic), remember the ones that exist for good and the missing ones for a moment (so a loop over a
missing topic does not become a request per call), and raise `UnknownTargetTopic` naming the fix (or
`DeliveryError` when the cluster does not answer the lookup: nothing is sent either way).
`check_targets=False` (KAFKA_SCHEDULER_CHECK_TARGETS=false) turns it off for producers without describe rights.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NoReturn

from confluent_kafka import KafkaError, KafkaException

from scheduler.errors import DeliveryError, UnknownTargetTopic

__all__ = ["KnownTopics", "TopicState"]

MISSING_TTL_S = 2.0  # a topic created a moment after a refusal is found on the next call after this


class TopicState:
    """What one metadata answer says of a topic: exists, missing, or not allowed to look."""

    EXISTS, MISSING, FORBIDDEN = "exists", "missing", "forbidden"

    @staticmethod
    def of(metadata: Any, topic: str) -> str:
        meta = metadata.topics.get(topic)
        if meta is None:
            return TopicState.MISSING
        error = meta.error
        if error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            return TopicState.FORBIDDEN
        return TopicState.EXISTS if error is None and meta.partitions else TopicState.MISSING


class KnownTopics:
    """The cache and the verdict; the clients supply the lookup (sync, or awaited by the async client)."""

    def __init__(self, bootstrap: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._bootstrap = bootstrap
        self._clock = clock
        self._exists: set[str] = set()
        self._missing: dict[str, float] = {}

    def needs_lookup(self, topic: str) -> bool:
        """False when the answer is known: the topic exists, or was missing a moment ago (raises then)."""
        if topic in self._exists:
            return False
        seen = self._missing.get(topic)
        if seen is not None and self._clock() - seen < MISSING_TTL_S:
            self._refuse(topic, TopicState.MISSING)
        return True

    def learn(self, topic: str, state: str) -> None:
        """Record a lookup's answer; raises UnknownTargetTopic unless the topic exists."""
        if state == TopicState.EXISTS:
            self._exists.add(topic)
            self._missing.pop(topic, None)
            return
        self._missing[topic] = self._clock()
        self._refuse(topic, state)

    def failed(self, topic: str, exc: KafkaException) -> NoReturn:
        """The lookup itself failed: the cluster did not answer (down, wrong address, TLS or SASL refused)."""
        raise DeliveryError(
            f"not delivered: could not check that target topic {topic!r} exists ({exc}); is the cluster at "
            f"{self._bootstrap} reachable with these security settings? This call sent nothing."
        ) from exc

    def _refuse(self, topic: str, state: str) -> NoReturn:
        if state == TopicState.FORBIDDEN:
            raise UnknownTargetTopic(
                f"not allowed to describe target topic {topic!r} on {self._bootstrap}: grant DESCRIBE on it, "
                "or pass check_targets=False (KAFKA_SCHEDULER_CHECK_TARGETS=false) to skip the check"
            )
        raise UnknownTargetTopic(
            f"target topic {topic!r} does not exist on {self._bootstrap}, so the scheduler would reject the "
            f"schedule (unknown_target_topic): create it first, e.g. `kafka-topics.sh --bootstrap-server "
            f"{self._bootstrap} --create --topic {topic} --partitions 12`"
        )
