"""The operator commands against a real broker and a running scheduler, through the CLI as an operator runs it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from scheduler.cli import app
from scheduler.client import SchedulerClient
from tests.conftest import wait_until
from tests.integration.scheduler_helpers import Tail, read_all
from tests.scheduler_proc import SchedulerStack

runner = CliRunner()


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """dlq replay keeps its journal in the current directory: the test's own."""
    monkeypatch.chdir(tmp_path)


def cli(stack: SchedulerStack, *args: str, input: str | None = None, topic_flag: str = "--topic") -> Any:
    """Run `kafka-scheduler ARGS -b … --topic …`; the result has exit_code, stdout and stderr."""
    result = runner.invoke(
        app,
        [*args, "-b", stack.bootstrap, topic_flag, stack.scheduled_topic],
        input=input,
        catch_exceptions=False,
    )
    return result


def cli_json(stack: SchedulerStack, *args: str, topic_flag: str = "--topic") -> Any:
    result = cli(stack, *args, "-o", "json", topic_flag=topic_flag)
    assert result.exit_code in (0, 5), result.output
    return json.loads(result.stdout)


def listed(stack: SchedulerStack, *args: str) -> dict[str, Any]:
    return {item["id"]: item for item in cli_json(stack, "list", "--limit", "0", *args)["items"]}


def state_last_values(stack: SchedulerStack) -> dict[bytes, bytes | None]:
    """The state topic as compaction will leave it: last value per key (None = tombstone)."""
    return {r.key: r.value for r in read_all(stack.bootstrap, stack.settings.state) if r.key is not None}


def _saw(tail: Tail, timeout_s: float) -> bool:
    """Whether `tail` receives a record within `timeout_s`."""
    try:
        tail.poll_until(lambda r: len(r) > 0, timeout_s, "a record")
    except AssertionError:
        return False
    return True


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_list_get_and_stats_see_what_is_scheduled(scheduler_stack: SchedulerStack) -> None:
    orders = scheduler_stack.create_target(f"{scheduler_stack.scheduled_topic}-orders")
    mails = scheduler_stack.create_target(f"{scheduler_stack.scheduled_topic}-mails")
    now = datetime.now(UTC)
    with SchedulerClient(settings=scheduler_stack.client_settings) as client:
        for i in range(4):
            client.schedule(
                f"order-{i}", topic=orders, value=f"o{i}", key=f"u{i}", at=now + timedelta(hours=i + 1)
            )
        client.schedule(
            "mail-1", topic=mails, value=b"\xff\x00", headers={"trace": "t-1"}, at=now + timedelta(days=2)
        )
    wait_until(lambda: len(listed(scheduler_stack)) == 5, 30, "5 schedules in the state topic")

    assert list(listed(scheduler_stack, "--target", orders)) == ["order-0", "order-1", "order-2", "order-3"]
    assert list(listed(scheduler_stack, "--due-before", "2h30m")) == ["order-0", "order-1"]
    assert list(listed(scheduler_stack, "--due-after", "1d")) == ["mail-1"]
    cutoff = rfc3339(now + timedelta(hours=2, minutes=30))
    assert list(listed(scheduler_stack, "--due-after", cutoff, "--prefix", "order-")) == [
        "order-2",
        "order-3",
    ]
    page = cli_json(scheduler_stack, "list", "--limit", "2", "--offset", "1")
    assert page["total"] == 5 and [x["id"] for x in page["items"]] == ["order-1", "order-2"]
    table = cli(scheduler_stack, "list", "--prefix", "order-")
    assert table.exit_code == 0 and "order-3" in table.stdout and "mail-1" not in table.stdout

    one = cli_json(scheduler_stack, "get", "mail-1")
    assert (
        one["target_topic"] == mails and one["value"] == "base64:/wA=" and one["headers"] == {"trace": "t-1"}
    )
    assert one["due_at"] == rfc3339(now + timedelta(days=2))
    missing = cli(scheduler_stack, "get", "no-such-id")
    assert missing.exit_code == 4 and "not pending" in missing.stderr

    stats = cli_json(scheduler_stack, "stats")
    assert stats["total"] == 5 and stats["overdue"] == 0 and stats["later_than_24h"] == 1
    assert [h["count"] for h in stats["per_hour"][:5]] == [1, 1, 1, 1, 0]
    assert sum(p["pending"] for p in stats["partitions"]) == 5 and len(stats["partitions"]) == 3


def test_state_is_read_without_a_scheduler_and_get_falls_back_when_partition_counts_differ(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str], tmp_path: Path
) -> None:
    from scheduler.codec import encode_state
    from scheduler.model import Schedule
    from scheduler.partitioner import partition_for

    stack = SchedulerStack(
        kafka_bootstrap, unique("scheduled"), tmp_path
    )  # topics made by hand, nothing runs
    create_topic(stack.scheduled_topic, partitions=3)
    state = create_topic(stack.settings.state, partitions=2, config={"cleanup.policy": "compact"})
    due = int(datetime.now(UTC).timestamp() * 1000) + 3_600_000
    # Put x-1 in the state partition murmur2 would NOT pick for 3 partitions: only the fallback can find it.
    wrong = 1 - partition_for(b"x-1", 3) % 2
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(state, encode_state(Schedule("x-1", "t", due, b"v1"), 7), b"x-1", partition=wrong)
    producer.produce(state, encode_state(Schedule("x-2", "t", due, b"v2"), 8), b"x-2", partition=0)
    producer.produce(state, None, b"x-2", partition=0)  # fired or cancelled: gone
    assert producer.flush(30) == 0

    found = cli_json(stack, "get", "x-1")
    assert (found["partition"], found["version"], found["value"]) == (wrong, 7, "v1")
    assert cli(stack, "get", "x-2").exit_code == 4
    assert list(listed(stack)) == ["x-1"]
    stats = cli_json(stack, "stats")
    assert stats["total"] == 1 and len(stats["partitions"]) == 2


def test_cancel_one_and_bulk_by_prefix(scheduler_stack: SchedulerStack) -> None:
    target = scheduler_stack.create_target(f"{scheduler_stack.scheduled_topic}-target")
    with SchedulerClient(settings=scheduler_stack.client_settings) as client:
        for sid in ("bulk-1", "bulk-2", "bulk-3", "keep-1", "single"):
            client.schedule(sid, topic=target, value=sid, delay=timedelta(hours=1))
    wait_until(lambda: len(listed(scheduler_stack)) == 5, 30, "5 schedules pending")

    assert cli(scheduler_stack, "cancel", "single").exit_code == 0
    wait_until(lambda: cli(scheduler_stack, "get", "single").exit_code == 4, 30, "single cancelled")

    before = state_last_values(scheduler_stack)
    dry = cli(scheduler_stack, "cancel", "--prefix", "bulk-", "--dry-run")
    assert dry.exit_code == 0 and dry.stdout.count("would cancel bulk-") == 3
    declined = cli(scheduler_stack, "cancel", "--prefix", "bulk-", input="n\n")
    assert declined.exit_code == 1
    assert state_last_values(scheduler_stack) == before  # neither changed anything
    assert set(listed(scheduler_stack)) == {"bulk-1", "bulk-2", "bulk-3", "keep-1"}

    done = cli(scheduler_stack, "cancel", "--prefix", "bulk-", "--yes")
    assert done.exit_code == 0 and "cancelled 3" in done.stdout
    wait_until(lambda: set(listed(scheduler_stack)) == {"keep-1"}, 30, "only keep-1 left")
    assert scheduler_stack.instances[0].metric("kafka_scheduler_cancelled_total") == 4


def write_backlog(tmp: Path, target: str, now: datetime) -> tuple[Path, Path]:
    soon, past, later = now + timedelta(seconds=3), now - timedelta(hours=1), now + timedelta(hours=2)
    csv_file = tmp / "backlog.csv"
    csv_file.write_text(
        "id,topic,key,value,at,delay,headers\n"
        f'c-soon,{target},user-1,expire 1,{rfc3339(soon)},,"{{""trace"": ""abc""}}"\n'
        f"c-past,{target},user-2,expire 2,{rfc3339(past)},,\n"
        f"c-later,{target},user-3,expire 3,{rfc3339(later)},,\n"
        f"c-both,{target},,x,{rfc3339(later)},5m,\n"
        f"c-nowhere,{target}-missing,,x,{rfc3339(later)},,\n"
        f"c-badtime,{target},,x,next tuesday,,\n",
        encoding="utf-8",
    )
    jsonl_file = tmp / "backlog.jsonl"
    rows: list[dict[str, Any]] = [
        {"id": "j-soon", "topic": target, "value": "expire 4", "at": int(soon.timestamp() * 1000)},
        {"id": "j-later", "topic": target, "value": None, "key": "user-5", "at": rfc3339(later)},
        {"id": "j-delay", "topic": target, "value": "relative", "delay": "2h"},
        {"id": "j-ctl", "topic": target, "value": "x", "delay": "1m", "headers": {"scheduler-delay-ms": "5"}},
        {"id": "x" * 300, "topic": target, "value": "x", "delay": "1m"},
    ]
    jsonl_file.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n", encoding="utf-8")
    return csv_file, jsonl_file


def test_import_fires_rows_refuses_bad_ones_and_a_rerun_changes_nothing(
    scheduler_stack: SchedulerStack, tmp_path: Path
) -> None:
    target = scheduler_stack.create_target(f"{scheduler_stack.scheduled_topic}-target")
    csv_file, jsonl_file = write_backlog(tmp_path, target, datetime.now(UTC))
    tail = Tail(scheduler_stack.bootstrap, target)

    dry = cli_json(scheduler_stack, "import", str(csv_file), "--dry-run")
    assert dry["sent"] == 3 and dry["refused"] == 3
    assert state_last_values(scheduler_stack) == {}  # a dry run sends nothing

    first_csv = cli_json(scheduler_stack, "import", str(csv_file), "--rate", "50")
    assert (first_csv["sent"], first_csv["unchanged"], first_csv["done"]) == (3, 0, 0)
    assert first_csv["refused_by_reason"] == {"InvalidDeliverAt": 2, "InvalidTopic": 1}
    assert {r["id"]: r["line"] for r in first_csv["refusals"]} == {
        "c-both": 5,
        "c-nowhere": 6,
        "c-badtime": 7,
    }
    first_jsonl = cli_json(scheduler_stack, "import", str(jsonl_file))
    assert (first_jsonl["sent"], first_jsonl["refused"]) == (3, 3)
    assert first_jsonl["refused_by_reason"] == {"InvalidHeaders": 1, "InvalidScheduleId": 1, "InvalidRow": 1}
    human = cli(scheduler_stack, "import", str(jsonl_file), "--dry-run")
    assert human.exit_code == 5 and "InvalidScheduleId" in human.stdout and "refused 3" in human.stdout

    fired = tail.poll_until(lambda r: len(r) >= 3, 30, "c-soon, c-past and j-soon fire")
    by_id = {r.header("scheduler-schedule-id"): r for r in fired}
    assert set(by_id) == {"c-soon", "c-past", "j-soon"}
    assert by_id["c-soon"].key == b"user-1" and by_id["c-soon"].header("trace") == "abc"
    assert by_id["j-soon"].value == b"expire 4"
    wait_until(
        lambda: set(listed(scheduler_stack)) == {"c-later", "j-later", "j-delay"}, 30, "3 left pending"
    )
    assert listed(scheduler_stack)["j-later"]["value"] is None
    state_before = state_last_values(scheduler_stack)

    rerun_csv = cli_json(scheduler_stack, "import", str(csv_file))
    rerun_jsonl = cli_json(scheduler_stack, "import", str(jsonl_file))
    # at rows: pending ones are unchanged, fired ones are done: nothing is sent again.
    assert (rerun_csv["sent"], rerun_csv["unchanged"], rerun_csv["done"]) == (0, 1, 2)
    # the delay row is relative to the import's start, so a rerun moves it (documented: prefer `at`).
    assert (rerun_jsonl["sent"], rerun_jsonl["unchanged"], rerun_jsonl["done"]) == (1, 1, 1)
    moved = b"j-delay"
    wait_until(lambda: state_last_values(scheduler_stack)[moved] != state_before[moved], 30, "j-delay moved")
    state_after = state_last_values(scheduler_stack)
    assert {k: v for k, v in state_after.items() if k != moved} == {
        k: v for k, v in state_before.items() if k != moved
    }
    with pytest.raises(AssertionError, match="a second fire"):  # bounded: a stray fire gets 3 s to show up
        tail.poll_until(lambda r: len(r) > 3, 3, "a second fire")
    tail.close()
    counts = Counter(r.header("scheduler-schedule-id") for r in read_all(scheduler_stack.bootstrap, target))
    assert counts == Counter({"c-soon": 1, "c-past": 1, "j-soon": 1})


def test_dlq_inspect_and_replay_scheduler_dead_letters(scheduler_stack: SchedulerStack) -> None:
    doomed = scheduler_stack.create_target(f"{scheduler_stack.scheduled_topic}-doomed")
    rescue = scheduler_stack.create_target(f"{scheduler_stack.scheduled_topic}-rescue", partitions=1)
    with SchedulerClient(settings=scheduler_stack.client_settings) as client:
        client.schedule("doomed-1", topic=doomed, value="payload", key="user-1", headers={"trace": "t"},
                        delay=timedelta(seconds=8))  # fmt: skip
    wait_until(lambda: "doomed-1" in listed(scheduler_stack), 30, "the schedule accepted")
    scheduler_stack.admin().delete_topics([doomed])[doomed].result(timeout=30)
    dlt = Tail(scheduler_stack.bootstrap, scheduler_stack.settings.dlt)
    dlt.poll_until(lambda r: len(r) == 1, 40, "the dead letter")
    dlt.close()

    inspected = cli_json(scheduler_stack, "dlq", "inspect", topic_flag="--scheduled-topic")
    (letter,) = inspected["items"]
    assert inspected["topic"] == scheduler_stack.settings.dlt
    assert letter["kind"] == "scheduler-dlt" and letter["reason"] == "unknown_target_topic"
    assert letter["reasons"]["target-topic"] == doomed and letter["key"] == "user-1"
    assert letter["headers"]["trace"] == "t" and letter["headers"]["scheduler-schedule-id"] == "doomed-1"
    table = cli(scheduler_stack, "dlq", "inspect", topic_flag="--scheduled-topic")
    assert table.exit_code == 0 and "unknown_target_topic" in table.stdout

    dry = cli(scheduler_stack, "dlq", "replay", "--dry-run", topic_flag="--scheduled-topic")
    assert dry.exit_code == 0 and f"-> {doomed}" in dry.stdout and "would replay 1" in dry.stdout
    other = cli(scheduler_stack, "dlq", "replay", "--reason", "payload_too_large", "--to", rescue,
                topic_flag="--scheduled-topic")  # fmt: skip
    assert other.exit_code == 0 and "replayed 0" in other.stdout
    assert read_all(scheduler_stack.bootstrap, rescue) == []

    done = cli(scheduler_stack, "dlq", "replay", "--to", rescue, topic_flag="--scheduled-topic")
    assert done.exit_code == 0 and "replayed 1" in done.stdout
    (replayed,) = read_all(scheduler_stack.bootstrap, rescue)
    assert (replayed.key, replayed.value, replayed.header("trace")) == (b"user-1", b"payload", "t")
    assert replayed.header("scheduler-fire-id") != ""  # consumers still deduplicate by fire id
    assert not any(name.startswith("scheduler-dlt-") for name in replayed.headers)


def test_dlq_replay_of_a_rejected_command_fires_once_the_cause_is_fixed(
    scheduler_stack: SchedulerStack,
) -> None:
    late = f"{scheduler_stack.scheduled_topic}-created-late"
    producer = Producer({"bootstrap.servers": scheduler_stack.bootstrap})
    producer.produce(
        scheduler_stack.scheduled_topic,
        b"hello",
        b"early-bird",
        headers=[("scheduler-target-topic", late.encode()), ("scheduler-delay-ms", b"0"), ("trace", b"r")],
    )
    assert producer.flush(30) == 0
    rejected = Tail(scheduler_stack.bootstrap, scheduler_stack.settings.rejected)
    rejected.poll_until(lambda r: len(r) == 1, 30, "the reject")
    rejected.close()
    shown = cli_json(scheduler_stack, "dlq", "inspect", "--rejected", topic_flag="--scheduled-topic")
    assert [x["reason"] for x in shown["items"]] == ["unknown_target_topic"]
    assert shown["items"][0]["reasons"]["topic"] == scheduler_stack.scheduled_topic

    scheduler_stack.create_target(late)
    fired = Tail(scheduler_stack.bootstrap, late)
    # The scheduler re-checks an unknown topic after 2 s: probe until it accepts one for the new topic
    # (probes refused before that are rejected too, and replayed along with the command: harmless here).
    probes = 0

    def probe_fired() -> bool:
        nonlocal probes
        probes += 1
        headers = [("scheduler-target-topic", late.encode()), ("scheduler-delay-ms", b"0")]
        producer.produce(
            scheduler_stack.scheduled_topic, b"probe", f"probe-{probes}".encode(), headers=headers
        )
        producer.flush(10)
        return _saw(fired, 1.5)

    wait_until(probe_fired, 30, "the scheduler sees the new topic", interval_s=0)
    replay = cli(scheduler_stack, "dlq", "replay", "--rejected", topic_flag="--scheduled-topic")
    assert replay.exit_code == 0 and f"-> {scheduler_stack.scheduled_topic}/" in replay.stdout
    records = fired.poll_until(
        lambda r: any(x.value == b"hello" for x in r), 30, "the replayed command fires"
    )
    fired.close()
    (record,) = [x for x in records if x.value == b"hello"]
    assert (record.value, record.header("trace"), record.header("scheduler-schedule-id")) == (
        b"hello",
        "r",
        "early-bird",
    )
    assert not any(name.startswith("scheduler-reject-") for name in record.headers)


def test_dlq_inspect_and_replay_a_consumer_groups_dead_letters(
    scheduler_stack: SchedulerStack, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    from consumers import Message, NonRetryable, RetryPolicy
    from tests.integration.consumer_helpers import make_app, produce

    source = create_topic(unique("payments"), partitions=2)
    group = unique("g")
    produce(scheduler_stack.bootstrap, source, [(b"k-bad", b"declined", 1), (b"k-ok", b"ok", 0)])
    handled: list[bytes] = []
    broken = make_app(scheduler_stack.bootstrap, group, retry=RetryPolicy(max_attempts=1))

    @broken.handler(source)
    def strict(message: Message) -> None:
        if message.value == b"declined":
            raise NonRetryable("card declined")
        handled.append(message.value or b"")

    dlt = f"{source}.{group}.dlt"
    with broken.running():
        wait_until(lambda: handled == [b"ok"], 30, "the good record handled")
        wait_until(lambda: len(read_all(scheduler_stack.bootstrap, dlt)) == 1, 30, "the dead letter")

    shown = cli_json(scheduler_stack, "dlq", "inspect", "--dlt", dlt)
    (letter,) = shown["items"]
    assert letter["kind"] == "consumer-dlt" and letter["reason"] == "non_retryable_error"
    assert letter["reasons"]["exception-message"] == "card declined"
    assert letter["reasons"]["original-topic"] == source and letter["reasons"]["group"] == group

    replay = cli(scheduler_stack, "dlq", "replay", "--dlt", dlt)
    assert replay.exit_code == 0 and f"-> {source}/1" in replay.stdout  # back into the partition it came from
    fixed = make_app(scheduler_stack.bootstrap, group)

    @fixed.handler(source)
    def lenient(message: Message) -> None:
        handled.append(message.value or b"")

    with fixed.running():
        wait_until(
            lambda: handled == [b"ok", b"declined"], 30, "the replayed record handled by the fixed app"
        )
    again = [r for r in read_all(scheduler_stack.bootstrap, source) if r.key == b"k-bad"]
    assert [r.partition for r in again] == [1, 1]
    assert not any(name.startswith("consumer-dlt-") for name in again[1].headers)


def test_import_sends_a_repeated_id_once_refuses_what_the_scheduler_would_and_never_stops(
    scheduler_stack: SchedulerStack, tmp_path: Path
) -> None:
    target = scheduler_stack.create_target(f"{scheduler_stack.scheduled_topic}-target")
    at = rfc3339(datetime.now(UTC) + timedelta(hours=2))
    rows = tmp_path / "excel.csv"  # with a byte order mark, as Excel saves CSV
    rows.write_bytes(
        b"\xef\xbb\xbf"
        + (
            "id,topic,value,at,partition\n"
            f"x,{target},first,{at},\n"
            f"own,{scheduler_stack.settings.state},v,{at},\n"
            f"internal,__consumer_offsets,v,{at},\n"
            f"far,{target},v,{at},99\n"
            f"x,{target},second,{at},\n"
        ).encode()
    )
    first = cli(scheduler_stack, "import", str(rows), "-o", "json")
    assert first.exit_code == 5, first.output
    summary = json.loads(first.stdout)
    assert (summary["sent"], summary["superseded"], summary["refused"]) == (1, 1, 3)
    assert {r["id"]: r["message"] for r in summary["refusals"]}.keys() == {"own", "internal", "far"}
    assert all(
        word in " ".join(r["message"] for r in summary["refusals"])
        for word in ("forbidden_target_topic", "invalid_target_topic")
    )
    wait_until(lambda: listed(scheduler_stack).get("x", {}).get("value") == "second", 30, "x = second")
    state_before = state_last_values(scheduler_stack)

    rerun = json.loads(cli(scheduler_stack, "import", str(rows), "-o", "json").stdout)
    assert (rerun["sent"], rerun["unchanged"], rerun["superseded"], rerun["refused"]) == (0, 1, 1, 3)
    assert state_last_values(scheduler_stack) == state_before  # same version, same fire id

    broken = tmp_path / "broken.csv"
    broken.write_bytes(
        b"id,topic,value,at\n"
        + f"big,{target},{'x' * 140_000},{at}\n".encode()
        + f"latin1,{target},caf".encode()
        + b"\xe9"
        + f",{at}\nlast,{target},v,{at}\n".encode()
    )
    result = cli(scheduler_stack, "import", str(broken), "-o", "json")
    assert result.exit_code == 5, result.output
    done = json.loads(result.stdout)
    assert (done["sent"], done["refused"]) == (2, 1) and done["refusals"][0]["id"] == "latin1"

    absurd = tmp_path / "absurd.jsonl"
    absurd.write_text(
        json.dumps({"id": "nines", "topic": target, "delay": "9" * 400}) + "\n", encoding="utf-8"
    )
    only_refused = cli(scheduler_stack, "import", str(absurd))
    assert only_refused.exit_code == 1 and "InvalidDeliverAt" in only_refused.stdout  # nothing went: failed
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    nothing = cli(scheduler_stack, "import", str(empty))
    assert nothing.exit_code == 0 and "sent 0" in nothing.stdout


def test_stats_reports_corrupt_state_records_as_list_does(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str], tmp_path: Path
) -> None:
    from scheduler.codec import encode_state
    from scheduler.model import Schedule

    stack = SchedulerStack(kafka_bootstrap, unique("scheduled"), tmp_path)
    create_topic(stack.scheduled_topic, partitions=1)
    state = create_topic(stack.settings.state, partitions=1, config={"cleanup.policy": "compact"})
    due = int(datetime.now(UTC).timestamp() * 1000) + 3_600_000
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(state, encode_state(Schedule("fine", "t", due, b"v"), 1), b"fine", partition=0)
    producer.produce(state, b"not a state record", b"broken", partition=0)
    assert producer.flush(30) == 0

    stats = cli(stack, "stats", "-o", "json")
    assert stats.exit_code == 0, stats.output
    doc = json.loads(stats.stdout)
    assert doc["total"] == 1 and len(doc["corrupt"]) == 1 and "'broken'" in doc["corrupt"][0]
    warning = f"warning: corrupt state record {state}/0@1 id 'broken'"
    assert warning in stats.stderr
    assert warning in cli(stack, "list").stderr  # the same words as list
    assert "corrupt state records 1" in cli(stack, "stats").stdout


def test_a_partly_failed_replay_names_the_failed_records_and_a_rerun_sends_only_those(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str], tmp_path: Path
) -> None:
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    source = create_topic(unique("replay-source"), 2, {"max.message.bytes": "2000"})
    dlt = create_topic(unique("replay-dlt"), 1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(6):  # small ones back to partition 0, 5 KB ones to partition 1: too large for the topic
        big = i % 2 == 1
        headers = [
            ("consumer-dlt-reason", b"non_retryable_error"),
            ("consumer-dlt-original-topic", source.encode()),
            ("consumer-dlt-original-partition", b"1" if big else b"0"),
        ]
        producer.produce(dlt, (b"x" * 5000 if big else b"small") + str(i).encode(), f"k{i}", headers=headers)
    assert producer.flush(30) == 0
    stack = SchedulerStack(kafka_bootstrap, unique("scheduled"), tmp_path)

    first = cli(stack, "dlq", "replay", "--dlt", dlt)
    assert first.exit_code == 1, first.output
    failed = [line for line in first.stderr.splitlines() if line.startswith("not delivered: ")]
    assert [line.split()[2] for line in failed] == [f"{dlt}/0@1", f"{dlt}/0@3", f"{dlt}/0@5"], first.stderr
    assert all("too large" in line.lower() for line in failed), failed
    assert "replayed 3, not delivered 3" in first.stdout and "rerun" in first.stderr.splitlines()[-1]
    assert sorted(r.value for r in read_all(kafka_bootstrap, source)) == [b"small0", b"small2", b"small4"]

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    entry = ConfigEntry("max.message.bytes", "1000000", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ConfigResource.Type.TOPIC, source, incremental_configs=[entry])
    admin.incremental_alter_configs([resource])[resource].result(timeout=30)

    def limit() -> str:
        (config,) = [
            f.result(timeout=10) for f in admin.describe_configs([ConfigResource("topic", source)]).values()
        ]
        return str(config["max.message.bytes"].value)

    wait_until(lambda: limit() == "1000000", 30, "the topic takes large records")
    second = cli(stack, "dlq", "replay", "--dlt", dlt)
    assert second.exit_code == 0, second.output
    assert "replayed 3, not delivered 0, skipped 0, replayed before 3" in second.stdout
    third = cli(stack, "dlq", "replay", "--dlt", dlt)
    assert (
        third.exit_code == 0 and "replayed 0, not delivered 0, skipped 0, replayed before 6" in third.stdout
    )
    values = Counter(r.value for r in read_all(kafka_bootstrap, source))
    assert len(values) == 6 and set(values.values()) == {1}, values  # each once: no duplicates
    again = cli(stack, "dlq", "replay", "--dlt", dlt, "--include-replayed", "--dry-run")
    assert "would replay 6" in again.stdout
