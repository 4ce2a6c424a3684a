"""The fired record's headers: ours replaced on every hop, etf1's added for etf1 commands, sizes bounded."""

from __future__ import annotations

from collections import Counter

from scheduler.model import Schedule
from scheduler.records import fired_record, record_size
from scheduler.service.targets import fired_size

ETF1 = ("scheduler-timestamp", "scheduler-key", "scheduler-topic")


def etf1_schedule(sid: str = "vid1-online") -> Schedule:
    headers = (
        ("scheduler-epoch", b"1893456000"),
        ("scheduler-target-topic", b"online-videos"),
        ("scheduler-target-key", b"vid1"),
        ("customer-header", b"dummy"),
        ("scheduler-key", b"stale"),
        ("scheduler-fire-id", b"stale@1"),
    )
    return Schedule(
        sid, "online-videos", 1_893_456_000_000, b"video 1", b"vid1", headers, created_ms=1_607_918_336_789
    )


def test_an_etf1_fire_carries_etf1_headers_once() -> None:
    out = fired_record(etf1_schedule(), 7, 1_893_456_000_001, "schedules")
    headers = dict(out.headers)
    assert {name: headers[name] for name in ETF1} == {
        "scheduler-timestamp": b"1607918336",
        "scheduler-key": b"vid1-online",
        "scheduler-topic": b"schedules",
    }
    counts = Counter(name for name, _ in out.headers)
    assert all(counts[name] == 1 for name in (*ETF1, "scheduler-fire-id", "scheduler-schedule-id")), (
        out.headers
    )
    assert headers["scheduler-fire-id"] == b"vid1-online@7"
    assert headers["customer-header"] == b"dummy" and headers["scheduler-epoch"] == b"1893456000"


def test_other_fires_get_no_etf1_headers() -> None:
    plain = Schedule("a", "t", 5, b"p", headers=(("custom", b"1"),))
    names = {name for name, _ in fired_record(plain, 1, 6, "schedules").headers}
    assert not names & set(ETF1) and "custom" in names


def test_fired_size_bounds_an_etf1_fire_with_the_longest_topic_name() -> None:
    schedule = etf1_schedule("x" * 255)
    out = fired_record(schedule, 2**62, 2**62, "t" * 249)
    assert record_size(out.key, out.value, out.headers) <= fired_size(schedule)
