"""Fence a departed owner at once: abort the open transaction of a member that left the group with one open.

A member killed mid-transaction leaves that transaction open until `transaction.timeout.ms`; it pins the last
stable offset of the state partitions it wrote and the committed offsets of `scheduled`, so the new owner's
rebuild (rule 2) waits that long. Every tick's offsets carry, as offset metadata, the transactional id that
committed them. When this instance is assigned partition p, a background thread (never the poll loop) reads p's
last committer T without waiting for stability and fences T, with a short-lived producer whose
`init_transactions` makes the coordinator abort T's open transaction and bump its epoch, only if:
1. T is not this instance's own transactional id (a restart fences its own id in `TransactionRunner.init`);
2. p's state partition has an open transaction (last stable offset < high watermark; only p's owners write it);
3. T belongs to no live member of the group, and every member is identifiable (a static member by its
   group.instance.id, a dynamic one by its client.id, which defaults to its transactional id); one member that
   is not (a client.id set by hand, an older version) and nothing is fenced: the transaction timeout resolves it.
Why this never weakens G2 or rules 1 and 2: docs/transactional-id.md, "Fencing a departed owner".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from scheduler.metrics import SchedulerMetrics

__all__ = ["DepartedFencer", "Member", "live_transactional_ids", "to_fence"]

log = logging.getLogger(__name__)
REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Member:
    """What describe_consumer_groups says about one member."""

    group_instance_id: str | None
    client_id: str | None


def live_transactional_ids(members: Iterable[Member], group: str) -> frozenset[str] | None:
    """The transactional ids the group's members hold, or None if any member cannot be told."""
    prefix, live = f"{group}-", set()
    for member in members:
        if member.group_instance_id:
            live.add(prefix + member.group_instance_id)
        elif member.client_id and member.client_id.startswith(prefix):
            live.add(member.client_id)
        else:
            return None
    return frozenset(live)


def to_fence(
    committers: Mapping[int, str | None],
    open_transactions: Collection[int],
    members: Iterable[Member],
    group: str,
    own: str,
) -> set[str]:
    """The transactional ids to fence: the last committers of partitions whose state partition has an open
    transaction, that are neither this instance nor any live member (and only ids of this group's prefix, the
    ones its ACL lets it write)."""
    live = live_transactional_ids(members, group)
    if live is None:
        return set()
    return {
        committer
        for partition, committer in committers.items()
        if committer
        and committer != own
        and committer.startswith(f"{group}-")
        and partition in open_transactions
        and committer not in live
    }


class DepartedFencer:
    """Checks each assignment in the background; errors are logged, never raised (the timeout is the fallback)."""

    def __init__(
        self,
        topics: tuple[str, str],
        group: str,
        own: str,
        admin: Callable[[], AdminClient],
        producer: Callable[[str], Producer],
        metrics: SchedulerMetrics,
    ) -> None:
        self._input, self._state = topics
        self._group, self._own = group, own
        self._admin_factory = admin
        self._admin: AdminClient | None = None
        self._producer = producer
        self._metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fence-departed")

    def assigned(self, partitions: list[int]) -> None:
        if partitions:
            self._executor.submit(self.check, sorted(partitions))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def check(self, partitions: list[int]) -> set[str]:
        """Fence the departed owners of `partitions`; returns the ids fenced."""
        try:
            committers = self._committers(partitions)
            candidates = {p for p, t in committers.items() if t and t != self._own}
            if not candidates:
                return set()
            ids = to_fence(committers, self._open(candidates), self._members(), self._group, self._own)
        except (KafkaException, OSError, RuntimeError, ValueError) as exc:
            log.warning("checking partitions %s for a departed owner to fence: %s", partitions, exc)
            return set()
        fenced = set()
        for transactional_id in sorted(ids):
            if self._fence(transactional_id, committers):
                fenced.add(transactional_id)
        return fenced

    def _admin_client(self) -> AdminClient:
        if self._admin is None:
            self._admin = self._admin_factory()
        return self._admin

    def _committers(self, partitions: list[int]) -> dict[int, str | None]:
        """Each partition's last committed offset metadata, not waiting for an open transaction."""
        request = ConsumerGroupTopicPartitions(
            self._group, [TopicPartition(self._input, p) for p in partitions]
        )
        futures = self._admin_client().list_consumer_group_offsets(
            [request], require_stable=False, request_timeout=REQUEST_TIMEOUT_S
        )
        result = futures[self._group].result(timeout=REQUEST_TIMEOUT_S + 5)
        return {
            tp.partition: (tp.metadata or None) if tp.error is None and tp.offset >= 0 else None
            for tp in result.topic_partitions
        }

    def _open(self, partitions: Collection[int]) -> set[int]:
        """Partitions whose state partition has an open transaction: last stable offset < high watermark."""
        ends: list[dict[int, int]] = []
        for level in (IsolationLevel.READ_COMMITTED, IsolationLevel.READ_UNCOMMITTED):
            spec = {TopicPartition(self._state, p): OffsetSpec.latest() for p in partitions}  # type: ignore[no-untyped-call]
            futures = self._admin_client().list_offsets(
                spec, isolation_level=level, request_timeout=REQUEST_TIMEOUT_S
            )
            ends.append(
                {tp.partition: f.result(timeout=REQUEST_TIMEOUT_S + 5).offset for tp, f in futures.items()}
            )
        stable, high = ends
        return {p for p in partitions if stable[p] < high[p]}

    def _members(self) -> list[Member]:
        futures = self._admin_client().describe_consumer_groups(
            [self._group], request_timeout=REQUEST_TIMEOUT_S
        )
        description: Any = futures[self._group].result(timeout=REQUEST_TIMEOUT_S + 5)
        return [Member(m.group_instance_id, m.client_id) for m in description.members]

    def _fence(self, transactional_id: str, committers: Mapping[int, str | None]) -> bool:
        partitions = sorted(p for p, t in committers.items() if t == transactional_id)
        try:
            producer = self._producer(transactional_id)
            try:
                producer.init_transactions(REQUEST_TIMEOUT_S)
            finally:
                producer.close()
        except KafkaException as exc:
            log.warning("fencing departed owner %s (partitions %s): %s", transactional_id, partitions, exc)
            return False
        self._metrics.fenced_departed.inc()
        log.warning(
            "fenced departed owner %s: it left the group with a transaction open on partitions %s; that "
            "transaction is aborted now instead of at transaction.timeout.ms",
            transactional_id,
            partitions,
        )
        return True
