"""bench.compare's table (median of rounds, spread, failed runs, fallback names) and B3's log reading."""

from __future__ import annotations

import pytest

from bench.compare import Figure, bench_args, markdown, table_rows
from bench.rebuild import rebuild_times

RATIO = Figure("intake", "B6 intake / floor", (("ratio",),), ">= 0.7")
RATE = Figure("intake", "B6 commands/s", (("scheduler_records_per_s",),), fmt="rate")
NESTED = Figure("client", "B5 sync", (("sync", "ratio"),), ">= 0.5")
RENAMED = Figure(
    "memory", "B4 bytes", (("beyond_state_record_bytes",), ("DueIndex", "old_name")), "<= 48", "bytes"
)


def test_median_of_rounds_with_the_spread_when_rounds_differ() -> None:
    before = {"intake": [{"ratio": 0.31}, {"ratio": 0.29}, {"ratio": 0.40}]}
    after = {"intake": [{"ratio": 0.8}, {"ratio": 0.8}]}
    assert table_rows(before, after, [RATIO]) == [
        ["B6 intake / floor", "0.31 (0.29..0.40)", "0.80", ">= 0.7"]
    ]


def test_even_rounds_take_the_mean_of_the_middle_two_and_rates_get_thousands() -> None:
    before = {"intake": [{"scheduler_records_per_s": 20_000.4}, {"scheduler_records_per_s": 30_000.4}]}
    rows = table_rows(before, {}, [RATE])
    assert rows == [["B6 commands/s", "25,000 (20,000..30,000)", "n/a", ""]]


def test_a_failed_round_is_left_out_and_counted() -> None:
    before = {"client": [None, {"sync": {"ratio": 0.11}}]}
    after = {"client": [None, None]}
    assert table_rows(before, after, [NESTED]) == [["B5 sync", "0.11 [1 failed]", "n/a", ">= 0.5"]]


def test_the_first_name_present_wins_so_old_and_new_result_layouts_both_read() -> None:
    before = {"memory": [{"DueIndex": {"old_name": 233.0}}]}
    after = {"memory": [{"beyond_state_record_bytes": 40.2, "DueIndex": {"old_name": 999}}]}
    assert table_rows(before, after, [RENAMED]) == [["B4 bytes", "233", "40", "<= 48"]]


def test_only_benches_that_ran_get_rows_and_flags_are_not_numbers() -> None:
    before = {"intake": [{"ratio": True}]}
    assert table_rows(before, {}, [RATIO, NESTED]) == [["B6 intake / floor", "n/a", "n/a", ">= 0.7"]]


def test_markdown_aligns_numbers_right_and_escapes_pipes() -> None:
    text = markdown(["figure", "before", "after", "goal"], [["a|b", "1.00", "2.00", ">= 0.8"]])
    assert text.splitlines() == [
        "| figure | before | after | goal |",
        "|---|---:|---:|---:|",
        "| a\\|b | 1.00 | 2.00 | >= 0.8 |",
    ]


def test_bench_args_split_per_bench_and_refuse_unknown_names() -> None:
    assert bench_args(["rebuild=--n 100000", "client=5000"]) == {
        "rebuild": ["--n", "100000"],
        "client": ["5000"],
    }
    with pytest.raises(SystemExit, match="'rebuilt' is not one of"):
        bench_args(["rebuilt=--n 1"])


LOG = """\
2026-12-03T12:24:18.930+00:00 INFO scheduler.service.app metrics and health on http://127.0.0.1:35719
2026-12-03T12:24:19.041+00:00 INFO scheduler.service.partitions assigned partitions [0, 1]; rebuilding
2026-12-03T12:24:20.500+00:00 INFO scheduler.service.partitions rebuilding partition 1: 10 of ~20 state records
2026-12-03T12:24:21.181+00:00 INFO scheduler.service.partitions partition 0 rebuilt in 2.14s: 120 state records \
replayed, 100 pending, resuming at offset 0
2026-12-03T12:24:23.046+00:00 INFO scheduler.service.partitions partition 1 rebuilt in 4.00s: 80 state records \
replayed, 70 pending, resuming at offset 3
"""


def test_assignment_to_serving_runs_from_the_assignment_to_the_last_partition_serving() -> None:
    times = rebuild_times(LOG)
    assert times["assignment_to_serving_s"] == pytest.approx(4.005)
    assert times["slowest_partition_s"] == 4.0
    assert (times["partitions"], times["replayed"], times["pending"]) == (2, 200, 170)


def test_a_log_without_a_rebuild_is_an_error_not_a_zero() -> None:
    with pytest.raises(RuntimeError, match="rebuilt in"):
        rebuild_times(LOG.splitlines()[0])


def test_a_prefix_before_the_message_such_as_a_worker_name_still_reads() -> None:
    log = LOG.replace("partitions assigned", "partitions worker-1: assigned").replace(
        "partitions partition 1", "partitions worker-1: partition 1"
    )
    assert log != LOG
    assert rebuild_times(log)["assignment_to_serving_s"] == pytest.approx(4.005)
