"""Recurring schedules in a chaos run: a pure check over the commands sent, the fired records, what the echo
consumer observed and, where it can be decoded, the state log. `checker.check` calls `check_recurring`.

Header semantics the checks rely on (the header protocol; scheduler/model.py, docs/recurring.md):
- A recurring command (key = id, value = payload, scheduler-target-topic) carries exactly one of
  `scheduler-every-ms` / `scheduler-after-ms` / `scheduler-cron` instead of a deliver-at, and
  `scheduler-starts-at`, `-ends-at`, `-max-runs` (epoch ms / count, all optional), `scheduler-missed`
  (skip | latest | all; default latest). Its version is its offset where it takes effect (its id's partition:
  sent there or the scheduler's forwarded copy). The same id again replaces it: a new version, counters reset.
- `scheduler-control: pause | resume | done` (value ignored). A done carries `scheduler-fire-id`; its record time
  (the original's, `scheduler-forwarded-timestamp`, for a forwarded copy) is when the occurrence finished.
- A fired occurrence carries `scheduler-fire-id` = `<id>@<version>/<occurrence ms>`, `scheduler-occurrence-at` =
  the occurrence ms (its nominal time), `scheduler-run` = the fires of this version so far, this one included
  (1, 2, ...), `scheduler-skipped` = the occurrences of this version before this one that did not fire by the
  missed policy (occurrences while paused are not counted), and on `after` schedules `scheduler-await-done` = the
  fire id; the next `after` occurrence is armed `after_ms` after the done's record time.
- `every` occurrences are nominally at starts_at + k * every_ms, k >= 0, up to ends_at; at most max_runs fire.

Checks, per id and version (anomaly names in quotes). A "fire" is a read_committed record on a target topic (or
the scheduler's dead-letter topic) whose fire id has the occurrence form; its time is its record timestamp.
- "recurring_duplicate_fire": one fire id (one occurrence of one version) fired more than once.
- "recurring_fire_of_unknown_version": a fire of a version no command created.
- "recurring_bad_headers": occurrence-at differs from the fire id's occurrence, run / skipped missing or not
  numbers, await-done missing (or present) where the kind says otherwise.
- "recurring_early_fire": the record timestamp, scheduler-fired-at or a time the echo consumer observed it is
  before the occurrence.
- "recurring_off_schedule": an `every` occurrence not on the grid, before starts_at or after ends_at.
- "recurring_past_max_runs": more fires of a version than its max_runs.
- "recurring_run_not_consecutive": the runs of a version's fires, by occurrence, are not 1, 2, 3, ...
- "recurring_skip_count_wrong": under `every`, the skipped counter of successive fires (by occurrence) grows by
  exactly the number of nominal occurrences between them (the first fire: those from starts_at); a gap that
  overlaps a pause may grow it by less (paused occurrences are not counted), never by more or negatively.
- "recurring_missing_occurrence": under `all` (ids never paused), a nominal occurrence within max_runs that did
  not fire: for a version never replaced, each in [starts_at, min(ends_at, run end - slack_ms)]; for a replaced
  one, each up to its newest fired occurrence (`all` fires oldest first; the ones after may rightly never fire,
  the replacement was consumed first).
- "recurring_never_fired": a version never replaced whose starts_at is before run end - slack_ms did not fire
  at all (any kind, any missed policy).
- "recurring_latest_not_newest": under `latest` (and `skip`), a fire whose record time is more than one interval
  plus `latest_tolerance_ms` after its occurrence (a newer occurrence was due: it should have fired instead).
- "recurring_skip_fired_missed": under `skip`, a fire more than grace_ms (+ tolerance) after its occurrence.
- "after_fired_before_done": an `after` occurrence (run n+1) with no done report for run n, or earlier than the
  first done report's time + after_ms.
- "after_chain_stalled": an `after` version whose last fire (run n < max_runs) was reported done early enough
  (done + after_ms <= run end - slack_ms, before ends_at) and nothing followed.
- "fired_while_paused": between a pause and the next resume, a fire of the id whose record time is at or after
  the pause took effect and whose occurrence is at or before the resume was sent. When the pause took effect: the
  timestamp of the first state record of the id after the pause that decodes as paused, plus `in_txn_ms` (fires
  produced in the same transaction); if the state log cannot tell (older codec), the pause's record time plus
  `pause_margin_ms` (the margin for fires in flight while the pause waits to be consumed).
- "not_resumed": after a resume, no fire with an occurrence after it although nominal occurrences exist in
  (resume + resume_margin_ms, ends_at].
- "replaced_version_fired": a fire of version v with a record time after the intake of the command replacing it
  (+ margin): the timestamp of the first state record of the new version + `in_txn_ms`, else the replacement's
  record time + `replace_margin_ms`.
- "recurring_not_ended": the state log's last record of an id whose last version ended within the run (ends_at
  passed, or max_runs fired) is still a put.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from scheduler.model import (
    HEADER_AFTER_MS,
    HEADER_AWAIT_DONE,
    HEADER_CONTROL,
    HEADER_CRON,
    HEADER_ENDS_AT,
    HEADER_EVERY_MS,
    HEADER_FIRE_ID,
    HEADER_FIRED_AT,
    HEADER_FORWARDED_TIMESTAMP,
    HEADER_MAX_RUNS,
    HEADER_MISSED,
    HEADER_OCCURRENCE_AT,
    HEADER_RUN,
    HEADER_SKIPPED,
    HEADER_STARTS_AT,
)

__all__ = [
    "KIND_HEADERS",
    "Limits",
    "StateRecord",
    "check_recurring",
    "ended_before",
    "is_occurrence_fire",
    "is_recurring",
]

KIND_HEADERS = (HEADER_EVERY_MS, HEADER_AFTER_MS, HEADER_CRON)
NEVER = 1 << 62
Record = dict[str, Any]  # the dump's form: p, o, ts, k, v, h (list of [name, text])


@dataclass(frozen=True)
class Limits:
    """The margins of the checks (module docstring), in ms."""

    slack_ms: int = 5_000
    pause_margin_ms: int = 3_000
    resume_margin_ms: int = 10_000
    replace_margin_ms: int = 3_000
    in_txn_ms: int = 1_000
    latest_tolerance_ms: int = 3_000
    grace_ms: int = 60_000


@dataclass(frozen=True)
class StateRecord:
    """One committed state record of a recurring id, as far as it could be decoded (None: it could not)."""

    ts: int
    tombstone: bool
    version: int | None = None
    paused: bool | None = None


def _h(rec: Record) -> dict[str, str | None]:
    return {name: value for name, value in rec["h"]}


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def is_recurring(rec: Record) -> bool:
    """A recurring schedule or a control command (the ids the one-time checks leave alone)."""
    h = _h(rec)
    return HEADER_CONTROL in h or any(k in h for k in KIND_HEADERS)


def is_occurrence_fire(fire_id: str) -> bool:
    """`<id>@<version>/<occurrence>` (a one-time fire id is `<id>@<version>`)."""
    return "/" in fire_id.rpartition("@")[2]


@dataclass
class Spec:
    version: int
    ts: int
    every_ms: int | None
    after_ms: int | None
    starts_at: int | None
    ends_at: int | None
    max_runs: int | None
    missed: str
    replaced_at: int | None = None  # record time of the command that replaced (or cancelled) it

    def nominal(self, upto: int) -> list[int]:
        """`every` occurrences in [starts_at, min(ends_at, upto)], at most max_runs of them (none for `after`)."""
        if self.every_ms is None or self.every_ms <= 0 or self.starts_at is None:
            return []
        last = upto if self.ends_at is None else min(upto, self.ends_at)
        if last < self.starts_at:
            return []
        out = list(range(self.starts_at, last + 1, self.every_ms))
        return out[: self.max_runs] if self.max_runs is not None and self.missed == "all" else out


@dataclass
class Fire:
    fid: str
    version: int
    occ: int
    ts: int
    headers: dict[str, str | None]
    observed: list[int] = field(default_factory=list)

    @property
    def run(self) -> int | None:
        return _int(self.headers.get(HEADER_RUN))

    @property
    def skipped(self) -> int | None:
        return _int(self.headers.get(HEADER_SKIPPED))


@dataclass
class IdLog:
    specs: list[Spec] = field(default_factory=list)
    pauses: list[tuple[int, int, int]] = field(default_factory=list)  # (pause ts, resume ts, version paused)
    # per pause, where its commands sit: (partition, pause offset, resume offset or NEVER)
    pause_offsets: list[tuple[int, int, int]] = field(default_factory=list)
    dones: dict[str, int] = field(default_factory=dict)  # fire id -> the first report's time


class _Out:
    def __init__(self) -> None:
        self.anomalies: dict[str, list[Any]] = defaultdict(list)

    def add(self, kind: str, detail: Any) -> None:
        self.anomalies[kind].append(detail)


def _spec(rec: Record, h: dict[str, str | None]) -> Spec:
    return Spec(
        version=rec["o"],
        ts=rec["ts"],
        every_ms=_int(h.get(HEADER_EVERY_MS)),
        after_ms=_int(h.get(HEADER_AFTER_MS)),
        starts_at=_int(h.get(HEADER_STARTS_AT)),
        ends_at=_int(h.get(HEADER_ENDS_AT)),
        max_runs=_int(h.get(HEADER_MAX_RUNS)),
        missed=h.get(HEADER_MISSED) or "latest",
    )


def _logs(commands: Iterable[Record]) -> dict[str, IdLog]:
    """Per id, in offset order: versions, pause windows (a pause up to the next resume), first done per fire id."""
    logs: dict[str, IdLog] = defaultdict(IdLog)
    open_pause: dict[str, tuple[int, int, int, int]] = {}  # id -> (pause ts, version, partition, offset)
    for rec in sorted(commands, key=lambda r: (r["p"], r["o"])):
        sid, h = rec["k"], _h(rec)
        log = logs[sid]
        sent = min(rec["ts"], _int(h.get(HEADER_FORWARDED_TIMESTAMP)) or rec["ts"])
        control = h.get(HEADER_CONTROL)
        if control == "pause" and log.specs:
            # takes effect once consumed: at its home copy at the earliest
            open_pause.setdefault(sid, (rec["ts"], log.specs[-1].version, rec["p"], rec["o"]))
        elif control == "resume" and sid in open_pause:
            paused_at, version, partition, offset = open_pause.pop(sid)
            log.pauses.append((paused_at, sent, version))  # consumed no earlier than it was sent
            log.pause_offsets.append((partition, offset, rec["o"]))
        elif control == "done":
            log.dones.setdefault(h.get(HEADER_FIRE_ID) or "", sent)
        elif control is None:
            if log.specs:
                log.specs[-1].replaced_at = rec["ts"]
            if rec["v"] is not None:
                log.specs.append(_spec(rec, h))
    for sid, (at, version, partition, offset) in open_pause.items():
        logs[sid].pauses.append((at, NEVER, version))
        logs[sid].pause_offsets.append((partition, offset, NEVER))
    return logs


def _fires(fires: Iterable[Record], observed: dict[str, list[int]], out: _Out) -> dict[str, list[Fire]]:
    by_id: dict[str, list[Fire]] = defaultdict(list)
    counts: Counter[str] = Counter()
    for rec in fires:
        h = _h(rec)
        fid = h.get(HEADER_FIRE_ID) or ""
        sid, _, rest = fid.rpartition("@")
        version, _, occ = rest.partition("/")
        if _int(version) is None or _int(occ) is None:
            out.add("recurring_bad_headers", {"fire_id": fid, "why": "not <id>@<version>/<occurrence>"})
            continue
        counts[fid] += 1
        if counts[fid] == 1:
            fire = Fire(fid, int(version), int(occ), rec["ts"], h, observed.get(fid, []))
            by_id[sid].append(fire)
    for fid, n in counts.items():
        if n > 1:
            out.add("recurring_duplicate_fire", {"fire_id": fid, "count": n})
    return by_id


def check_recurring(
    commands: list[Record],
    fires: list[Record],
    observed: dict[str, list[int]],
    states: dict[str, list[StateRecord]],
    end_ms: int,
    limits: Limits | None = None,
    consumed: dict[str, dict[int, int]] | None = None,
) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """(anomalies by name, stats) of a run's recurring schedules (module docstring).

    `commands`: the recurring and control commands where they took effect; `fires`: the fired records with
    occurrence fire ids; `observed`: fire id -> times the echo consumer handled it; `states`: per id, the state
    log in commit order; `end_ms`: when the run stopped (occurrences after end_ms - slack_ms are not required);
    `consumed`: fire id -> the input positions its committed transaction carried (the per-transaction logs):
    where known, a fire is judged against the pause by what its transaction had consumed, without margins.
    """
    lim = limits or Limits()
    out = _Out()
    logs = _logs(commands)
    fired = _fires(fires, observed, out)
    for sid in sorted(set(logs) | set(fired)):
        _check_id(
            out,
            lim,
            sid,
            logs.get(sid, IdLog()),
            fired.get(sid, []),
            states.get(sid, []),
            end_ms,
            consumed or {},
        )
    lateness = sorted(f.ts - f.occ for fs in fired.values() for f in fs)
    stats: dict[str, Any] = {
        "ids": sum(1 for log in logs.values() if log.specs),
        "versions": sum(len(log.specs) for log in logs.values()),
        "fires": sum(len(fs) for fs in fired.values()),
        "pauses": sum(len(log.pauses) for log in logs.values()),
        "dones": sum(len(log.dones) for log in logs.values()),
        "by_kind": dict(
            Counter(
                "after" if s.after_ms is not None else f"every:{s.missed}"
                for log in logs.values()
                for s in log.specs
            )
        ),
    }
    if lateness:
        n = len(lateness)
        stats["lateness_ms"] = {"p50": lateness[n // 2], "p99": lateness[n * 99 // 100], "max": lateness[-1]}
    return dict(out.anomalies), stats


def _check_id(
    out: _Out,
    lim: Limits,
    sid: str,
    log: IdLog,
    fires: list[Fire],
    states: list[StateRecord],
    end_ms: int,
    consumed: dict[str, dict[int, int]] | None = None,
) -> None:
    versions = {s.version: s for s in log.specs}
    by_version: dict[int, list[Fire]] = defaultdict(list)
    for f in fires:
        if f.version not in versions:
            out.add("recurring_fire_of_unknown_version", {"fire_id": f.fid})
        else:
            by_version[f.version].append(f)
    for spec in log.specs:
        mine = sorted(by_version.get(spec.version, []), key=lambda f: f.occ)
        _check_fires(out, lim, spec, mine, log)
        if spec.after_ms is not None:
            _check_after(out, lim, sid, spec, mine, log, end_ms)
        else:
            _check_skips(out, spec, mine, log)
            if spec.missed == "all" and not log.pauses:
                upto = (
                    end_ms - lim.slack_ms
                    if spec.replaced_at is None
                    else max((f.occ for f in mine), default=0)
                )
                _check_all(out, spec, mine, upto)
        if spec.replaced_at is not None:
            _check_replaced(out, lim, spec, mine, log, states)
        elif (
            not mine
            and spec.starts_at is not None
            and spec.starts_at <= end_ms - lim.slack_ms
            and not _paused_throughout(log, spec)
        ):
            out.add(
                "recurring_never_fired", {"id": sid, "version": spec.version, "starts_at": spec.starts_at}
            )
    _check_pauses(out, lim, sid, log, fires, states, consumed or {})
    _check_ended(out, lim, sid, log, by_version, states, end_ms)


def _check_fires(out: _Out, lim: Limits, spec: Spec, fires: list[Fire], log: IdLog) -> None:
    """Headers, never early, on the grid, within max_runs, runs 1, 2, 3, ... by occurrence, missed policy."""
    for i, f in enumerate(fires, start=1):
        h = f.headers
        awaits = h.get(HEADER_AWAIT_DONE)
        if (
            h.get(HEADER_OCCURRENCE_AT) != str(f.occ)
            or f.run is None
            or f.skipped is None
            or (spec.after_ms is not None and awaits != f.fid)
            or (spec.after_ms is None and awaits is not None)
        ):
            out.add("recurring_bad_headers", {"fire_id": f.fid, "headers": h})
        fired_at = _int(h.get(HEADER_FIRED_AT))
        seen = [t for t in [f.ts, *([fired_at] if fired_at is not None else []), *f.observed] if t < f.occ]
        if seen:
            out.add("recurring_early_fire", {"fire_id": f.fid, "occurrence": f.occ, "seen": seen})
        if spec.every_ms and spec.starts_at is not None:
            off_grid = (f.occ - spec.starts_at) % spec.every_ms != 0
            if off_grid or f.occ < spec.starts_at or (spec.ends_at is not None and f.occ > spec.ends_at):
                out.add("recurring_off_schedule", {"fire_id": f.fid, "starts_at": spec.starts_at})
        elif spec.starts_at is not None and f.occ < spec.starts_at:
            out.add("recurring_off_schedule", {"fire_id": f.fid, "starts_at": spec.starts_at})
        if f.run != i:
            out.add("recurring_run_not_consecutive", {"fire_id": f.fid, "run": f.run, "expected": i})
        late = f.ts - f.occ
        # a later occurrence was due when this one fired (unless ends_at leaves none after it)
        last = spec.ends_at is not None and spec.every_ms is not None and f.occ + spec.every_ms > spec.ends_at
        if (
            spec.every_ms
            and not last
            and spec.missed in ("latest", "skip")
            and late > spec.every_ms + lim.latest_tolerance_ms
        ) and not _paused_between(log, f.occ, f.ts):
            out.add("recurring_latest_not_newest", {"fire_id": f.fid, "late_ms": late})
        if spec.missed == "skip" and late > lim.grace_ms + lim.latest_tolerance_ms:
            out.add("recurring_skip_fired_missed", {"fire_id": f.fid, "late_ms": late})
    if spec.max_runs is not None and len(fires) > spec.max_runs:
        out.add(
            "recurring_past_max_runs",
            {"version": spec.version, "fires": len(fires), "max_runs": spec.max_runs},
        )


def _paused_throughout(log: IdLog, spec: Spec) -> bool:
    """Paused from before its first occurrence until after its last (or never resumed): it rightly never fired."""
    last = spec.ends_at if spec.ends_at is not None else NEVER
    first = spec.starts_at if spec.starts_at is not None else spec.ts
    return any(v == spec.version and p <= first and r >= last for p, r, v in log.pauses)


def ended_before(commands: Iterable[Record], fires: Iterable[Record], sid: str, at_ms: int) -> bool:
    """Had the newest version of recurring id `sid` created before `at_ms` ended by then (ends_at passed, or all
    its max_runs fired)? A pause or resume sent after that is rightly refused `not_recurring`."""
    versions = [r for r in commands if r["k"] == sid and r["v"] is not None and HEADER_CONTROL not in _h(r)]
    versions = [r for r in versions if r["ts"] <= at_ms]
    if not versions:
        return True  # nothing was pending
    spec = _spec(max(versions, key=lambda r: r["o"]), _h(max(versions, key=lambda r: r["o"])))
    if spec.ends_at is not None and spec.ends_at < at_ms:
        return True
    mine = [f for f in fires if (_h(f).get(HEADER_FIRE_ID) or "").startswith(f"{sid}@{spec.version}/")]
    return spec.max_runs is not None and len(mine) >= spec.max_runs and max(f["ts"] for f in mine) < at_ms


def _paused_between(log: IdLog, low: int, high: int) -> bool:
    return any(p <= high and r >= low for p, r, _v in log.pauses)


def _check_skips(out: _Out, spec: Spec, fires: list[Fire], log: IdLog) -> None:
    """The skipped counter accounts exactly for the nominal occurrences between successive fires."""
    if not spec.every_ms or spec.starts_at is None:
        return
    prev_occ, prev_skipped = spec.starts_at - spec.every_ms, 0
    for f in fires:
        if f.skipped is None:
            return
        gap = max(0, (f.occ - prev_occ) // spec.every_ms - 1)
        grew = f.skipped - prev_skipped
        paused = _paused_between(log, prev_occ, f.occ)
        if grew != gap and not (paused and 0 <= grew <= gap):
            out.add(
                "recurring_skip_count_wrong",
                {"fire_id": f.fid, "skipped": f.skipped, "grew": grew, "nominal_between": gap},
            )
        prev_occ, prev_skipped = f.occ, f.skipped


def _check_all(out: _Out, spec: Spec, fires: list[Fire], upto: int) -> None:
    got = {f.occ for f in fires}
    missing = [t for t in spec.nominal(upto) if t not in got]
    if missing:
        out.add(
            "recurring_missing_occurrence",
            {"version": spec.version, "missing": missing[:10], "count": len(missing)},
        )


def _check_after(
    out: _Out, lim: Limits, sid: str, spec: Spec, fires: list[Fire], log: IdLog, end_ms: int
) -> None:
    """Run n+1 is armed after_ms after run n's first done report; the chain goes on while it may."""
    assert spec.after_ms is not None
    for prev, nxt in itertools.pairwise(fires):
        done = log.dones.get(prev.fid)
        if done is None or nxt.occ < done + spec.after_ms:
            out.add(
                "after_fired_before_done",
                {"fire_id": nxt.fid, "previous": prev.fid, "done_at": done, "after_ms": spec.after_ms},
            )
    if not fires or spec.replaced_at is not None:
        return
    last = fires[-1]
    done = log.dones.get(last.fid)
    more = spec.max_runs is None or len(fires) < spec.max_runs
    if done is not None and more:
        next_at = done + spec.after_ms
        if next_at <= end_ms - lim.slack_ms and (spec.ends_at is None or next_at <= spec.ends_at):
            out.add("after_chain_stalled", {"id": sid, "last": last.fid, "done_at": done})


def _effective(states: list[StateRecord], since: int, match: Any) -> int | None:
    """The time of the first state record at or after `since` that `match`es, if the state log can tell."""
    for st in states:
        if st.ts >= since and not st.tombstone and match(st):
            return st.ts
    return None


def _check_pauses(
    out: _Out,
    lim: Limits,
    sid: str,
    log: IdLog,
    fires: list[Fire],
    states: list[StateRecord],
    consumed: dict[str, dict[int, int]],
) -> None:
    specs = {s.version: s for s in log.specs}
    for (paused_at, resumed_at, version), where in zip(log.pauses, log.pause_offsets, strict=True):
        mine = [f for f in fires if f.version == version]  # a replacement while paused arms afresh
        took = _effective(states, paused_at, lambda st: st.paused is True)
        start = took + lim.in_txn_ms if took is not None else paused_at + lim.pause_margin_ms
        partition, pause_offset, resume_offset = where
        bad = []
        for f in mine:
            position = consumed.get(f.fid, {}).get(partition)
            if position is not None:  # exact: its transaction had consumed the pause and not the resume
                if pause_offset < position <= resume_offset:
                    bad.append(f.fid)
            elif f.ts >= start and f.occ <= resumed_at:  # no transaction log: by time, with margins
                bad.append(f.fid)
        if bad:
            out.add("fired_while_paused", {"id": sid, "paused": [start, resumed_at], "fires": bad[:10]})
        spec = specs[version]
        if spec.every_ms is None or resumed_at >= NEVER or spec.replaced_at is not None:
            continue
        after = [t for t in spec.nominal(spec.ends_at or 0) if t > resumed_at + lim.resume_margin_ms]
        if after and not any(f.occ > resumed_at for f in mine):
            out.add("not_resumed", {"id": sid, "resumed_at": resumed_at, "nominal_after": after[:5]})


def _check_replaced(
    out: _Out, lim: Limits, spec: Spec, fires: list[Fire], log: IdLog, states: list[StateRecord]
) -> None:
    assert spec.replaced_at is not None
    newer = [s.version for s in log.specs if s.version > spec.version]
    took = _effective(states, spec.replaced_at, lambda st: st.version == newer[0]) if newer else None
    bound = took + lim.in_txn_ms if took is not None else spec.replaced_at + lim.replace_margin_ms
    late = [f.fid for f in fires if f.ts > bound]
    if late:
        out.add("replaced_version_fired", {"version": spec.version, "replaced_by": bound, "fires": late[:10]})


def _check_ended(
    out: _Out,
    lim: Limits,
    sid: str,
    log: IdLog,
    by_version: dict[int, list[Fire]],
    states: list[StateRecord],
    end_ms: int,
) -> None:
    if not log.specs or not states or states[-1].tombstone:
        return
    spec = log.specs[-1]
    ran_out = spec.max_runs is not None and len(by_version.get(spec.version, [])) >= spec.max_runs
    passed = spec.ends_at is not None and spec.ends_at < end_ms - lim.slack_ms
    if ran_out or passed:
        out.add("recurring_not_ended", {"id": sid, "version": spec.version})
