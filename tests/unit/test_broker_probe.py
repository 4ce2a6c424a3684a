"""/readyz's brokers_reachable check: an answer within the last three intervals, asked off the request path."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException

from scheduler.kafka.reach import BrokerProbe


class Admin:
    """Answers metadata requests until `down` is set."""

    def __init__(self) -> None:
        self.down = False
        self.asked = 0

    def list_topics(self, topic: str, timeout: float) -> Any:
        self.asked += 1
        if self.down:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata"))
        return object()


def test_reachable_until_three_intervals_pass_without_an_answer() -> None:
    now = [0.0]
    admin = Admin()
    probe = BrokerProbe(admin, "scheduled", interval_s=5, clock=lambda: now[0])  # type: ignore[arg-type]
    assert probe.reachable()  # the service has just checked its topics
    now[0] = 10.0
    assert probe.probe_once() and probe.reachable()
    admin.down = True
    for t in (15.0, 20.0, 25.0):
        now[0] = t
        assert not probe.probe_once()
    assert probe.reachable()  # 15 s since the last answer: still within three intervals
    now[0] = 25.1
    assert not probe.reachable()
    admin.down = False
    assert probe.probe_once() and probe.reachable()  # back as soon as the cluster answers
    assert admin.asked == 5
