"""The ops tools' pure parts: time arguments, import rows, the import's idempotence rules, stats, dead letters."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from scheduler.client import ClientCore
from scheduler.config import ClientSettings
from scheduler.errors import InvalidDeliverAt, InvalidHeaders, InvalidScheduleId, InvalidTopic
from scheduler.model import Schedule
from scheduler.ops.dlq import decode
from scheduler.ops.importer import Pacer, RowPlanner, _outcome, digest
from scheduler.ops.policy import TargetPolicy
from scheduler.ops.query import ListFilter, compute_stats, iso, parse_duration_ms, parse_when_ms, text_or_b64
from scheduler.ops.reader import TopicRecord
from scheduler.ops.rows import Refusal, Row, detect_format, parse_csv, parse_jsonl

NOW = 1_800_000_000_000
H = 3_600_000


@pytest.mark.parametrize(
    ("text", "ms"),
    [("500ms", 500), ("90s", 90_000), ("15m", 900_000), ("1h30m", 5_400_000), ("2d", 172_800_000),
     ("1w", 604_800_000), ("250", 250), ("1.5h", 5_400_000)],
)  # fmt: skip
def test_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "1x", "h", "1h 2m", "-5m", "1h-"])
def test_bad_durations_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_ms(text)


@pytest.mark.parametrize(("text", "ms"), [("1h", NOW + H), ("+30m", NOW + 30 * 60_000), ("-1h", NOW - H)])
def test_relative_times(text: str, ms: int) -> None:
    assert parse_when_ms(text, NOW) == ms


def test_absolute_times_rfc3339_and_epoch_ms() -> None:
    moment = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
    expected = int(moment.timestamp() * 1000)
    assert parse_when_ms("2027-01-15T08:00:00Z", NOW) == expected
    assert parse_when_ms("2027-01-15T10:00:00+02:00", NOW) == expected
    assert parse_when_ms("2027-01-15t08:00:00.250z", NOW) == expected + 250
    assert parse_when_ms(str(expected), NOW) == expected
    assert iso(expected) == "2027-01-15T08:00:00.000Z"


def test_naive_and_garbage_times_are_refused() -> None:
    with pytest.raises(ValueError, match="offset"):
        parse_when_ms("2027-01-15T08:00:00", NOW)
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_when_ms("tomorrow-ish", NOW)


def test_csv_rows_stream_with_line_numbers_and_refusals() -> None:
    text = (
        "id,topic,key,value,at,delay,headers\n"
        'a,t,k1,hello,2027-01-15T08:00:00Z,,"{""trace"": ""x""}"\n'
        "b,t,,,,15m,\n"
        ",t,,v,,1m,\n"
        'c,t,,v,,1m,"{not json"\n'
        "d,t,,v,,1m,,extra\n"
    )
    out = list(parse_csv(io.StringIO(text)))
    a, b, missing_id, bad_headers, extra = out
    assert a == Row(2, "a", "t", "k1", "hello", "2027-01-15T08:00:00Z", None, {"trace": "x"})
    assert b == Row(3, "b", "t", None, "", None, "15m", {})  # an empty CSV value is an empty payload
    assert isinstance(missing_id, Refusal) and missing_id.line == 4 and "id is missing" in missing_id.message
    assert isinstance(bad_headers, Refusal) and bad_headers.id == "c" and "JSON object" in bad_headers.message
    assert isinstance(extra, Refusal) and extra.id == "d"


def test_csv_without_required_columns_is_one_refusal() -> None:
    (only,) = parse_csv(io.StringIO("name,topic\nx,t\n"))
    assert isinstance(only, Refusal) and "['id']" in only.message


def test_jsonl_rows_keep_types_and_refuse_bad_lines() -> None:
    lines = [
        '{"id": "a", "topic": "t", "value": null, "at": 1800000000000, "headers": {"h": null}}',
        "",
        '{"id": "b", "topic": "t", "value": "v", "delay": "1h", "partition": 2}',
        "[1, 2]",
        '{"id": "c", "topic": "t", "colour": "red"}',
        "{broken",
        '{"id": "d", "topic": "t", "headers": {"n": 5}}',
    ]
    out = list(parse_jsonl(io.StringIO("\n".join(lines))))
    assert out[0] == Row(1, "a", "t", None, None, "1800000000000", None, {"h": None})
    assert out[1] == Row(3, "b", "t", None, "v", None, "1h", {}, 2)
    assert [type(x).__name__ for x in out[2:]] == ["Refusal"] * 4
    assert [x.line for x in out[2:]] == [4, 5, 6, 7]
    assert "unknown column" in out[3].message and out[3].id == "c"  # type: ignore[union-attr]


def test_format_from_suffix_or_option() -> None:
    from pathlib import Path

    assert detect_format(Path("x.CSV"), None) == "csv"
    assert detect_format(Path("x.ndjson"), None) == "jsonl"
    assert detect_format(Path("x.txt"), "csv") == "csv"
    with pytest.raises(ValueError, match="--format"):
        detect_format(Path("x.txt"), None)


ONE_TOPIC = TargetPolicy({"t": 3}, frozenset())


def planner(targets: TargetPolicy | None = ONE_TOPIC) -> RowPlanner:
    return RowPlanner(ClientCore(None, ClientSettings(bootstrap_servers="127.0.0.1:1"), None), targets, NOW)


def test_rows_become_schedules_with_one_now_per_import() -> None:
    p = planner()
    at = p.schedule(Row(1, "a", "t", "k", "v", at="2027-01-15T08:00:00Z", headers={"h": "1"}))
    assert at.due_ms == int(datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp() * 1000)
    assert at.target_key == b"k" and at.payload == b"v" and at.headers == (("h", b"1"),)
    first = p.schedule(Row(2, "b", "t", delay="15m"))
    second = p.schedule(Row(3, "c", "t", delay="15m"))
    assert first.due_ms == second.due_ms == NOW + 15 * 60_000


@pytest.mark.parametrize(
    ("row", "error"),
    [
        (Row(1, "a", "t", at="2027-01-15T08:00:00Z", delay="1m"), InvalidDeliverAt),
        (Row(1, "a", "t"), InvalidDeliverAt),
        (Row(1, "a", "t", at="soon"), InvalidDeliverAt),
        (Row(1, "a", "t", at="2027-01-15T08:00:00"), InvalidDeliverAt),
        (Row(1, "a" * 300, "t", delay="1m"), InvalidScheduleId),
        (Row(1, "a", "bad topic!", delay="1m"), InvalidTopic),
        (Row(1, "a", "missing", delay="1m"), InvalidTopic),
        (Row(1, "a", "t", delay="1m", headers={"scheduler-target-topic": "x"}), InvalidHeaders),
    ],
)
def test_invalid_rows_raise_the_clients_named_errors(row: Row, error: type[Exception]) -> None:
    with pytest.raises(error):
        planner().schedule(row)


def test_idempotence_rules() -> None:
    s = Schedule("a", "t", NOW, b"v", b"k", (("h", b"1"),), None, created_ms=1)
    same_but_newer = Schedule("a", "t", NOW, b"v", b"k", (("h", b"1"),), None, created_ms=2, producer="p")
    moved = Schedule("a", "t", NOW + 1, b"v", b"k", (("h", b"1"),))
    assert digest(s) == digest(same_but_newer) != digest(moved)
    assert digest(Schedule("a", "t", NOW, None)) != digest(Schedule("a", "t", NOW, b""))
    assert _outcome(s, {"a": digest(same_but_newer)}, set(), False) == "unchanged"
    assert _outcome(moved, {"a": digest(s)}, set(), False) == "sent"
    assert _outcome(s, {}, {"a"}, False) == "done"
    assert _outcome(s, {}, {"a"}, True) == "sent"
    assert _outcome(s, {}, set(), False) == "sent"


def test_pacer_spaces_sends_at_the_rate() -> None:
    now = [100.0]
    pacer = Pacer(4.0, clock=lambda: now[0])
    assert [pacer.delay() for _ in range(3)] == [0.0, 0.25, 0.5]
    now[0] += 10  # idle time is not saved up as a burst
    assert pacer.delay() == 0.0
    assert Pacer(None).delay() == 0.0


def test_list_filter_combines_bounds() -> None:
    s = Schedule("order-1", "orders", NOW)
    assert ListFilter(due_before_ms=NOW + 1, due_after_ms=NOW, target="orders", prefix="order-")(s)
    assert not ListFilter(due_before_ms=NOW)(s)
    assert not ListFilter(target="other")(s)
    assert not ListFilter(prefix="x")(s)


def test_stats_buckets_by_hour_from_now() -> None:
    dues = [(0, NOW - 1), (0, NOW), (1, NOW + H - 1), (1, NOW + H), (2, NOW + 23 * H + 5), (2, NOW + 24 * H)]
    st = compute_stats(dues, 4, NOW)
    assert st.total == 6 and st.pending == {0: 2, 1: 2, 2: 2, 3: 0}
    assert st.overdue == 1 and st.later == 1
    assert st.per_hour[0] == 2 and st.per_hour[1] == 1 and st.per_hour[23] == 1 and sum(st.per_hour) == 4
    assert st.next_due_ms == {0: NOW - 1, 1: NOW + H - 1, 2: NOW + 23 * H + 5}
    assert st.as_json()["partitions"][3] == {"partition": 3, "pending": 0, "next_due": None}


def test_binary_values_stay_valid_json() -> None:
    assert text_or_b64(b"hi") == "hi"
    assert text_or_b64(b"\xff\x00") == "base64:/wA="
    assert text_or_b64(None) is None


def test_dead_letter_headers_decode_by_component_prefix() -> None:
    def rec(headers: list[tuple[str, bytes | None]]) -> TopicRecord:
        return TopicRecord("x.dlt", 0, 7, NOW, b"k", b"v", tuple(headers))

    sched = decode(rec([("trace", b"1"), ("scheduler-dlt-reason", b"unknown_target_topic"),
                        ("scheduler-dlt-target-topic", b"orders"), ("scheduler-fire-id", b"a@3")]))  # fmt: skip
    assert sched.kind == "scheduler-dlt" and sched.reason == "unknown_target_topic"
    assert sched.origin_topic == "orders"
    assert sched.user_headers == (("trace", b"1"), ("scheduler-fire-id", b"a@3"))
    consumer = decode(rec([("consumer-dlt-reason", b"non_retryable_error"),
                           ("consumer-dlt-exception-message", b"declined"),
                           ("consumer-dlt-original-topic", b"payments")]))  # fmt: skip
    assert consumer.kind == "consumer-dlt" and consumer.message == "declined"
    assert consumer.origin_topic == "payments" and consumer.user_headers == ()
    rejected = decode(
        rec([("scheduler-reject-reason", b"invalid_due"), ("scheduler-reject-topic", b"scheduled")])
    )
    assert rejected.kind == "scheduler-rejected" and rejected.origin_topic == "scheduled"
    assert decode(rec([])).kind == "unknown"
