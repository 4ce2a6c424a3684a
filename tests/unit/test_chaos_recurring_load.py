"""The chaos run's recurring load: seeded, in the header protocol, every kind and role, ending within the run."""

from __future__ import annotations

import random
from collections import Counter

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
