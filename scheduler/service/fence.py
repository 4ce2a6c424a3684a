"""Fence a departed owner at once: abort the open transaction of a member that left the group with one open.

A member killed mid-transaction leaves that transaction open until `transaction.timeout.ms`; it pins the last
stable offset of the state partitions it wrote and the committed offsets of `scheduled`, so the new owner's
rebuild (rule 2) waits that long. Every tick's offsets carry, as offset metadata, the transactional id that
committed them. When this instance is assigned partition p, a background thread (never the poll loop) reads p's
last committer T without waiting for stability and fences T, with a short-lived producer whose
`init_transactions` makes the coordinator abort T's open transaction and bump its epoch, only if:
1. T is not this instance's own transactional id (a restart fences its own id in `TransactionRunner.init`);
2. p has an open transaction: its state partition's last stable offset < high watermark, or its committed offset
   is unstable (a transactional offset commit pending); only p's owners write either;
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
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from scheduler.metrics import SchedulerMetrics

__all__ = ["DepartedFencer", "Member", "live_transactional_ids", "to_fence"]

log = logging.getLogger(__name__)
REQUEST_TIMEOUT_S = 10.0
_LEVELS = (IsolationLevel.READ_COMMITTED, IsolationLevel.READ_UNCOMMITTED)


def _result(future: Any) -> Any:
    return future.result(timeout=REQUEST_TIMEOUT_S + 5)


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

    def start(self) -> None:
        """Connect the admin client now, in the background: at the first assignment it is ready."""
        self._executor.submit(self._warm)

    def _warm(self) -> None:
        try:
            self._admin_client().list_topics(self._input, timeout=REQUEST_TIMEOUT_S)
        except KafkaException as exc:  # the first check tries again
            log.info("connecting the fencing admin client: %s", exc)

    def assigned(self, partitions: list[int]) -> None:
        if partitions:
            self._executor.submit(self._check_logged, sorted(partitions))

    def _check_logged(self, partitions: list[int]) -> None:
        try:
            self.check(partitions)
        except Exception:  # a thread pool keeps an exception in a future nobody reads: say it here
            log.exception("checking partitions %s for a departed owner to fence", partitions)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def check(self, partitions: list[int]) -> set[str]:
        """Fence the departed owners of `partitions`; returns the ids fenced. The five requests go out at once
        (each a round trip, and every millisecond here is one the partitions wait)."""
        try:
            admin = self._admin_client()
            committers_f = self._ask_committers(admin, partitions, stable=False)
            pending_f = self._ask_committers(admin, partitions, stable=True)
            ends_f = [self._ask_ends(admin, partitions, level) for level in _LEVELS]
            members_f = admin.describe_consumer_groups([self._group], request_timeout=REQUEST_TIMEOUT_S)
            committers = self._committers(committers_f)
            if not any(t and t != self._own for t in committers.values()):
                return set()
            stable, high = ({tp.partition: _result(f).offset for tp, f in ends.items()} for ends in ends_f)
            open_txn = {p for p in partitions if stable[p] < high[p]} | self._pending(pending_f)
            description: Any = _result(members_f[self._group])
            members = [Member(m.group_instance_id, m.client_id) for m in description.members]
            ids = to_fence(committers, open_txn, members, self._group, self._own)
        except (KafkaException, OSError, RuntimeError, ValueError, KeyError) as exc:
            log.warning("checking partitions %s for a departed owner to fence: %s", partitions, exc)
            return set()
        return {t for t in sorted(ids) if self._fence(t, committers)}

    def _admin_client(self) -> AdminClient:
        if self._admin is None:
            self._admin = self._admin_factory()
        return self._admin

    def _ask_committers(self, admin: AdminClient, partitions: list[int], stable: bool) -> Any:
        """Each partition's committed offset and metadata: the last committed (not stable), or an error for a
        partition with a transactional offset commit pending (stable)."""
        request = ConsumerGroupTopicPartitions(
            self._group, [TopicPartition(self._input, p) for p in partitions]
        )
        return admin.list_consumer_group_offsets(
            [request], require_stable=stable, request_timeout=REQUEST_TIMEOUT_S
        )

    def _pending(self, futures: Any) -> set[int]:
        """Partitions whose offsets an open transaction has sent (its state records may not have reached the
        broker before the process died, but its offsets pin the rebuild's committed() all the same)."""
        result = _result(futures[self._group])
        return {
            tp.partition
            for tp in result.topic_partitions
            if tp.error is not None and tp.error.code() == KafkaError.UNSTABLE_OFFSET_COMMIT
        }

    def _committers(self, futures: Any) -> dict[int, str | None]:
        result = _result(futures[self._group])
        return {
            tp.partition: (tp.metadata or None) if tp.error is None and tp.offset >= 0 else None
            for tp in result.topic_partitions
        }

    def _ask_ends(self, admin: AdminClient, partitions: list[int], level: IsolationLevel) -> Any:
        """The state partitions' end offsets: read_committed, the last stable offset; else the high watermark."""
        spec = {TopicPartition(self._state, p): OffsetSpec.latest() for p in partitions}  # type: ignore[no-untyped-call]
        return admin.list_offsets(spec, isolation_level=level, request_timeout=REQUEST_TIMEOUT_S)

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
