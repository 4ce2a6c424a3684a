"""An import never stops at a bad row: malformed files end in per-row refusals, a rerun sends nothing new."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from scheduler.client import ClientCore
from scheduler.errors import InvalidTopic
from scheduler.model import RejectReason, Schedule
from scheduler.ops.importer import (
    ImportOptions,
    ImportSummary,
    RowPlanner,
    client_settings,
    digest,
    run_import,
)
from scheduler.ops.policy import TargetPolicy
from scheduler.ops.rows import Refusal, Row, read_rows
from scheduler.settings import ServiceSettings

SETTINGS = ServiceSettings(bootstrap_servers="127.0.0.1:1", scheduled_topic="sched", _env_file=None)  # type: ignore[call-arg]
TARGETS = TargetPolicy({"t": 3}, SETTINGS.own_topics, re.compile(r"^nope\..*"), re.compile(r".*"))
AT = "2030-01-01T00:00:00Z"


def dry_run(path: Path, fmt: str, existing: dict[str, bytes] | None = None) -> ImportSummary:
    return run_import(
        SETTINGS,
        lambda: read_rows(path, fmt),
        ImportOptions(dry_run=True),
        existing=(existing if existing is not None else {}, set()),
        targets=TARGETS,
    )


def refusal_lines(summary: ImportSummary) -> dict[int, str]:
    return {r.line: r.reason for r in summary.refusals}


def test_a_repeated_id_sends_its_last_row_only_and_a_rerun_sends_nothing(tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text(f"id,topic,value,at\nx,t,first,{AT}\ny,t,other,{AT}\nx,t,second,{AT}\n", encoding="utf-8")
    first = dry_run(rows, "csv")
    assert (first.counts["sent"], first.counts["superseded"], first.counts["refused"]) == (2, 1, 0)
    # the scheduler now holds what the first run sent: x = "second", and y
    planner = RowPlanner(ClientCore(None, client_settings(SETTINGS), None), None, 0)
    state = {
        sid: digest(planner.schedule(Row(0, sid, "t", value=v, at=AT)))
        for sid, v in [("x", "second"), ("y", "other")]
    }
    rerun = dry_run(rows, "csv", state)
    assert (rerun.counts["sent"], rerun.counts["unchanged"], rerun.counts["superseded"]) == (0, 2, 1)


def test_a_byte_order_mark_is_skipped(tmp_path: Path) -> None:
    rows = tmp_path / "excel.csv"
    rows.write_bytes(b"\xef\xbb\xbf" + b"id,topic,delay\na,t,1m\n")
    summary = dry_run(rows, "csv")
    assert (summary.counts["sent"], summary.counts["refused"]) == (1, 0)


def test_bytes_that_are_not_utf8_refuse_their_row_only(tmp_path: Path) -> None:
    rows = tmp_path / "latin1.csv"
    rows.write_bytes(b"id,topic,value,delay\na,t,ok,1m\nb,t,caf\xe9,1m\nc,t,ok,1m\n")
    summary = dry_run(rows, "csv")
    assert (summary.counts["sent"], summary.counts["refused"]) == (2, 1)
    (refusal,) = summary.refusals
    assert (refusal.line, refusal.id, refusal.reason) == (3, "b", "InvalidRow")
    assert "value is not valid UTF-8 (byte 0xe9" in refusal.message
    jsonl = tmp_path / "latin1.jsonl"
    jsonl.write_bytes(
        b'{"id": "a", "topic": "t", "delay": "1m"}\n{"id": "b\xff", "topic": "t", "delay": "1m"}\n'
    )
    assert refusal_lines(dry_run(jsonl, "jsonl")) == {2: "InvalidRow"}


def test_a_field_larger_than_the_csv_modules_limit_is_read_and_judged_by_size(tmp_path: Path) -> None:
    rows = tmp_path / "big.csv"
    rows.write_text(
        f"id,topic,value,delay\nsmall,t,{'x' * 200_000},1m\nhuge,t,{'x' * 2_000_000},1m\nafter,t,v,1m\n",
        encoding="utf-8",
    )
    summary = dry_run(rows, "csv")
    assert summary.counts["sent"] == 2  # 200 KB is a fine payload (max_payload_bytes is 1 MiB)
    assert refusal_lines(summary) == {3: "PayloadTooLarge"}


def test_absurd_numbers_refuse_their_row(tmp_path: Path) -> None:
    lines = [
        {"id": "delay", "topic": "t", "delay": "9" * 400},
        {"id": "delay-units", "topic": "t", "delay": "9" * 400 + "d"},
        {"id": "at", "topic": "t", "at": "9" * 400},
        {"id": "at-float", "topic": "t", "at": 1e300},
        {"id": "partition", "topic": "t", "delay": "1m", "partition": 10**400},
        {"id": "ok", "topic": "t", "delay": "1m"},
    ]
    text = "\n".join(json.dumps(x) for x in lines)
    text += '\n{"id": "huge-int", "topic": "t", "at": ' + "9" * 5000 + "}"  # beyond Python's 4300 digits
    text += "\n" + "[" * 100_000 + "]" * 100_000  # nested beyond the recursion limit
    rows = tmp_path / "absurd.jsonl"
    rows.write_text(text + "\n", encoding="utf-8")
    summary = dry_run(rows, "jsonl")
    assert summary.counts["sent"] == 1
    assert refusal_lines(summary) == {
        1: "InvalidDeliverAt",
        2: "InvalidDeliverAt",
        3: "InvalidDeliverAt",
        4: "InvalidDeliverAt",
        5: "InvalidTopic",
        7: "InvalidRow",
        8: "InvalidRow",
    }
    at = next(r for r in summary.refusals if r.id == "at")
    assert "relative" not in at.message  # `at` takes no relative forms, so the message offers none


def test_an_empty_file_imports_nothing_and_refuses_nothing(tmp_path: Path) -> None:
    for name in ("empty.csv", "empty.jsonl", "header-only.csv"):
        rows = tmp_path / name
        rows.write_text("id,topic,at\n" if name.startswith("header") else "", encoding="utf-8")
        summary = dry_run(rows, "csv" if name.endswith("csv") else "jsonl")
        assert sum(summary.counts.values()) == 0, name


@pytest.mark.parametrize(
    ("topic", "partition", "reason"),
    [
        ("sched.state", None, RejectReason.FORBIDDEN_TARGET_TOPIC),
        ("sched", None, RejectReason.FORBIDDEN_TARGET_TOPIC),
        ("__consumer_offsets", None, RejectReason.FORBIDDEN_TARGET_TOPIC),
        ("nope.x", None, RejectReason.FORBIDDEN_TARGET_TOPIC),
        ("missing", None, RejectReason.UNKNOWN_TARGET_TOPIC),
        ("t", 99, RejectReason.INVALID_TARGET_TOPIC),
        ("t", 3, RejectReason.INVALID_TARGET_TOPIC),
    ],
)
def test_what_the_scheduler_would_reject_is_refused_with_its_reason(
    topic: str, partition: int | None, reason: RejectReason
) -> None:
    with pytest.raises(InvalidTopic, match=reason.value) as refused:
        TARGETS.check(Schedule("i", topic, 0, target_partition=partition))
    assert refused.value.reason == reason
    TARGETS.check(Schedule("i", "t", 0, target_partition=2))


def test_refused_rows_are_counted_not_raised(tmp_path: Path) -> None:
    rows = tmp_path / "mixed.csv"
    rows.write_text(
        f"id,topic,partition,at\na,sched.state,,{AT}\nb,t,99,{AT}\nc,t,1,{AT}\n", encoding="utf-8"
    )
    summary = dry_run(rows, "csv")
    assert summary.counts["sent"] == 1 and summary.accepted == 1
    assert [isinstance(r, Refusal) for r in summary.refusals] == [True, True]
