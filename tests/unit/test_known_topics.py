"""The client's target check: one metadata request per topic not yet seen, never one per call."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError

from scheduler.errors import UnknownTargetTopic
from scheduler.known_topics import MISSING_TTL_S, KnownTopics, TopicState


def metadata(topic: str, *, partitions: int = 3, error: int | None = None, listed: bool = True) -> object:
    meta = SimpleNamespace(partitions=dict.fromkeys(range(partitions)), error=None)
    if error is not None:
        meta.error = KafkaError(error)
    return SimpleNamespace(topics={topic: meta} if listed else {})


class Cluster:
    def __init__(self) -> None:
        self.topics: set[str] = set()
        self.lookups = 0
        self.now = 0.0
        self.known = KnownTopics("broker:9092", clock=lambda: self.now)

    def schedule(self, topic: str) -> None:
        """What SchedulerClient.schedule() does with the check."""
        if self.known.needs_lookup(topic):
            self.lookups += 1
            found = metadata(topic, listed=topic in self.topics)
            self.known.learn(topic, TopicState.of(found, topic))


def test_an_existing_topic_is_asked_for_once() -> None:
    cluster = Cluster()
    cluster.topics.add("orders")
    for _ in range(1000):
        cluster.schedule("orders")
    assert cluster.lookups == 1


def test_a_missing_topic_raises_naming_it_and_is_asked_again_only_after_a_moment() -> None:
    cluster = Cluster()
    with pytest.raises(
        UnknownTargetTopic, match=r"'orders' does not exist on broker:9092.*--create --topic orders"
    ):
        cluster.schedule("orders")
    for _ in range(100):
        with pytest.raises(UnknownTargetTopic):
            cluster.schedule("orders")
    assert cluster.lookups == 1
    cluster.topics.add("orders")
    cluster.now += MISSING_TTL_S
    cluster.schedule("orders")
    assert cluster.lookups == 2


def test_metadata_answers() -> None:
    assert TopicState.of(metadata("t"), "t") == TopicState.EXISTS
    assert TopicState.of(metadata("t", listed=False), "t") == TopicState.MISSING
    assert TopicState.of(metadata("t", error=KafkaError.UNKNOWN_TOPIC_OR_PART), "t") == TopicState.MISSING
    assert TopicState.of(metadata("t", partitions=0), "t") == TopicState.MISSING
    forbidden = metadata("t", error=KafkaError.TOPIC_AUTHORIZATION_FAILED)
    assert TopicState.of(forbidden, "t") == TopicState.FORBIDDEN
    assert UnknownTargetTopic("t").reason == "unknown_target_topic"
    with pytest.raises(UnknownTargetTopic, match=r"grant DESCRIBE.*check_targets=False"):
        KnownTopics("b").learn("t", TopicState.FORBIDDEN)
