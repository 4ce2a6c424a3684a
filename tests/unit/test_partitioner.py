"""scheduler.partitioner is Kafka's murmur2 and the Java default partitioner (librdkafka murmur2_random)."""

from __future__ import annotations

import pytest

from scheduler.partitioner import murmur2, partition_for


@pytest.mark.parametrize(
    ("data", "expected"),
    [  # apache/kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java::testMurmur2
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafka_vectors(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_partition_is_to_positive_murmur2_modulo_count() -> None:
    for key in (b"21", b"foobar", b"abc", b"reservation-42", "ключ".encode()):
        for n in (1, 3, 6, 12, 100):
            assert partition_for(key, n) == (murmur2(key) & 0x7FFFFFFF) % n
    assert partition_for(b"foobar", 1) == 0


def test_partition_spreads_ids_over_every_partition() -> None:
    hits = {partition_for(f"id-{i}".encode(), 6) for i in range(200)}
    assert hits == set(range(6))


def test_partition_count_must_be_positive() -> None:
    with pytest.raises(ValueError, match="partitions"):
        partition_for(b"x", 0)
