"""What a tick's transaction ended as, for metrics and the per-transaction log: committed, aborted, fenced (a
zombie), failed (fatal before the commit) or indeterminate (a commit that never resolved)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from scheduler.errors import KafkaFatalError
from scheduler.kafka.txn import Outcome, TransactionRunner
from scheduler.model import Schedule
from scheduler.records import OutRecord, dead_letter_record, fired_record, history_record
from scheduler.service.txnlog import TransactionLog


class Producer:
    """Raises `errors[step]` (a KafkaError) at the named step: send_offsets, commit."""

    def __init__(self, **errors: KafkaError) -> None:
        self.errors = errors
        self.calls: list[str] = []

    def _maybe(self, step: str) -> None:
        self.calls.append(step)
        if step in self.errors:
            raise KafkaException(self.errors[step])

    def begin_transaction(self) -> None:
        self._maybe("begin")

    def produce(self, *_args: Any, **_kw: Any) -> None:
        pass

    def poll(self, _timeout: float) -> None:
        pass

    def send_offsets_to_transaction(self, *_args: Any) -> None:
        self._maybe("send_offsets")

    def commit_transaction(self, _timeout: float) -> None:
        self._maybe("commit")

    def abort_transaction(self, _timeout: float) -> None:
        self._maybe("abort")


class Consumer:
    def consumer_group_metadata(self) -> object:
        return object()


def test_a_clean_commit() -> None:
    runner = TransactionRunner(Producer(), Consumer(), timeout_s=0.01)  # type: ignore[arg-type]
    assert runner.run([], [], []) is Outcome.COMMITTED


def test_a_stale_group_generation_is_reported_as_fenced_and_aborted() -> None:
    producer = Producer(
        send_offsets=KafkaError(KafkaError.ILLEGAL_GENERATION, "stale", txn_requires_abort=True)
    )
    runner = TransactionRunner(producer, Consumer(), timeout_s=0.01)  # type: ignore[arg-type]
    assert runner.run([], [], []) is Outcome.FENCED
    assert producer.calls[-1] == "abort"


def test_an_ordinary_abortable_error_is_reported_as_aborted() -> None:
    error = KafkaError(KafkaError._MSG_TIMED_OUT, "timed out", txn_requires_abort=True)
    runner = TransactionRunner(Producer(commit=error), Consumer(), timeout_s=0.01)  # type: ignore[arg-type]
    assert runner.run([], [], []) is Outcome.ABORTED


@pytest.mark.parametrize(
    ("step", "error", "verdict"),
    [
        ("commit", KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True), "fenced"),
        ("send_offsets", KafkaError(KafkaError.PRODUCER_FENCED, "fenced", fatal=True), "fenced"),
        ("send_offsets", KafkaError(KafkaError._STATE, "erroneous state", fatal=True), "failed"),
        ("commit", KafkaError(KafkaError._TIMED_OUT, "no answer", retriable=True), "indeterminate"),
    ],
)
def test_a_fatal_end_says_whether_the_commit_may_have_happened(
    step: str, error: KafkaError, verdict: str
) -> None:
    runner = TransactionRunner(Producer(**{step: error}), Consumer(), timeout_s=0.01, retries=2)  # type: ignore[arg-type]
    with pytest.raises(KafkaFatalError):
        runner.run([], [], [])
    assert runner.failure() == verdict


def test_the_transaction_log_names_what_each_attempt_wrote_and_its_outcome(tmp_path: Path) -> None:
    path = tmp_path / "txn.jsonl"
    log = TransactionLog(path, "c0", state_topic="s.state", dlt_topic="s.dlt")
    schedule = Schedule("r-42", "orders", 1_000, b"payload")
    fires = [fired_record(schedule, 7, 1_001)]
    others = [
        dead_letter_record(
            "s.dlt", Schedule("r-43", "gone", 1_000, b"p"), 9, "unknown_target_topic", "m", 1_001
        ),
        OutRecord("s.state", b"r-42", None, [], 3),
        OutRecord("s.state", b"r-44", b"\x00", [], 1),
        OutRecord("s.rejected", b"bad", b"x", []),
    ]
    first = log.begin(fires, others, [TopicPartition("s", 3, 11), TopicPartition("s", 1, 5)])
    log.end(first, "fenced", "stale generation")
    second = log.begin([], [], [])
    log.close()  # killed in flight: no outcome line for the second attempt
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert first != second and first.startswith("c0.")
    assert lines[0]["fires"] == [["orders", "r-42@7"]]
    assert lines[0]["dead_letters"] == ["r-43@9"]
    assert lines[0]["state"] == [[3, "r-42", "del"], [1, "r-44", "put"]]
    assert lines[0]["rejects"] == 1 and lines[0]["offsets"] == {"3": 11, "1": 5}
    assert lines[1] == {"attempt": first, "outcome": "fenced", "error": "stale generation"}
    assert lines[2]["attempt"] == second and len(lines) == 3


def test_a_fence_after_a_commit_timed_out_is_indeterminate_not_refused() -> None:
    # the first EndTxn may have reached the coordinator: the newer producer's init completes it
    class TimesOutThenFenced(Producer):
        def commit_transaction(self, _timeout: float) -> None:
            self.calls.append("commit")
            if self.calls.count("commit") == 1:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "no answer", retriable=True))
            raise KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))

    runner = TransactionRunner(TimesOutThenFenced(), Consumer(), timeout_s=0.01, retries=3)  # type: ignore[arg-type]
    with pytest.raises(KafkaFatalError):
        runner.run([], [], [])
    assert runner.failure() == "indeterminate"


def test_a_fire_the_producer_refuses_locally_aborts_and_is_charged_to_its_schedule_only() -> None:
    # e.g. a fire above message.max.bytes: librdkafka raises at produce(), before anything is sent
    class RefusesBig(Producer):
        def produce(self, topic: str, value: bytes | None = None, *_args: Any, **_kw: Any) -> None:
            if value is not None and len(value) > 100:
                raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Message size too large"))

    big = fired_record(Schedule("big", "orders", 1_000, b"x" * 500), 3, 1_001)
    small = fired_record(Schedule("small", "orders", 1_000, b"ok"), 4, 1_001)
    producer = RefusesBig()
    runner = TransactionRunner(producer, Consumer(), timeout_s=0.01)  # type: ignore[arg-type]
    assert runner.run([small, big], [], []) is Outcome.ABORTED
    assert producer.calls[-1] == "abort"
    assert runner.failed_topics.keys() == {"orders"} and runner.failed_ids == {b"big"}


def test_the_transaction_log_counts_history_copies_apart_from_rejects(tmp_path: Path) -> None:
    path = tmp_path / "txn.jsonl"
    log = TransactionLog(path, "c0", state_topic="s.state", dlt_topic="s.dlt", history_topic="s.history")
    fire = fired_record(Schedule("r-42", "orders", 1_000, b"payload"), 7, 1_001)
    others = [history_record("s.history", fire), OutRecord("s.rejected", b"bad", b"x", [])]
    log.begin([fire], others, [])
    log.close()
    entry = json.loads(path.read_text())
    assert (entry["history"], entry["rejects"]) == (1, 1)
    assert dict(others[0].headers)["scheduler-fired-topic"] == b"orders"
