"""The README's examples, run as written against a real broker and scheduler, so the README cannot drift."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scheduler.codec import decode_state
from tests.conftest import wait_until
from tests.integration.scheduler_helpers import Tail, read_all
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


def sh(command: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        command,
        check=False,
        shell=True,
        executable="/bin/bash",
        timeout=60,
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"


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


def test_the_readme_quickstart_runs_as_written(
    kafka_bootstrap: str, unique: Callable[[str], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newcomer's first minutes: the README's set-up, its Python example and its kcat lines, in order, on fresh
    topics, with only the broker address and the topic names changed."""
    stack = SchedulerStack(kafka_bootstrap, unique("readme"), tmp_path)  # topics made by the README's command
    target = unique("reservations.expire")
    env = {
        **os.environ,
        "KAFKA_SCHEDULER_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_SCHEDULER_SCHEDULED_TOPIC": stack.scheduled_topic,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    monkeypatch.setenv(
        "KAFKA_SCHEDULER_SCHEDULED_TOPIC", stack.scheduled_topic
    )  # the Python example's client
    setup = [c for b in code_blocks("sh") if "topics create" in b for c in shell_commands(b)]
    assert [c.split("#")[0].split()[1] for c in setup] == ["dev", "topics", "run"]
    _broker, create, _run = (
        setup  # the test's broker stands in for `dev broker start`; `run` is started below
    )
    sh(localized(create, stack, target), env)
    try:
        stack.start_instance()
        (python,) = [b for b in code_blocks("python") if "SchedulerClient(" in b]
        tail = Tail(kafka_bootstrap, target)
        exec(compile(localized(python, stack, target), "README.md", "exec"), {})
        fired = tail.poll_until(lambda r: len(r) >= 1, 40, "reservation 42's message")
        fired = tail.poll_for(1.0)
        tail.close()
        assert [(r.key, r.value) for r in fired] == [(b"42", b'{"id": 42}')]  # 43 was cancelled in time
        (kcat,) = [b for b in code_blocks("sh") if "kcat -P" in b]
        schedule, cancel = shell_commands(kcat)
        sh(localized(schedule, stack, target))
        wait_until(lambda: state_of(stack, b"reservation-42")[-1:] != [None], 30, "kcat's schedule pending")
        sh(localized(cancel, stack, target))
        wait_until(lambda: state_of(stack, b"reservation-42")[-1] is None, 30, "kcat's cancel")
        assert stack.instances[0].metric("kafka_scheduler_rejected_total") == 0
    finally:
        stack.close()
