"""Kafka's default partitioner for keyed records, so tools can find the partition a schedule id lives in.

The client forces librdkafka `partitioner=murmur2_random`, which for a non-null key is the Java default:
`toPositive(murmur2(key)) % partitions` (org.apache.kafka.common.utils.Utils.murmur2, seed 0x9747b28c).
Computed by the native core (native/src/murmur2.rs), which the scheduler also uses on its replay path.
"""

from __future__ import annotations

from scheduler._native import murmur2, partition_for

__all__ = ["murmur2", "partition_for"]
