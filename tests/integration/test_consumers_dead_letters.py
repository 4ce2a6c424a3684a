"""Dead letters: reason headers, the user's exception type, original coordinates, key/value unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable

from consumers import Message, NonRetryable, RetryPolicy
from tests.conftest import wait_until
from tests.integration.consumer_helpers import make_app, produce, read_all


class PaymentDeclined(NonRetryable):
    pass


class Flaky(Exception):
    pass


def test_dead_letters_carry_reason_headers_and_unchanged_bytes(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    topic = create_topic(unique("payments"), partitions=2)
    group = unique("g")
    produce(
        kafka_bootstrap,
        topic,
        [
            (b"k-declined", b'{"kind": "declined"}', 1),
            (b"k-flaky", b'{"kind": "flaky"}', 0),
            (b"k-garbage", b"{not json", 1),
            (b"k-ok", b'{"kind": "ok"}', 0),
        ],
    )
    handled: list[object] = []
    app = make_app(kafka_bootstrap, group, retry=RetryPolicy(max_attempts=1))

    @app.handler(topic, deserializer=lambda v: json.loads(v or b""))
    def handle(message: Message) -> None:
        kind = message.decoded["kind"]  # type: ignore[index]
        if kind == "declined":
            raise PaymentDeclined("card declined")
        if kind == "flaky":
            raise Flaky("upstream timeout")
        handled.append(kind)

    dlt = f"{topic}.{group}.dlt"
    with app.running():
        wait_until(lambda: handled == ["ok"], 30, "the good record handled")
        dead = read_all(kafka_bootstrap, dlt, 3)
    assert len(dead) == 3
    by_key = {key: (value, headers) for key, value, headers in dead}
    value, h = by_key[b"k-declined"]
    assert value == b'{"kind": "declined"}'
    assert h["consumer-dlt-reason"] == b"non_retryable_error"
    assert h["consumer-dlt-exception-type"] == f"{__name__}.PaymentDeclined".encode()
    assert h["consumer-dlt-exception-message"] == b"card declined"
    assert h["consumer-dlt-original-topic"] == topic.encode()
    assert h["consumer-dlt-original-partition"] == b"1"
    assert h["consumer-dlt-original-offset"] == b"0"
    assert h["consumer-dlt-group"] == group.encode()
    assert h["consumer-dlt-attempts"] == b"1"
    assert int(h["consumer-dlt-failed-at"]) > int(h["consumer-dlt-original-timestamp"]) - 60_000
    assert by_key[b"k-flaky"][1]["consumer-dlt-reason"] == b"max_attempts_exhausted"
    assert by_key[b"k-flaky"][1]["consumer-dlt-exception-type"] == f"{__name__}.Flaky".encode()
    garbage_value, garbage = by_key[b"k-garbage"]
    assert garbage_value == b"{not json"
    assert garbage["consumer-dlt-reason"] == b"deserialization_error"
    assert garbage["consumer-dlt-exception-type"] == b"json.decoder.JSONDecodeError"
