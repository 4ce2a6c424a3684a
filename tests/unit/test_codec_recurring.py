"""The wire of recurring schedules: the header protocol's kinds, options and control commands, each accepted form
back to what was meant, each malformed one rejected with its reason; envelopes and state records of them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler import codec
from scheduler.errors import CodecError
from scheduler.model import (
    PARKED_MS,
    Backfill,
    Cancel,
    Done,
    Pause,
    Recurrence,
    Rejected,
    RejectReason,
    Relocated,
    Resume,
    Schedule,
)
from scheduler.service.plan import InputRecord

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
TOPIC = "jobs.invoices"
BAD = RejectReason.INVALID_RECURRENCE


def decode(value: bytes | None, hdrs: list[tuple[str, bytes | None]], ts: int = NOW) -> Any:
    return codec.decode_command(b"job", value, hdrs, ts)


def reason(result: object) -> RejectReason:
    assert isinstance(result, Rejected), result
    return result.reason


def target(*extra: tuple[str, bytes | None]) -> list[tuple[str, bytes | None]]:
    return [("scheduler-target-topic", TOPIC.encode()), *extra]


# --- schedules ---


def test_a_cron_schedule_with_every_option() -> None:
    hdrs = target(
        ("scheduler-cron", b"0 2 * * *"),
        ("scheduler-timezone", b"Europe/Paris"),
        ("scheduler-starts-at", b"2026-01-01T00:00:00+01:00"),
        ("scheduler-ends-at", str(NOW + 86_400_000).encode()),
        ("scheduler-max-runs", b"10"),
        ("scheduler-missed", b"all"),
        ("scheduler-overlap", b"buffer_one"),
        ("user", b"1"),
    )
    assert decode(b"p", hdrs) == Schedule(
        id="job",
        target_topic=TOPIC,
        due_ms=NOW,  # the record time: the scheduler arms the first occurrence
        payload=b"p",
        headers=(("user", b"1"),),  # no recurring header passes through to the fires
        created_ms=NOW,
        recurrence=Recurrence(
            cron="0 2 * * *",
            timezone="Europe/Paris",
            starts_at=NOW - 3_600_000,
            ends_at=NOW + 86_400_000,
            max_runs=10,
            missed="all",
            overlap="buffer_one",
        ),
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("scheduler-every-ms", Recurrence(every_ms=900_000)),
        ("scheduler-after-ms", Recurrence(after_ms=900_000)),
    ],
)
def test_every_and_after_are_milliseconds_with_the_defaults(header: str, expected: Recurrence) -> None:
    s = decode(b"p", target((header, b"900000")))
    assert isinstance(s, Schedule) and s.recurrence == expected and s.due_ms == NOW
    assert (expected.timezone, expected.missed, expected.overlap) == ("UTC", "latest", "allow")


@pytest.mark.parametrize(
    ("hdrs", "expected", "words"),
    [
        ([("scheduler-cron", b"* * * * *"), ("scheduler-every-ms", b"5")], BAD, "exactly one of"),
        ([("scheduler-every-ms", b"5"), ("scheduler-every-ms", b"6")], BAD, "exactly one of"),
        (
            [("scheduler-cron", b"* * * * *"), ("scheduler-deliver-at", b"5")],
            RejectReason.INVALID_DUE,
            "no due",
        ),
        ([("scheduler-every-ms", b"5"), ("scheduler-delay-ms", b"5")], RejectReason.INVALID_DUE, "no due"),
        ([("scheduler-every-ms", b"15m")], BAD, "must be an integer"),
        ([("scheduler-after-ms", None)], BAD, "must be an integer"),
        ([("scheduler-every-ms", b"9" * 19)], BAD, "64 bits"),
        ([("scheduler-cron", b"  ")], BAD, "empty"),
        ([("scheduler-cron", b"\xff")], BAD, "UTF-8"),
        ([("scheduler-every-ms", b"5"), ("scheduler-timezone", b"")], BAD, "empty"),
        ([("scheduler-every-ms", b"5"), ("scheduler-starts-at", b"tomorrow")], BAD, "neither epoch ms"),
        ([("scheduler-every-ms", b"5"), ("scheduler-ends-at", b"2026-01-01T00:00:00")], BAD, "no offset"),
        ([("scheduler-every-ms", b"5"), ("scheduler-max-runs", b"ten")], BAD, "must be an integer"),
        ([("scheduler-every-ms", b"5"), ("scheduler-missed", b"some")], BAD, "skip | latest | all"),
        ([("scheduler-every-ms", b"5"), ("scheduler-overlap", b"queue")], BAD, "allow | skip | buffer_one"),
        (
            [("scheduler-every-ms", b"5"), ("scheduler-missed", b"all"), ("scheduler-missed", b"skip")],
            BAD,
            "2 times",
        ),
        ([("scheduler-timezone", b"UTC"), ("scheduler-deliver-at", b"5")], BAD, "without one of"),
    ],
)
def test_malformed_recurring_headers_are_rejected_with_a_reason(
    hdrs: list[tuple[str, bytes | None]], expected: RejectReason, words: str
) -> None:
    result = decode(b"p", target(*hdrs))
    assert reason(result) is expected
    assert words in result.message and result.schedule_id == "job"


def test_semantic_checks_are_the_scheduler_intakes_not_the_codecs() -> None:
    """Cron syntax, zones and the minimum interval are scheduler.recurring.validate's (with its settings)."""
    hdrs = target(("scheduler-cron", b"not cron"), ("scheduler-timezone", b"Mars/Olympus"))
    s = decode(b"p", hdrs)
    assert isinstance(s, Schedule) and s.recurrence == Recurrence(cron="not cron", timezone="Mars/Olympus")


specs = st.builds(
    Recurrence,
    cron=st.none(),
    every_ms=st.integers(min_value=1, max_value=2**40),
    timezone=st.sampled_from(["UTC", "Europe/Paris"]),
    starts_at=st.none() | st.integers(min_value=0, max_value=2 * NOW),
    ends_at=st.none() | st.integers(min_value=0, max_value=2 * NOW),
    max_runs=st.none() | st.integers(min_value=1, max_value=1000),
    missed=st.sampled_from(["skip", "latest", "all"]),
    overlap=st.sampled_from(["allow", "skip", "buffer_one"]),
)
kinds = st.one_of(
    specs,
    specs.map(lambda r: replace(r, every_ms=None, cron="*/5 * * * *")),
    specs.map(lambda r: replace(r, every_ms=None, after_ms=r.every_ms, overlap="allow")),
)


@given(kinds, st.binary(max_size=50), st.integers(min_value=NOW, max_value=2 * NOW))
def test_to_header_protocol_round_trips_a_recurring_schedule(r: Recurrence, payload: bytes, ts: int) -> None:
    s = Schedule("job", TOPIC, 0, payload, b"k", (("h", b"v"),), 1, recurrence=r)
    value, hdrs = codec.to_header_protocol(s)
    assert not any(name == "scheduler-deliver-at" for name, _ in hdrs)
    assert decode(value, hdrs, ts) == replace(s, due_ms=ts, created_ms=ts)


@pytest.mark.parametrize(
    "r",
    [
        Recurrence(every_ms=5, paused=True),
        Recurrence(every_ms=5, catch_up_ms=1),
        Recurrence(every_ms=5, runs=2),
    ],
)
def test_what_the_headers_cannot_say_is_refused_not_dropped(r: Recurrence) -> None:
    with pytest.raises(CodecError, match="Avro envelope"):
        codec.to_header_protocol(Schedule("job", TOPIC, 0, b"p", recurrence=r))


def test_recurring_header_names_are_control_headers() -> None:
    names = [
        "cron",
        "every-ms",
        "after-ms",
        "timezone",
        "starts-at",
        "ends-at",
        "max-runs",
        "missed",
        "overlap",
    ]
    names += ["control", "backfill-from", "backfill-to"]
    assert {f"scheduler-{n}" for n in names} <= codec.CONTROL_HEADERS
    with pytest.raises(CodecError, match="collide"):
        codec.to_header_protocol(Schedule("job", TOPIC, 5, b"p", headers=(("scheduler-cron", b"x"),)))


# --- control commands ---


@pytest.mark.parametrize("value", [b"", b"ignored", None, codec.encode_cancel("job")])
@pytest.mark.parametrize(("word", "expected"), [(b"pause", Pause("job")), (b"resume", Resume("job"))])
def test_pause_and_resume_by_header_any_value(word: bytes, expected: object, value: bytes | None) -> None:
    assert decode(value, [("scheduler-control", word)]) == expected


def test_done_carries_the_fire_id_and_the_record_time() -> None:
    hdrs = [("scheduler-control", b"done"), ("scheduler-fire-id", b"job@7/1767225600000")]
    assert decode(b"", hdrs, ts=NOW + 5) == Done("job", "job@7/1767225600000", NOW + 5)


def test_backfill_takes_epoch_ms_or_rfc3339() -> None:
    hdrs = [
        ("scheduler-control", b"backfill"),
        ("scheduler-backfill-from", b"2025-12-31T00:00:00Z"),
        ("scheduler-backfill-to", str(NOW).encode()),
    ]
    assert decode(b"", hdrs) == Backfill("job", NOW - 86_400_000, NOW)


@pytest.mark.parametrize(
    ("hdrs", "words"),
    [
        ([("scheduler-control", b"stop")], "pause | resume | done | backfill"),
        ([("scheduler-control", b"pause"), ("scheduler-control", b"resume")], "2 times"),
        ([("scheduler-control", b"done")], "scheduler-fire-id"),
        ([("scheduler-control", b"done"), ("scheduler-fire-id", b"")], "empty"),
        ([("scheduler-control", b"backfill"), ("scheduler-backfill-from", b"1")], "needs"),
        (
            [
                ("scheduler-control", b"backfill"),
                ("scheduler-backfill-from", b"10"),
                ("scheduler-backfill-to", b"9"),
            ],
            "before",
        ),
        (
            [
                ("scheduler-control", b"backfill"),
                ("scheduler-backfill-from", b"x"),
                ("scheduler-backfill-to", b"9"),
            ],
            "neither epoch ms",
        ),
        ([("scheduler-control", b"pause"), ("scheduler-backfill-to", b"9")], "only with"),
        ([("scheduler-control", b"pause"), ("scheduler-target-topic", b"t")], "schedules nothing"),
        ([("scheduler-control", b"pause"), ("scheduler-every-ms", b"5")], "schedules nothing"),
    ],
)
def test_malformed_control_commands_are_rejected(hdrs: list[tuple[str, bytes | None]], words: str) -> None:
    result = decode(b"", hdrs)
    assert reason(result) is BAD and words in result.message


def test_backfill_headers_without_control_are_refused_not_ignored() -> None:
    result = decode(b"p", target(("scheduler-deliver-at", b"5"), ("scheduler-backfill-from", b"1")))
    assert reason(result) is BAD and "only with" in result.message


def test_a_bare_tombstone_is_still_a_cancel_natively() -> None:
    records = [
        InputRecord(0, 1, NOW, b"job", None, None),
        InputRecord(0, 2, NOW, b"job", None, [("scheduler-control", b"pause")]),
    ]
    assert codec.intake(records) == [Cancel("job"), None]  # Python reads the headers of the second
    assert decode(None, [("scheduler-control", b"pause")]) == Pause("job")
    assert decode(None, [("user", b"1")]) == Cancel("job")


# --- envelopes and state records ---


def test_a_recurring_envelope_decodes_in_python_and_its_state_natively() -> None:
    r = Recurrence(cron="0 2 * * *", timezone="Europe/Paris", missed="skip")
    s = Schedule("job", TOPIC, NOW, b"p", recurrence=r, created_ms=NOW)
    value = codec.encode_schedule(s)
    assert codec.intake([InputRecord(0, 1, NOW, b"job", value, None)]) == [None]  # the intake arms it
    assert decode(value, []) == s
    armed = replace(r, occurrence_ms=NOW + 3_600_000, runs=4, skipped=1, running_ms=NOW)
    state = codec.encode_state(replace(s, due_ms=NOW + 3_600_000, recurrence=armed), 17)
    assert codec.decode_states([state]) == [(replace(s, due_ms=NOW + 3_600_000, recurrence=armed), 17)]
    assert codec.peek_due_ms(state) == NOW + 3_600_000


def test_an_envelope_with_two_kinds_is_rejected() -> None:
    s = Schedule("job", TOPIC, NOW, b"p", recurrence=Recurrence(cron="* * * * *", every_ms=5))
    result = decode(codec.encode_schedule(s), [])
    assert reason(result) is BAD and "exactly one" in result.message


def test_a_parked_recurring_schedule_can_be_relocated() -> None:
    """Paused or waiting for done, its due is PARKED_MS, past the horizon a one-time schedule must keep."""
    s = Schedule("job", TOPIC, PARKED_MS, b"p", recurrence=Recurrence(after_ms=60_000, running_ms=NOW))
    moved = decode(codec.encode_schedule(s), [("scheduler-relocated-from", b"3")])
    assert moved == Relocated(s)
    assert (
        reason(decode(codec.encode_schedule(replace(s, recurrence=None)), []))
        is RejectReason.DUE_OUT_OF_RANGE
    )


@pytest.mark.parametrize(
    "command",
    [Pause("job"), Resume("job"), Done("job", "job@1/2", NOW), Backfill("job", 0, NOW)],
)
def test_control_envelopes_decode_and_check_their_key(command: Any) -> None:
    value = codec.encode_control(command)
    assert decode(value, []) == command
    assert reason(codec.decode_command(b"other", value, None, NOW)) is RejectReason.INVALID_KEY
