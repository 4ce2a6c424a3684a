"""The README's examples, run as written against a real broker and scheduler, so the README cannot drift."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from scheduler.codec import decode_state
from tests.conftest import wait_until
from tests.integration.scheduler_helpers import read_all
from tests.scheduler_proc import SchedulerStack

README = Path(__file__).resolve().parents[2] / "README.md"


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.DOTALL)


def shell_commands(block: str) -> list[str]:
    """One command per logical line (backslash continuations joined)."""
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def localized(command: str, stack: SchedulerStack, target: str) -> str:
    """Only what differs on a test broker: its address, the fresh topic names."""
    command = command.replace("localhost:9092", stack.bootstrap).replace("reservations.expire", target)
    return re.sub(r"-t scheduled\b", f"-t {stack.scheduled_topic}", command)


def sh(command: str) -> None:
    subprocess.run(command, shell=True, executable="/bin/bash", check=True, timeout=30, capture_output=True)


def state_of(stack: SchedulerStack, sid: bytes) -> list[bytes | None]:
    return [r.value for r in read_all(stack.bootstrap, stack.settings.state) if r.key == sid]


def test_the_readmes_kcat_lines_schedule_and_cancel(scheduler_stack: SchedulerStack) -> None:
    (block,) = [b for b in code_blocks("sh") if "kcat -P" in b]
    schedule, cancel = shell_commands(block)
    target = scheduler_stack.create_target(f"{scheduler_stack.scheduled_topic}-expire")
    sh(localized(schedule, scheduler_stack, target))
    wait_until(lambda: state_of(scheduler_stack, b"reservation-42"), 30, "the schedule in the state topic")
    (record,) = state_of(scheduler_stack, b"reservation-42")
    assert record is not None
    pending, _version = decode_state(record)
    due = re.search(r"scheduler-deliver-at=(\S+)", schedule)
    assert due is not None
    assert pending.due_ms == int(datetime.fromisoformat(due.group(1)).astimezone(UTC).timestamp() * 1000)
    assert (pending.target_topic, pending.target_key, pending.payload) == (target, b"42", b'{"id": 42}')
    sh(localized(cancel, scheduler_stack, target))
    wait_until(
        lambda: state_of(scheduler_stack, b"reservation-42")[-1:] == [None], 30, "the cancel's tombstone"
    )
    assert scheduler_stack.instances[0].metric("kafka_scheduler_cancelled_total") == 1
