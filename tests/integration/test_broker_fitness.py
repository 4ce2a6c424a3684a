"""The test broker is a real Kafka that does what this workload needs: compaction, transactions, EOS offsets.

Every test uses fresh topic, group and transactional ids, and every wait has a deadline (wait_until).
"""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition

from tests.conftest import wait_until

COMPACTED = {
    "cleanup.policy": "compact",
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "100",
}


def _consumer(bootstrap: str, group: str, isolation: str = "read_committed", **extra: object) -> Consumer:
    conf: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": isolation,
        **extra,
    }
    return Consumer(conf)


def _read_partition(
    bootstrap: str,
    topic: str,
    unique: Callable[[str], str],
    *,
    isolation: str = "read_committed",
    until: Callable[[list[tuple[bytes | None, bytes | None]]], bool],
    timeout_s: float = 30.0,
) -> list[tuple[bytes | None, bytes | None]]:
    """Read partition 0 from the beginning with a throwaway consumer until `until(records)` holds."""
    consumer = _consumer(bootstrap, unique("reader"), isolation)
    records: list[tuple[bytes | None, bytes | None]] = []
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])

        def done() -> bool:
            for msg in consumer.consume(num_messages=500, timeout=0.2):
                error = msg.error()
                if error is None:
                    records.append((msg.key(), msg.value()))
                elif error.code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(f"consume error on {topic}: {error}")
            return until(records)

        wait_until(done, timeout_s, f"records of {topic} ({isolation}) to satisfy the check")
    finally:
        consumer.close()
    return records


def _read_to_end(
    bootstrap: str, topic: str, unique: Callable[[str], str]
) -> list[tuple[bytes | None, bytes | None]]:
    """Everything in partition 0 right now: read from the beginning up to the current high watermark."""
    consumer = _consumer(bootstrap, unique("scan"), "read_uncommitted")
    records: list[tuple[bytes | None, bytes | None]] = []
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        state = {"position": -1}

        def reached_end() -> bool:
            for msg in consumer.consume(num_messages=500, timeout=0.2):
                error, offset = msg.error(), msg.offset()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(f"consume error on {topic}: {error}")
                if error is None and offset is not None:
                    records.append((msg.key(), msg.value()))
                    state["position"] = offset + 1
            return state["position"] >= high

        wait_until(reached_end, 30, f"reading {topic} up to offset {high}")
    finally:
        consumer.close()
    return records


def test_compaction_visibly_removes_superseded_records(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    topic = create_topic(unique("fitness-compact"), config=COMPACTED)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    keys, versions = [b"k0", b"k1", b"k2"], 60
    latest: dict[bytes, bytes] = {}
    for version in range(versions):
        for key in keys:
            value = f"{key.decode()}-v{version}".encode()
            producer.produce(topic, key=key, value=value)
            latest[key] = value
    assert producer.flush(30) == 0
    produced = len(keys) * versions
    observed: dict[str, int] = {}

    def compacted() -> bool:
        # The active segment is never cleaned: each probe appends one record, which rolls the segment once
        # segment.ms has passed, so the superseded versions end up in a cleanable segment.
        nonlocal produced
        producer.produce(topic, key=b"roll", value=b"roll")
        assert producer.flush(10) == 0
        produced += 1
        records = _read_to_end(kafka_bootstrap, topic, unique)
        last_seen = {key: value for key, value in records}
        main = [r for r in records if r[0] in latest]
        observed.update(read=len(records), produced=produced, main=len(main))
        return (
            len(records) < produced
            and len(main) < len(keys) * versions
            and all(last_seen.get(key) == value for key, value in latest.items())
        )

    try:
        wait_until(compacted, 60, "compaction to remove superseded records", interval_s=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last scan: {observed}") from exc
    assert observed["read"] < observed["produced"], observed


def test_committed_transaction_visible_aborted_invisible_to_read_committed(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    topic = create_topic(unique("fitness-txn"))
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": unique("txn")})
    producer.init_transactions(30)
    for value, commit in ((b"committed", True), (b"aborted", False), (b"sentinel", True)):
        producer.begin_transaction()
        producer.produce(topic, key=value, value=value)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.flush(30)  # the aborted record really reaches the log before the abort marker
            producer.abort_transaction(30)

    def has_sentinel(records: list[tuple[bytes | None, bytes | None]]) -> bool:
        return any(value == b"sentinel" for _, value in records)

    committed = _read_partition(
        kafka_bootstrap, topic, unique, isolation="read_committed", until=has_sentinel
    )
    assert [value for _, value in committed] == [b"committed", b"sentinel"]
    uncommitted = _read_partition(
        kafka_bootstrap, topic, unique, isolation="read_uncommitted", until=has_sentinel
    )
    assert [value for _, value in uncommitted] == [b"committed", b"aborted", b"sentinel"]


def test_send_offsets_to_transaction_moves_group_offset_only_on_commit(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    source = create_topic(unique("fitness-eos-in"))
    sink = create_topic(unique("fitness-eos-out"))
    group = unique("fitness-eos-group")
    seed = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(3):
        seed.produce(source, key=f"k{i}".encode(), value=f"m{i}".encode())
    assert seed.flush(30) == 0

    consumer = _consumer(kafka_bootstrap, group, "read_committed")
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": unique("eos")})
    producer.init_transactions(30)
    try:
        consumer.subscribe([source])
        inputs: list[Message] = []

        def got_all() -> bool:
            for msg in consumer.consume(num_messages=10, timeout=0.2):
                if msg.error() is None:
                    inputs.append(msg)
            return len(inputs) >= 3

        wait_until(got_all, 30, f"3 input records from {source} via group {group}")
        assert [m.offset() for m in inputs] == [0, 1, 2]

        def committed_offset() -> int:
            (tp,) = consumer.committed([TopicPartition(source, 0)], timeout=10)
            assert tp.error is None, tp.error
            offset: int = tp.offset
            return offset

        def transform(batch: list[Message], commit: bool) -> None:
            producer.begin_transaction()
            for msg in batch:
                producer.produce(sink, key=msg.key(), value=b"out-" + (msg.value() or b""))
            next_offset = (batch[-1].offset() or 0) + 1
            producer.send_offsets_to_transaction(
                [TopicPartition(source, 0, next_offset)], consumer.consumer_group_metadata(), 30
            )
            if commit:
                producer.commit_transaction(30)
            else:
                producer.flush(30)
                producer.abort_transaction(30)

        transform(inputs[:1], commit=True)
        wait_until(lambda: committed_offset() == 1, 30, "group offset 1 after the first commit")

        transform(inputs[1:], commit=False)
        assert committed_offset() == 1, "an aborted transaction must not move the group's offset"

        transform(inputs[1:], commit=True)
        wait_until(lambda: committed_offset() == 3, 30, "group offset 3 after the retried commit")

        out = _read_partition(
            kafka_bootstrap, sink, unique, isolation="read_committed", until=lambda r: len(r) >= 3
        )
        assert [value for _, value in out] == [b"out-m0", b"out-m1", b"out-m2"]
        # and the aborted attempt's output is really in the log, only hidden from read_committed
        raw = _read_partition(
            kafka_bootstrap, sink, unique, isolation="read_uncommitted", until=lambda r: len(r) >= 5
        )
        assert [value for _, value in raw] == [b"out-m0", b"out-m1", b"out-m2", b"out-m1", b"out-m2"]
    finally:
        consumer.close()
