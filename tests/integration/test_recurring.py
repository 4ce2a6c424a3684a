"""Recurring schedules against a real broker and scheduler: each occurrence exactly once, never early.

Commands go in with the header protocol (what kcat or a Java producer sends), so these tests also prove the
protocol for any client: scheduler-every-ms / scheduler-cron / scheduler-after-ms, scheduler-starts-at,
scheduler-max-runs, scheduler-missed, and scheduler-control for pause, resume, done and backfill.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence

from confluent_kafka import Producer

from scheduler.ops.state import find
from tests.integration.scheduler_helpers import Record, Tail, read_all
from tests.scheduler_proc import SchedulerProcess, SchedulerStack, run_cli

HeaderList = list[tuple[str, bytes]]


def send(stack: SchedulerStack, key: str, headers: HeaderList, value: bytes | None = b"tick") -> None:
    """One command as any Kafka client sends it: key = schedule id, murmur2 like the Java client. A schedule's
    fires carry its id as their key, so they land in one target partition, in order."""
    if any(name == "scheduler-target-topic" for name, _ in headers):
        headers = [*headers, ("scheduler-target-key", key.encode())]
    producer = Producer({"bootstrap.servers": stack.bootstrap, "partitioner": "murmur2_random"})
    producer.produce(stack.scheduled_topic, value=value, key=key.encode(), headers=headers)
    assert producer.flush(10) == 0


def every(target: str, every_ms: int, starts_at: int, **extra: str) -> HeaderList:
    headers = [
        ("scheduler-target-topic", target.encode()),
        ("scheduler-every-ms", str(every_ms).encode()),
        ("scheduler-starts-at", str(starts_at).encode()),
    ]
    return headers + [(f"scheduler-{k.replace('_', '-')}", v.encode()) for k, v in extra.items()]


def control(word: str, **extra: str) -> HeaderList:
    return [("scheduler-control", word.encode())] + [
        (f"scheduler-{k.replace('_', '-')}", v.encode()) for k, v in extra.items()
    ]


def next_second(ahead_ms: int = 1500) -> int:
    return (int(time.time() * 1000) + ahead_ms) // 1000 * 1000 + 1000


def occurrences(records: Sequence[Record], sid: str) -> list[int]:
    return [
        int(r.header("scheduler-occurrence-at")) for r in records if r.header("scheduler-schedule-id") == sid
    ]


def assert_once_and_never_early(records: Sequence[Record]) -> None:
    ids = Counter(r.header("scheduler-fire-id") for r in records)
    assert set(ids.values()) <= {1}, f"fired twice: {[i for i, n in ids.items() if n > 1]}"
    for r in records:
        at = int(r.header("scheduler-occurrence-at"))
        assert r.timestamp_ms >= at and r.seen_ms >= at, f"early: {r}"
        assert r.header("scheduler-fire-id").endswith(f"/{at}")


def test_every_fires_each_occurrence_once_then_ends(scheduler_topics: SchedulerStack) -> None:
    stack = scheduler_topics
    target = stack.create_target(f"{stack.scheduled_topic}-every")
    stack.start_instance()
    tail = Tail(stack.bootstrap, target)
    start = next_second()
    send(stack, "every-1", every(target, 1000, start, max_runs="4"))
    try:
        got = tail.poll_until(lambda r: len(r) >= 4, 20, "4 occurrences")
        got = tail.poll_for(2.5)  # the fifth must not come: max_runs ended it
    finally:
        tail.close()
    assert occurrences(got, "every-1") == [start + k * 1000 for k in range(4)]
    assert [r.header("scheduler-run") for r in got] == ["1", "2", "3", "4"]
    assert_once_and_never_early(got)
    found, _ = find(stack.settings, "every-1")
    assert found is None, "a recurring schedule that reached max_runs is tombstoned"


def test_cron_with_seconds_in_a_time_zone(scheduler_topics: SchedulerStack) -> None:
    stack = scheduler_topics
    target = stack.create_target(f"{stack.scheduled_topic}-cron")
    stack.start_instance()
    tail = Tail(stack.bootstrap, target)
    start = next_second()
    headers = [
        ("scheduler-target-topic", target.encode()),
        ("scheduler-cron", b"*/2 * * * * *"),  # every even second, seconds field first
        ("scheduler-timezone", b"Asia/Kolkata"),  # +05:30: seconds are the same everywhere
        ("scheduler-starts-at", str(start).encode()),
        ("scheduler-max-runs", b"3"),
    ]
    send(stack, "cron-1", headers)
    try:
        got = tail.poll_until(lambda r: len(r) >= 3, 20, "3 occurrences")
    finally:
        tail.close()
    times = occurrences(got, "cron-1")
    assert all(t % 2000 == 0 for t in times) and times == sorted(times) and len(times) == 3
    assert times[0] >= start and times[1] - times[0] == 2000
    assert_once_and_never_early(got)


def test_pause_holds_every_occurrence_and_resume_goes_on(scheduler_topics: SchedulerStack) -> None:
    stack = scheduler_topics
    target = stack.create_target(f"{stack.scheduled_topic}-pause")
    stack.start_instance()
    tail = Tail(stack.bootstrap, target)
    send(stack, "p-1", every(target, 1000, next_second()))
    try:
        tail.poll_until(lambda r: len(r) >= 2, 20, "2 occurrences")
        send(stack, "p-1", control("pause"))
        paused_at = int(time.time() * 1000)
        held = tail.poll_for(3.5)
        resumed_at = int(time.time() * 1000)
        send(stack, "p-1", control("resume"))
        count = len(held)
        got = tail.poll_until(lambda r: len(r) >= count + 2, 20, "2 occurrences after resume")
    finally:
        tail.close()
        send(stack, "p-1", [], value=None)  # a tombstone cancels
    during = [t for t in occurrences(got, "p-1") if paused_at + 1000 < t < resumed_at]
    assert during == [], f"fired while paused: {during}"
    after = [t for t in occurrences(got, "p-1") if t > resumed_at]
    assert len(after) >= 2 and after[1] - after[0] == 1000
    assert_once_and_never_early(got)


def test_after_waits_for_done_then_fires_after_the_delay(scheduler_topics: SchedulerStack) -> None:
    stack = scheduler_topics
    target = stack.create_target(f"{stack.scheduled_topic}-after")
    stack.start_instance()
    tail = Tail(stack.bootstrap, target)
    headers = [("scheduler-target-topic", target.encode()), ("scheduler-after-ms", b"1000")]
    send(stack, "a-1", headers)
    try:
        first = tail.poll_until(lambda r: len(r) >= 1, 20, "the first occurrence")[0]
        fire_id = first.header("scheduler-await-done")
        assert fire_id == first.header("scheduler-fire-id")
        assert len(tail.poll_for(2.5)) == 1, "nothing more fires until the occurrence is reported done"
        done_at = int(time.time() * 1000)
        send(stack, "a-1", control("done", fire_id=fire_id), value=b"")
        send(stack, "a-1", control("done", fire_id=fire_id), value=b"")  # a duplicate report is ignored
        second = tail.poll_until(lambda r: len(r) >= 2, 20, "the second occurrence")[1]
        assert len(tail.poll_for(2.0)) == 2, "one done, one more occurrence"
    finally:
        tail.close()
        send(stack, "a-1", [], value=None)
    assert int(second.header("scheduler-occurrence-at")) >= done_at + 1000
    assert second.seen_ms >= done_at + 1000
    assert second.header("scheduler-fire-id") != fire_id


def test_missed_occurrences_follow_the_policy_after_downtime(scheduler_topics: SchedulerStack) -> None:
    """The only scheduler is stopped for about 4 s: `all` fires every missed occurrence, `latest` only the most
    recent one (late), `skip` none of them (the grace is 300 ms); each skipped one is counted in
    scheduler-skipped on the first fire after the gap."""
    stack = scheduler_topics
    target = stack.create_target(f"{stack.scheduled_topic}-missed")
    env = {"KAFKA_SCHEDULER_MISSED_GRACE_MS": "300", "KAFKA_SCHEDULER_STATIC_MEMBERSHIP": "off"}
    first = stack.start_instance(**env)
    tail = Tail(stack.bootstrap, target)
    start = next_second()
    policies = ("all", "latest", "skip")
    for policy in policies:
        send(stack, f"m-{policy}", every(target, 1000, start, missed=policy))
    try:
        tail.poll_until(lambda r: len(r) >= 6, 20, "2 occurrences of each")
        first.stop()
        before = len(tail.poll_for(0.5))
        time.sleep(4.0)
        stack.start_instance(**env)
        got = tail.poll_until(
            lambda r: all(len(occurrences(r[before:], f"m-{p}")) >= 3 for p in policies), 30, "firing again"
        )
    finally:
        tail.close()
    for policy in policies:
        send(stack, f"m-{policy}", [], value=None)
    for policy in policies:
        sid = f"m-{policy}"
        last_before = max(occurrences(got[:before], sid))
        after = [r for r in got[before:] if r.header("scheduler-schedule-id") == sid]
        resumed = int(after[0].header("scheduler-occurrence-at"))
        gap = list(range(last_before + 1000, resumed, 1000))  # nominal occurrences that did not fire
        if policy == "all":
            assert gap == [], "all: every occurrence fired, oldest first"
            assert occurrences(got, sid) == list(range(start, max(occurrences(got, sid)) + 1, 1000))
            continue
        assert len(gap) >= 2, f"{policy}: the downtime should have skipped occurrences: {gap}"
        if (
            policy == "latest"
        ):  # the most recent due occurrence fires (late or not), the older ones are skipped
            # (a prepared fire due later in the same transaction may stamp it with exactly resumed + 1000)
            assert after[0].timestamp_ms <= resumed + 1000, "latest: not the most recent due occurrence"
        else:
            assert after[0].timestamp_ms - resumed <= 300 + 10, (
                "skip: only an occurrence within the grace fires"
            )
        assert int(after[0].header("scheduler-skipped")) == len(gap), (policy, gap)
    assert_once_and_never_early(got)


def test_backfill_fires_a_past_range_on_purpose(scheduler_topics: SchedulerStack) -> None:
    stack = scheduler_topics
    target = stack.create_target(f"{stack.scheduled_topic}-backfill")
    stack.start_instance()
    tail = Tail(stack.bootstrap, target)
    start = next_second(-60_000)  # a minute ago, every 10 s: the range holds 3 occurrences
    send(stack, "b-1", every(target, 10_000, start, missed="skip"))
    try:
        time.sleep(1.5)
        send(stack, "b-1", control("backfill", backfill_from=str(start), backfill_to=str(start + 20_000)))
        got = tail.poll_until(
            lambda r: sum(x.header("scheduler-backfill") == "1" for x in r) >= 3, 20, "3 backfilled"
        )
    finally:
        tail.close()
        send(stack, "b-1", [], value=None)
    filled = [r for r in got if r.header("scheduler-backfill") == "1"]
    assert sorted(int(r.header("scheduler-occurrence-at")) for r in filled) == [
        start,
        start + 10_000,
        start + 20_000,
    ]
    assert len({r.header("scheduler-fire-id") for r in filled}) == 3


def test_bad_recurring_commands_are_rejected_with_a_reason(scheduler_topics: SchedulerStack) -> None:
    stack = scheduler_topics
    target = stack.create_target(f"{stack.scheduled_topic}-bad")
    stack.start_instance()
    bad = {
        "bad-cron": [("scheduler-cron", b"61 * * * *")],
        "bad-zone": [("scheduler-cron", b"0 2 * * *"), ("scheduler-timezone", b"Mars/Olympus")],
        "too-often": [("scheduler-every-ms", b"10")],
        "two-kinds": [("scheduler-every-ms", b"5000"), ("scheduler-cron", b"0 2 * * *")],
        "pause-none": [("scheduler-control", b"pause")],
    }
    for sid, headers in bad.items():
        full = headers if sid == "pause-none" else [("scheduler-target-topic", target.encode()), *headers]
        send(stack, sid, full)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rejects = {r.key.decode(): r for r in read_all(stack.bootstrap, stack.settings.rejected) if r.key}
        if set(bad) <= set(rejects):
            break
        time.sleep(0.3)
    reasons = {sid: rejects[sid].header("scheduler-reject-reason") for sid in bad}
    assert reasons == {
        "bad-cron": "invalid_recurrence",
        "bad-zone": "invalid_recurrence",
        "too-often": "invalid_recurrence",
        "two-kinds": "invalid_recurrence",
        "pause-none": "not_recurring",
    }, reasons
    assert "Mars/Olympus" in rejects["bad-zone"].header("scheduler-reject-message")


def test_each_occurrence_once_across_a_sigkill(scheduler_topics: SchedulerStack) -> None:
    """Every 1 s under `all`: the owner is killed mid-run; its successor fires every occurrence, each once (the
    fire and the next state record commit together, or neither does)."""
    stack = scheduler_topics
    target = stack.create_target(f"{stack.scheduled_topic}-kill")
    env = {"KAFKA_SCHEDULER_STATIC_MEMBERSHIP": "off"}
    victim = stack.start_instance(**env)
    tail = Tail(stack.bootstrap, target)
    start = next_second()
    ids = [f"k-{i}" for i in range(20)]
    for sid in ids:
        send(stack, sid, every(target, 1000, start, missed="all", max_runs="8"))
    try:
        tail.poll_until(lambda r: len(r) >= 40, 30, "2 rounds")
        victim.kill()
        stack.start_instance(**env)
        got = tail.poll_until(lambda r: len(r) >= 160, 60, "8 occurrences of each")
        got = tail.poll_for(1.5)
    finally:
        tail.close()
    for sid in ids:
        assert occurrences(got, sid) == [start + k * 1000 for k in range(8)], sid
    assert_once_and_never_early(got)


def test_overlap_skip_holds_occurrences_while_the_previous_one_runs(scheduler_topics: SchedulerStack) -> None:
    """overlap=skip: occurrences due before the running one is reported done are skipped and counted; after
    the done, the next one fires."""
    stack = scheduler_topics
    target = stack.create_target(f"{stack.scheduled_topic}-overlap")
    stack.start_instance()
    tail = Tail(stack.bootstrap, target)
    send(stack, "o-1", every(target, 1000, next_second(), overlap="skip"))
    try:
        first = tail.poll_until(lambda r: len(r) >= 1, 20, "the first occurrence")[0]
        fire_id = first.header("scheduler-await-done")
        assert fire_id == first.header("scheduler-fire-id")
        assert len(tail.poll_for(3.0)) == 1, "the next ones overlap the running one: skipped"
        send(stack, "o-1", control("done", fire_id=fire_id), value=b"")
        second = tail.poll_until(lambda r: len(r) >= 2, 20, "an occurrence after the done")[1]
    finally:
        tail.close()
        send(stack, "o-1", [], value=None)
    assert int(second.header("scheduler-skipped")) >= 2
    assert second.header("scheduler-run") == "2"


def test_operator_commands_show_pause_resume_and_backfill(scheduler_topics: SchedulerStack) -> None:
    """`get`, `list --recurring`, `pause`, `resume`, `backfill --dry-run` as an operator runs them."""
    stack = scheduler_topics
    target = stack.create_target(f"{stack.scheduled_topic}-ops")
    stack.start_instance()
    env = stack.env()
    send(stack, "ops-r", every(target, 60_000, next_second(-120_000)))
    send(stack, "ops-once", [("scheduler-target-topic", target.encode()), ("scheduler-delay-ms", b"600000")])

    def get(sid: str) -> dict[str, object]:
        out = run_cli("get", sid, env=env)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    deadline = time.monotonic() + 30
    while run_cli("get", "ops-r", env=env).returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    view = get("ops-r")["recurrence"]
    assert isinstance(view, dict) and view["kind"] == "every" and view["state"] == "armed"
    assert len(view["next_occurrences"]) == 5 and view["runs"] >= 1
    assert "recurrence" not in get("ops-once")
    listed = json.loads(run_cli("list", "--recurring", "-o", "json", env=env).stdout)
    assert [item["id"] for item in listed["items"]] == ["ops-r"]
    assert run_cli("pause", "ops-r", env=env).returncode == 0
    wait = time.monotonic() + 30
    while get("ops-r")["recurrence"]["state"] != "paused":  # type: ignore[index]
        assert time.monotonic() < wait, "the pause never took effect"
        time.sleep(0.5)
    assert run_cli("resume", "ops-r", env=env).returncode == 0
    while get("ops-r")["recurrence"]["state"] != "armed":  # type: ignore[index]
        assert time.monotonic() < wait + 30, "the resume never took effect"
        time.sleep(0.5)
    dry = run_cli("backfill", "ops-r", "--from", "-150s", "--to", "-1s", "--dry-run", env=env)
    assert dry.returncode == 0 and "nothing sent" in dry.stdout and "would fire" in dry.stdout, dry
    refused = run_cli("pause", "ops-once", env=env)
    assert refused.returncode == 1 and "one-time" in refused.stderr
    assert run_cli("pause", "nobody", env=env).returncode == 4


def test_recurring_gauge_counts_pending_recurring_schedules_across_a_rebuild(
    scheduler_topics: SchedulerStack,
) -> None:
    """`kafka_scheduler_recurring_schedules` counts each pending recurring schedule once (one-time ones are not
    in it), follows a cancel and an end, and a new instance rebuilds it from the state topic."""
    stack = scheduler_topics
    target = stack.create_target(f"{stack.scheduled_topic}-gauge")
    first = stack.start_instance()
    later = next_second(3_600_000)  # an hour away: they stay pending
    for i in range(3):
        send(stack, f"rec-{i}", every(target, 60_000, later))
    send(stack, "rec-short", every(target, 1000, next_second(), max_runs="2"))  # ends within seconds
    for i in range(2):
        send(
            stack,
            f"once-{i}",
            [("scheduler-target-topic", target.encode()), ("scheduler-delay-ms", b"3600000")],
        )

    def settles(instance: SchedulerProcess, recurring: float, pending: float, what: str) -> None:
        end = time.monotonic() + 30
        while True:
            got = (
                instance.metric("kafka_scheduler_recurring_schedules"),
                instance.metric("kafka_scheduler_pending_schedules"),
            )
            if got == (recurring, pending):
                return
            assert time.monotonic() < end, (
                f"{what}: (recurring, pending) = {got}, want {(recurring, pending)}"
            )
            time.sleep(0.3)

    settles(first, 3, 5, "after rec-short ended")  # 3 hourly recurring + 2 one-time
    send(stack, "rec-0", [], value=None)  # a cancel: a tombstone keyed by the id
    settles(first, 2, 4, "after the cancel")
    first.kill()
    second = stack.start_instance()
    settles(second, 2, 4, "rebuilt by a new instance")
