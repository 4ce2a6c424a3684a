"""`kafka-scheduler import`: stream rows into schedules, rate-limited, idempotent by id.

Idempotent means a rerun of the same file changes nothing visible:
- a row whose id is pending with the same target, key, partition, payload, headers and due time is skipped
  (`unchanged`): no new command, so the state record, its version and its fire id stay as they are;
- a row whose id's last state record is a tombstone (it fired or was cancelled) is skipped (`done`), so a past
  `at` row does not fire twice; this holds while the tombstone is kept (the state topic's delete.retention.ms);
- every other row is sent (`sent`): new ids, and ids whose schedule differs (same id = replace);
- a row whose id comes again later in the file is skipped (`superseded`: the last row wins), so a file that
  repeats an id sends one command for it, and a rerun none;
- a row the scheduler would refuse is refused here and never sent (`refused`), nor on a rerun.
`delay` rows are relative to the import's start, so a rerun moves them and sends them again: prefer `at`.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from scheduler.client import ClientCore, SchedulerClient, due_ms, now_ms
from scheduler.codec import decode_state
from scheduler.config import ClientSettings
from scheduler.errors import InvalidDeliverAt, ValidationError
from scheduler.model import Schedule
from scheduler.ops.policy import TargetPolicy
from scheduler.ops.query import parse_duration_ms, parse_instant_ms
from scheduler.ops.reader import Progress
from scheduler.ops.rows import Refusal, Row, last_lines
from scheduler.ops.state import read_state
from scheduler.settings import ServiceSettings

__all__ = ["ImportOptions", "ImportSummary", "Pacer", "client_settings", "digest", "run_import"]

Rows = Callable[[], Iterable[Row | Refusal]]  # read twice: once for the last row of each id, once to send

MAX_REFUSALS_KEPT = 1000


def client_settings(settings: ServiceSettings, producer_name: str | None = None) -> ClientSettings:
    """The producer client's settings from the service's (-b, -X, --topic apply to both)."""
    return ClientSettings(
        bootstrap_servers=settings.bootstrap_servers,
        scheduled_topic=settings.scheduled_topic,
        state_topic=settings.state,
        rejected_topic=settings.rejected,
        dlt_topic=settings.dlt,
        kafka={k: str(v) for k, v in {**settings.kafka, **settings.producer}.items()},
        sasl_password=settings.sasl_password,
        producer_name=producer_name,
    )


def digest(s: Schedule) -> bytes:
    """What makes two schedules the same to a consumer: not created_at, producer or version."""
    h = hashlib.blake2b(digest_size=16)
    for part in (s.target_topic.encode(), str(s.due_ms).encode(), str(s.target_partition).encode()):
        h.update(part + b"\x00")
    for blob in (s.target_key, s.payload):
        h.update(b"\x01" + blob if blob is not None else b"\x02")
    for name, value in s.headers:
        h.update(b"\x03" + name.encode() + b"\x00" + (value if value is not None else b"\x02"))
    return h.digest()


class Pacer:
    """At most `rate` sends per second on average (None: unlimited); sleeps in bounded steps."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._clock = clock
        self._next = clock()

    def delay(self) -> float:
        """Seconds to wait before the next send, and reserve its slot."""
        now = self._clock()
        wait = max(0.0, self._next - now)
        self._next = max(self._next, now) + self._interval
        return wait


@dataclass
class ImportOptions:
    rate: float | None = None
    dry_run: bool = False
    resend_done: bool = False


@dataclass
class ImportSummary:
    counts: Counter[str] = field(default_factory=Counter)  # sent, unchanged, done, superseded, refused
    refused_by_reason: Counter[str] = field(default_factory=Counter)
    refusals: list[Refusal] = field(default_factory=list)

    def refuse(self, refusal: Refusal) -> None:
        self.counts["refused"] += 1
        self.refused_by_reason[refusal.reason] += 1
        if len(self.refusals) < MAX_REFUSALS_KEPT:
            self.refusals.append(refusal)

    @property
    def accepted(self) -> int:
        """Rows that are (or already were) what the file says: sent, unchanged or done."""
        return self.counts["sent"] + self.counts["unchanged"] + self.counts["done"]


class RowPlanner:
    """Row -> validated Schedule, with one `now` per import so every delay row is relative to the same start."""

    def __init__(self, core: ClientCore, targets: TargetPolicy | None, start_ms: int) -> None:
        self._core, self._targets, self._start = core, targets, start_ms

    def schedule(self, row: Row) -> Schedule:
        schedule, _key, _value = self._core.build(
            row.id,
            topic=row.topic,
            value=row.value,
            key=row.key,
            headers=list(row.headers.items()),
            at=self._due(row),
            partition=row.partition,
        )
        if self._targets is not None:
            self._targets.check(schedule)
        return schedule

    def _due(self, row: Row) -> int:
        try:
            at = parse_instant_ms(row.at) if row.at is not None else None
            delay = timedelta(milliseconds=parse_duration_ms(row.delay)) if row.delay is not None else None
        except ValueError as exc:
            raise InvalidDeliverAt(str(exc)) from None
        return due_ms(at, delay, self._start, self._core.settings.horizon)


def load_existing(settings: ServiceSettings, progress: Progress | None) -> tuple[dict[str, bytes], set[str]]:
    """Digest of every pending schedule, and the ids whose last state record is a tombstone."""
    snap = read_state(
        settings, lambda _sid, value: digest(decode_state(value)[0]), track_done=True, progress=progress
    )
    return {sid: d for sid, (_p, d) in snap.pending.items()}, snap.done


def run_import(
    settings: ServiceSettings,
    rows: Rows,
    options: ImportOptions,
    *,
    existing: tuple[dict[str, bytes], set[str]],
    targets: TargetPolicy | None,
    on_row: Callable[[], None] | None = None,
) -> ImportSummary:
    """Classify every row (sent | unchanged | done | superseded | refused) and send the `sent` ones unless dry_run.

    A bad row is a refusal with its line, never an exception: the import always reaches its summary.
    """
    csettings = client_settings(settings, producer_name="kafka-scheduler-import")
    planner = RowPlanner(ClientCore(None, csettings, None), targets, now_ms())
    final = last_lines(rows())
    summary = ImportSummary()
    sender = _Sender(None if options.dry_run else SchedulerClient(settings=csettings), Pacer(options.rate))
    try:
        for item in rows():
            if on_row is not None:
                on_row()
            schedule = _plan(item, planner, final, summary)
            if schedule is not None and _classify(schedule, existing, options.resend_done, summary) == "sent":
                sender.send(schedule)
    finally:
        sender.close()
    return summary


def _plan(
    item: Row | Refusal, planner: RowPlanner, final: dict[str, int], summary: ImportSummary
) -> Schedule | None:
    """The row's schedule, or None when it is refused or a later row of the same id supersedes it."""
    if item.id is not None and final.get(item.id, item.line) != item.line:
        summary.counts["superseded"] += 1
        return None
    if isinstance(item, Refusal):
        summary.refuse(item)
        return None
    try:
        return planner.schedule(item)
    except (ValidationError, ValueError, OverflowError) as exc:
        summary.refuse(Refusal(item.line, item.id, _reason(exc), str(exc)))
        return None


def _reason(exc: Exception) -> str:
    return type(exc).__name__ if isinstance(exc, ValidationError) else "InvalidRow"


def _classify(
    schedule: Schedule, existing: tuple[dict[str, bytes], set[str]], resend_done: bool, summary: ImportSummary
) -> str:
    pending, done = existing
    outcome = _outcome(schedule, pending, done, resend_done)
    summary.counts[outcome] += 1
    if outcome == "sent":
        pending[schedule.id] = digest(schedule)
        done.discard(schedule.id)
    return outcome


class _Sender:
    """The client, paced; None on a dry run."""

    def __init__(self, client: SchedulerClient | None, pacer: Pacer) -> None:
        self._client, self._pacer = client, pacer

    def send(self, schedule: Schedule) -> None:
        if self._client is None:
            return
        time.sleep(self._pacer.delay())
        self._client.schedule(
            schedule.id,
            topic=schedule.target_topic,
            value=schedule.payload,
            key=schedule.target_key,
            headers=schedule.headers,
            at=schedule.due_ms,
            partition=schedule.target_partition,
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close(timeout=60)


def _outcome(schedule: Schedule, pending: dict[str, bytes], done: set[str], resend_done: bool) -> str:
    known = pending.get(schedule.id)
    if known is not None:
        return "unchanged" if known == digest(schedule) else "sent"
    if schedule.id in done and not resend_done:
        return "done"
    return "sent"
