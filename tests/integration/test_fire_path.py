"""The fire path's scheduling against a real broker: a short delay wakes a waiting loop, a burst does not starve
what comes due just after it. Orders and generous bounds only (a loaded 2-core machine)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from scheduler.client import SchedulerClient
from tests.integration.scheduler_helpers import Tail
from tests.scheduler_proc import SchedulerStack


def test_a_short_delay_sent_while_the_loop_waits_on_a_later_due_fires_on_time(
    scheduler_topics: SchedulerStack,
) -> None:
    # a long max wait: the loop's wait ends at the later due unless an arrival wakes it
    scheduler_topics.start_instance(KAFKA_SCHEDULER_MAX_WAIT_MS="30000")
    target = scheduler_topics.create_target(f"{scheduler_topics.scheduled_topic}-target")
    tail = Tail(scheduler_topics.bootstrap, target)
    with SchedulerClient(settings=scheduler_topics.client_settings) as client:
        client.schedule("later", topic=target, value="later", delay=timedelta(seconds=20))
        client.flush()
        time.sleep(1.0)  # the loop has taken "later" in and waits on it
        client.schedule("short", topic=target, value="short", delay=timedelta(milliseconds=300))
    records = tail.poll_until(lambda r: any(x.value == b"short" for x in r), 15, "the short delay's fire")
    tail.close()
    assert [r.value for r in records] == [b"short"]
    short = records[0]
    due, fired = int(short.header("scheduler-due-at")), int(short.header("scheduler-fired-at"))
    assert due <= fired < due + 3000, "woken for it, not at the later due 19 s on"
    assert short.seen_ms >= due


def test_a_burst_does_not_starve_schedules_due_just_after_it(scheduler_topics: SchedulerStack) -> None:
    # small transactions, so the burst takes many ticks to drain
    scheduler_topics.start_instance(KAFKA_SCHEDULER_MAX_FIRES_PER_TRANSACTION="50")
    target = scheduler_topics.create_target(f"{scheduler_topics.scheduled_topic}-target")
    tail = Tail(scheduler_topics.bootstrap, target)
    burst_at = datetime.now(UTC) + timedelta(seconds=4)
    with SchedulerClient(settings=scheduler_topics.client_settings) as client:
        for i in range(2000):
            client.schedule(f"burst-{i}", topic=target, value=b"burst", at=burst_at)
        for i in range(5):
            client.schedule(
                f"fresh-{i}", topic=target, value=b"fresh", at=burst_at + timedelta(milliseconds=10 * i + 1)
            )
    records = tail.poll_until(lambda r: len(r) >= 2005, 90, "the burst and the fresh ones")
    tail.close()
    assert len(records) == 2005
    for rec in records:
        assert int(rec.header("scheduler-fired-at")) >= int(rec.header("scheduler-due-at"))
    order = [r.value for r in sorted(records, key=lambda r: int(r.header("scheduler-fired-at")))]
    last_fresh = max(i for i, value in enumerate(order) if value == b"fresh")
    # strict due order would fire all 2000 first; fresh-first fires each in the first tick after its due time
    assert last_fresh < 1000, f"the fresh schedules fired after {last_fresh} burst fires"
