"""Prepared fires against a real broker: produced ahead of their due time, committed at it, never early.

With `prepare_ahead_ms`, a fire due within the window is produced into the tick's transaction before its due time
and the commit waits for it. Nothing of a transaction is visible to read_committed consumers before its commit, a
prepared fire's CreateTime is its due time, and a LogAppendTime target (where the broker's append time would be
before due) is never prepared: every record's visibility, timestamp and fired-at header are checked against due.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from scheduler.client import SchedulerClient
from tests.integration.scheduler_helpers import Record, Tail
from tests.scheduler_proc import SchedulerStack

N = 60


def schedule_into(stack: SchedulerStack, target: str, prefix: str) -> None:
    with SchedulerClient(settings=stack.client_settings) as client:
        for i in range(N):  # one due every 7 ms: each tick has fires due just ahead of it
            client.schedule(
                f"{prefix}-{i}", topic=target, value=b"v", delay=timedelta(milliseconds=1500 + 7 * i)
            )


def assert_never_early(records: list[Record]) -> list[int]:
    late = []
    for rec in records:
        due, fired_at = int(rec.header("scheduler-due-at")), int(rec.header("scheduler-fired-at"))
        assert fired_at >= due, f"fired-at before due: {rec}"
        assert rec.timestamp_ms >= due, f"timestamped before due: {rec}"
        assert rec.seen_ms >= due, f"visible before due: {rec}"
        late.append(rec.seen_ms - due)
    assert set(Counter(r.header("scheduler-fire-id") for r in records).values()) == {1}
    return sorted(late)


def test_prepared_fires_are_never_visible_nor_stamped_early(scheduler_topics: SchedulerStack) -> None:
    stack = scheduler_topics
    instance = stack.start_instance(KAFKA_SCHEDULER_PREPARE_AHEAD_MS="25")
    create_time = stack.create_target(f"{stack.scheduled_topic}-create")
    append_time = stack.create_target(
        f"{stack.scheduled_topic}-append", config={"message.timestamp.type": "LogAppendTime"}
    )
    tails = {t: Tail(stack.bootstrap, t) for t in (create_time, append_time)}
    schedule_into(stack, create_time, "c")
    schedule_into(stack, append_time, "a")
    try:
        got = {t: tail.poll_until(lambda r: len(r) >= N, 30, f"{N} fires") for t, tail in tails.items()}
    finally:
        for tail in tails.values():
            tail.close()
    for target, records in got.items():  # the second tail is read after the first: its lateness is not live
        late = assert_never_early(records)
        print(f"\n{target}: visible lateness ms p50={late[len(late) // 2]} max={late[-1]}")
    prepared = instance.metric("kafka_scheduler_prepared_fires_total")
    # the CreateTime target's fires were prepared (25 ms window, one due every 7 ms); never the other's, whose
    # append times above prove it: a prepared one would be appended up to 25 ms before its due time
    assert 0 < prepared <= N
    stamps = [r.timestamp_ms - int(r.header("scheduler-due-at")) for r in got[create_time]]
    assert 0 in stamps, "a prepared fire carries its due time (the commit time) as its CreateTime"
