"""The chaos run's recurring load: seeded, in the header protocol, every kind and role, ending within the run."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from tests.chaos.recurring import check_recurring
from tests.chaos.recurring_load import RecurringPlan

NOW = 1_767_225_600_123


def sent(plan: RecurringPlan) -> list[tuple[str, str, bytes, dict[str, bytes]]]:
    out: list[tuple[str, str, bytes, dict[str, bytes]]] = []
    for action in plan.actions:
        plan.run(action, NOW, "t", lambda kind, sid, value, h: out.append((kind, sid, value, dict(h))))
    return out


def test_the_plan_is_seeded_and_covers_every_kind_and_role() -> None:
    plan = RecurringPlan(random.Random(7), 60, 20.0)
    assert plan.actions == RecurringPlan(random.Random(7), 60, 20.0).actions
    kinds = Counter(a.kind for a in plan.actions)
    assert kinds["recurring_create"] == 60
    assert kinds["pause"] == kinds["resume"] > 0 and kinds["recurring_replace"] > 0
    specs = [a.spec for a in plan.actions if a.spec is not None]
    assert {s.every_ms for s in specs} >= {1000, 2000} and any(s.after_ms for s in specs)
    assert {s.missed for s in specs if s.every_ms} == {"all", "latest", "skip"}
    assert all(a.at_s <= 20.0 for a in plan.actions if a.kind == "recurring_create")


def test_commands_use_the_header_protocol() -> None:
    for kind, sid, value, h in sent(RecurringPlan(random.Random(3), 30, 20.0)):
        if kind in ("pause", "resume"):
            assert value == b"" and h == {"scheduler-control": kind.encode()}, "never a null value (a cancel)"
            continue
        starts = int(h["scheduler-starts-at"])
        assert starts % 1000 == 0 and NOW + 1000 <= starts <= NOW + 4000, "a whole second, 1-3 s ahead"
        assert ("scheduler-every-ms" in h) != ("scheduler-after-ms" in h), "exactly one kind"
        assert "scheduler-deliver-at" not in h and h["scheduler-target-topic"] == b"t"
        assert ("scheduler-max-runs" in h) != ("scheduler-ends-at" in h), "each ends within the run"
        if "scheduler-ends-at" in h:
            assert int(h["scheduler-ends-at"]) <= starts + 28_000
        assert sid.startswith("rec")


def test_a_paused_schedule_is_paused_after_it_starts_and_resumed_well_before_it_ends() -> None:
    plan = RecurringPlan(random.Random(11), 80, 20.0)
    creates = {a.sid: a for a in plan.actions if a.kind == "recurring_create"}
    for pause in (a for a in plan.actions if a.kind == "pause"):
        create = creates[pause.sid]
        resume = next(a for a in plan.actions if a.kind == "resume" and a.sid == pause.sid)
        assert create.spec is not None and create.spec.span_ms is not None and create.spec.missed != "all"
        starts_s = create.at_s + create.spec.lead_ms / 1000
        ends_s = starts_s + create.spec.span_ms / 1000
        assert starts_s < pause.at_s < resume.at_s and resume.at_s + 10 < ends_s


# ---------------------------------------------------------------- the load against a model scheduler


INTAKE_MS = 10  # the model consumes a command this long after it was sent
FIRE_MS = 50  # and fires an occurrence this long after it is due (or after an outage)


def record(o: int, sid: str, ts: int, value: bytes, h: list[tuple[str, bytes]]) -> dict[str, Any]:
    return {"p": 0, "o": o, "ts": ts, "k": sid, "v": value.decode(), "h": [[k, v.decode()] for k, v in h]}


def fired(sid: str, version: int, occ: int, at: int, run: int, skipped: int, awaits: bool) -> dict[str, Any]:
    fid = f"{sid}@{version}/{occ}"
    h = {
        "scheduler-fire-id": fid,
        "scheduler-occurrence-at": str(occ),
        "scheduler-fired-at": str(at),
        "scheduler-run": str(run),
        "scheduler-skipped": str(skipped),
    }
    if awaits:
        h["scheduler-await-done"] = fid
    return {"p": 0, "o": 0, "ts": at, "k": sid, "v": "", "h": [[k, v] for k, v in h.items()]}


class Model:
    """Fires the plan's schedules as the design says, with one outage during which nothing fires."""

    def __init__(self, plan: RecurringPlan, outage: tuple[int, int]) -> None:
        self.commands: list[dict[str, Any]] = []
        self.fires: list[dict[str, Any]] = []
        self.outage = outage
        by_id: dict[str, list[tuple[int, str, dict[str, str]]]] = {}
        for action in plan.actions:
            now = NOW + int(action.at_s * 1000)
            plan.run(
                action, now, "t", lambda kind, sid, value, h, now=now: self._sent(by_id, now, sid, value, h)
            )
        for sid, cmds in by_id.items():
            self._run(sid, cmds)

    def _sent(
        self, by_id: dict[str, Any], now: int, sid: str, value: bytes, h: list[tuple[str, bytes]]
    ) -> None:
        rec = record(len(self.commands), sid, now, value, h)
        self.commands.append(rec)
        by_id.setdefault(sid, []).append((rec["o"], now, dict(rec["h"])))

    def _run(self, sid: str, cmds: list[tuple[int, str, dict[str, str]]]) -> None:
        versions = [(o, ts, h) for o, ts, h in cmds if "scheduler-control" not in h]
        pauses = [ts + INTAKE_MS for _o, ts, h in cmds if h.get("scheduler-control") == "pause"]
        resumes = [ts + INTAKE_MS for _o, ts, h in cmds if h.get("scheduler-control") == "resume"]
        windows = list(zip(pauses, resumes, strict=True))
        for i, (version, _ts, h) in enumerate(versions):
            until = versions[i + 1][1] + INTAKE_MS if i + 1 < len(versions) else 1 << 62
            if "scheduler-after-ms" in h:
                self._after(sid, version, h, until)
            else:
                self._every(sid, version, h, until, windows)

    def _every(
        self, sid: str, version: int, h: dict[str, str], until: int, windows: list[tuple[int, int]]
    ) -> None:
        every, occ = int(h["scheduler-every-ms"]), int(h["scheduler-starts-at"])
        ends = int(h.get("scheduler-ends-at", 1 << 62))
        runs, skipped, missed = 0, 0, h["scheduler-missed"]
        max_runs = int(h.get("scheduler-max-runs", 1 << 30))
        lo, hi = self.outage
        held: list[int] = []  # due during the outage
        while occ <= ends and runs < max_runs:
            at = hi + FIRE_MS if lo <= occ < hi else occ + FIRE_MS
            if at >= until:
                return
            if any(p <= occ <= r for p, r in windows):
                occ += every
                continue  # paused: never fires, not counted
            if lo <= occ < hi and missed != "all":
                held.append(occ)
                nxt = occ + every
                if nxt < hi and nxt <= ends:
                    occ = nxt
                    continue
                skipped += len(held) - 1
                occ, held = held[-1], []
            runs += 1
            self.fires.append(fired(sid, version, occ, at, runs, skipped, False))
            occ += every

    def _after(self, sid: str, version: int, h: dict[str, str], until: int) -> None:
        after, occ = int(h["scheduler-after-ms"]), int(h["scheduler-starts-at"])
        ends = int(h.get("scheduler-ends-at", 1 << 62))
        max_runs = int(h.get("scheduler-max-runs", 1 << 30))
        lo, hi = self.outage
        for run in range(1, max_runs + 1):
            if occ > ends:
                return
            at = max(occ, hi) + FIRE_MS if lo <= occ < hi else occ + FIRE_MS
            if at >= until:
                return
            self.fires.append(fired(sid, version, occ, at, run, 0, True))
            done = at + 100
            fid = f"{sid}@{version}/{occ}"
            headers = [("scheduler-control", b"done"), ("scheduler-fire-id", fid.encode())]
            self.commands.append(record(len(self.commands), sid, done, b"", headers))
            occ = done + after


def model_run(seed: int) -> Model:
    plan = RecurringPlan(random.Random(seed), 40, 20.0)
    return Model(plan, (NOW + 8_000, NOW + 14_000))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_checker_passes_the_load_fired_as_designed(seed: int) -> None:
    model = model_run(seed)
    found, stats = check_recurring(model.commands, model.fires, {}, {}, NOW + 200_000)
    assert found == {}, found
    assert stats["fires"] > 200 and stats["pauses"] > 0 and stats["dones"] > 0


@pytest.mark.parametrize(
    ("mutate", "anomaly"),
    [
        (lambda fires: fires + fires[-1:], "recurring_duplicate_fire"),
        (lambda fires: [f for i, f in enumerate(fires) if i != len(fires) // 2], None),
    ],
)
def test_the_checker_catches_a_mutated_run(mutate: Any, anomaly: str | None) -> None:
    model = model_run(1)
    found, _stats = check_recurring(model.commands, mutate(model.fires), {}, {}, NOW + 200_000)
    assert found, "a lost or duplicated fire must be an anomaly"
    if anomaly:
        assert anomaly in found
