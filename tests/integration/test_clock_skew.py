"""Whole-process clock skew (F19-F21): real `kafka-scheduler run` processes under libfaketime.

Each instance runs under `LD_PRELOAD` with `FAKETIME=+S` or `-S` (a relative offset: its wall clock runs S seconds
ahead of or behind the host's); monotonic clocks stay real. Real time is the broker's: every target topic here uses
`message.timestamp.type=LogAppendTime`, so a fire's record timestamp is when the broker appended it, whatever the
firing instance's clock said. The firing instance's own clock is in the `scheduler-fired-at` header, which is how
each test proves the skew took effect in the process that fired.

libfaketime (0.9.10 and master) fakes clock_gettime/gettimeofday and translates the deadline of
pthread_cond_timedwait, but not of C11 `cnd_timedwait`, which librdkafka uses for every timed wait: its deadlines,
computed on the faked clock, reach the kernel untranslated. With the clock behind, every timed wait expires at once
(`committed()` fails with "Local: Timed out" forever and the rebuild never ends; other waits spin a core); with it
ahead, each wait lasts S seconds longer (`poll(0.5)` took 9.5 s). A host whose clock is really wrong has no such
mismatch, so a ten-line shim preloaded before libfaketime routes `cnd_timedwait` through pthread_cond_timedwait
(glibc implements one with the other on the same objects), and the probe checks both clocks and librdkafka's waits.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import pytest

from tests.conftest import IN_CI, wait_until
from tests.integration.scheduler_helpers import Record, Tail, read_all
from tests.integration.test_scheduler_faults import assert_exactly_once, pending_in_state, schedule_many
from tests.scheduler_proc import SchedulerProcess, SchedulerStack

SKEW_S = 3
SLACK_MS = (
    250  # the broker appends after the fire decision; this only absorbs millisecond truncation and jitter
)
LIBFAKETIME_PATHS = (
    "/usr/lib/*/faketime/libfaketime.so.1",  # Debian/Ubuntu (package libfaketime, pulled in by faketime)
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/lib64/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)
CND_SHIM = r"""
#include <errno.h>
#include <pthread.h>
#include <threads.h>

int cnd_timedwait(cnd_t *cond, mtx_t *mutex, const struct timespec *deadline) {
  int err = pthread_cond_timedwait((pthread_cond_t *)cond, (pthread_mutex_t *)mutex, deadline);
  return err == 0 ? thrd_success : err == ETIMEDOUT ? thrd_timedout : thrd_error;
}
"""
PROBE = """
import json, time
from confluent_kafka import Consumer
wall, mono = time.time(), time.monotonic()
consumer = Consumer({"group.id": "clock-probe", "log_level": 0})  # no brokers, no subscription: nothing to serve
t0, cpu0 = time.monotonic(), time.process_time()
consumer.poll(1.0)
print(json.dumps([wall, mono, time.monotonic() - t0, time.process_time() - cpu0]))
"""


def find_libfaketime() -> str | None:
    """`$LIBFAKETIME` if set, else the first installed libfaketime.so.1 (no MT variant needed)."""
    override = os.environ.get("LIBFAKETIME")
    if override:
        return override if os.path.exists(override) else None
    for pattern in LIBFAKETIME_PATHS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def build_cnd_shim(workdir: Path) -> str:
    """Compile the cnd_timedwait shim with the system C compiler; the reason it cannot as a RuntimeError."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler for the cnd_timedwait shim (apt-get install gcc libc6-dev)")
    source, shim = workdir / "cnd_shim.c", workdir / "cnd_shim.so"
    source.write_text(CND_SHIM)
    cmd = [cc, "-shared", "-fPIC", "-O2", "-o", str(shim), str(source)]
    built = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if built.returncode != 0:
        raise RuntimeError(
            f"cannot build the cnd_timedwait shim (libc6-dev missing?): {built.stderr.strip()}"
        )
    return str(shim)


class Faketime(TypedDict):
    """The environment of a skewed process (a TypedDict, so `**` passes it to `start_instance` type-checked)."""

    LD_PRELOAD: str
    FAKETIME: str
    FAKETIME_DONT_FAKE_MONOTONIC: str
    DONT_FAKE_MONOTONIC: str


def skewed(preload: str, skew_s: int) -> Faketime:
    """Environment for a process whose wall clock is `skew_s` seconds off the host's, monotonic clocks real.

    FAKETIME_DONT_FAKE_MONOTONIC is the documented name (0.9.8+), DONT_FAKE_MONOTONIC the older one; without it a
    relative offset also shifts CLOCK_MONOTONIC (to an epoch-sized value). FAKETIME_NO_CACHE is not needed: the
    cache only delays re-reading a faketimerc file, and FAKETIME in the environment never changes.
    """
    preload = ":".join(p for p in (preload, os.environ.get("LD_PRELOAD", "")) if p)
    return Faketime(
        LD_PRELOAD=preload, FAKETIME=f"{skew_s:+d}", FAKETIME_DONT_FAKE_MONOTONIC="1", DONT_FAKE_MONOTONIC="1"
    )


def probe(preload: str, skew_s: int) -> None:
    """A Python process under the preload: wall clock off by skew_s, monotonic real, librdkafka waits real."""
    wall0, mono0 = time.time(), time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**os.environ, **{k: str(v) for k, v in skewed(preload, skew_s).items()}},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    wall1, mono1 = time.time(), time.monotonic()
    child_wall, child_mono, waited_s, cpu_s = json.loads(out.stdout)
    where = f"LD_PRELOAD={preload} FAKETIME={skew_s:+d}"
    assert wall0 + skew_s - 0.05 <= child_wall <= wall1 + skew_s + 0.05, (
        f"{where} did not skew the wall clock: child {child_wall}, host {wall0}..{wall1}; {out.stderr.strip()}"
    )
    assert mono0 <= child_mono <= mono1, (
        f"{where} faked the monotonic clock: {child_mono} vs {mono0}..{mono1}"
    )
    assert 0.9 <= waited_s <= 2.0 and cpu_s < 0.15, (  # spinning burns CPU; a late deadline overshoots
        f"{where}: librdkafka's poll(1.0) took {waited_s:.2f}s and {cpu_s:.2f}s of CPU: its timed waits do "
        "not follow the faked clock (is the cnd_timedwait shim first in LD_PRELOAD?)"
    )


@pytest.fixture(scope="module")
def faketime_preload(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The LD_PRELOAD value (shim, libfaketime), probed; under CI=true a missing piece fails, never skips."""
    try:
        lib = find_libfaketime()
        if lib is None:
            raise RuntimeError(
                "libfaketime is not installed (apt-get install faketime), or $LIBFAKETIME is wrong"
            )
        shim = build_cnd_shim(tmp_path_factory.mktemp("faketime"))
    except RuntimeError as exc:
        if IN_CI:
            pytest.fail(f"{exc}: CI must not skip the clock-skew tests", pytrace=False)
        pytest.skip(str(exc))
    preload = f"{shim}:{lib}"
    for skew_s in (SKEW_S, -SKEW_S):
        probe(preload, skew_s)
    return preload


@dataclass(frozen=True)
class Fire:
    """One fired record: due (the client's clock), fired-at (the firing instance's clock), appended (real)."""

    fire_id: str
    due_ms: int
    fired_at_ms: int
    appended_ms: int

    @classmethod
    def of(cls, rec: Record) -> Fire:
        due, fired_at = int(rec.header("scheduler-due-at")), int(rec.header("scheduler-fired-at"))
        return cls(rec.header("scheduler-fire-id"), due, fired_at, rec.timestamp_ms)

    @property
    def lateness_ms(self) -> int:
        """Appended minus due, both on the real clock: negative means early."""
        return self.appended_ms - self.due_ms

    @property
    def clock_offset_ms(self) -> int:
        """The firing instance's clock minus real time at append: its skew minus the produce latency."""
        return self.fired_at_ms - self.appended_ms


def skewed_target(stack: SchedulerStack) -> str:
    config = {"message.timestamp.type": "LogAppendTime"}
    return stack.create_target(f"{stack.scheduled_topic}-target", config=config)


def settled_fires(stack: SchedulerStack, target: str, n: int, timeout_s: float) -> list[Fire]:
    """Wait for n distinct fires and an empty state topic (nothing left to fire twice); then read_committed."""
    tail = Tail(stack.bootstrap, target)
    try:
        tail.poll_until(
            lambda r: len({x.header("scheduler-fire-id") for x in r}) >= n, timeout_s, f"{n} distinct fires"
        )
    finally:
        tail.close()
    wait_until(lambda: pending_in_state(stack) == 0, 30, "state topic drained")
    records = read_all(stack.bootstrap, target)
    assert_exactly_once(records, n)  # no fire id twice; fired-at >= due on the firing instance's clock
    return [Fire.of(r) for r in records]


def summary(fires: list[Fire]) -> str:
    late = sorted(f.lateness_ms for f in fires)
    return f"real lateness ms over {len(late)} fires: min={late[0]} p50={late[len(late) // 2]} max={late[-1]}"


def own_lateness(instance: SchedulerProcess) -> str:
    """What the instance reports: its lateness histogram is fired-at minus due on its own clock, blind to skew."""
    total = instance.metric("kafka_scheduler_fire_lateness_seconds_sum")
    count = instance.metric("kafka_scheduler_fire_lateness_seconds_count")
    return f"its own lateness metric: mean {1000 * total / max(count, 1):.0f} ms over {count:.0f} fires"


def assert_firing_clock(fires: list[Fire], skew_s: int) -> None:
    """The process that fired really ran skew_s off: fired-at is ahead of the append by the skew, less latency."""
    for fire in fires:
        assert skew_s * 1000 - 1500 <= fire.clock_offset_ms <= skew_s * 1000 + SLACK_MS, (
            f"{fire} was not fired by an instance {skew_s:+d} s off the host clock: is the preload in effect?"
        )


def fire_30_on_one_instance(stack: SchedulerStack, preload: str, skew_s: int, first_s: float) -> list[Fire]:
    """One instance skew_s off the host clock fires 30 schedules due first_s .. first_s + 2 s from now."""
    target = skewed_target(stack)
    instance = stack.start_instance(**skewed(preload, skew_s))
    schedule_many(stack, target, 30, first_s, 2.0)
    fires = settled_fires(stack, target, 30, 30)
    print(f"\nclock {skew_s:+d} s: {summary(fires)}; {own_lateness(instance)}")
    assert_firing_clock(fires, skew_s)
    return fires


def test_clock_behind_fires_once_late_by_the_skew_never_early(
    faketime_preload: str, scheduler_topics: SchedulerStack
) -> None:
    fires = fire_30_on_one_instance(scheduler_topics, faketime_preload, -SKEW_S, first_s=1.0)
    for fire in fires:
        assert fire.lateness_ms >= 0, f"early by the real clock: {fire}"
        assert SKEW_S * 1000 - SLACK_MS <= fire.lateness_ms <= SKEW_S * 1000 + 3000, fire


def test_clock_ahead_fires_once_early_by_at_most_the_skew(
    faketime_preload: str, scheduler_topics: SchedulerStack
) -> None:
    """Documented, not a bug: "never early" holds on the firing instance's clock; one running ahead fires early."""
    # due after the skew, so each one waits on the skewed clock rather than being past due at intake
    fires = fire_30_on_one_instance(scheduler_topics, faketime_preload, SKEW_S, first_s=SKEW_S + 1.0)
    for fire in fires:
        assert fire.lateness_ms >= -(SKEW_S * 1000 + SLACK_MS), f"early by more than the skew: {fire}"
    median = sorted(f.lateness_ms for f in fires)[len(fires) // 2]
    assert median <= -(SKEW_S * 1000) + 2000, (
        f"expected fires about {SKEW_S} s early, median lateness {median} ms"
    )


def test_instances_skewed_both_ways_fire_each_schedule_once_across_a_restart(
    faketime_preload: str, scheduler_topics: SchedulerStack
) -> None:
    """Partitions move ahead -> behind (stop) and behind -> ahead (restart) while schedules fall due."""
    stack = scheduler_topics
    target = skewed_target(stack)
    ahead = stack.start_instance(wait=False, **skewed(faketime_preload, SKEW_S))
    behind = stack.start_instance(wait=False, **skewed(faketime_preload, -SKEW_S))
    ahead.wait_ready()
    behind.wait_ready()
    wait_until(
        lambda: owns_partitions(ahead) and owns_partitions(behind), 30, "both instances own a partition"
    )
    started = time.monotonic()
    schedule_many(stack, target, 150, 1.0, 14.0)
    wait_until(lambda: time.monotonic() - started > 5, 10, "a third of the schedules due")
    assert ahead.stop() == 0, ahead.log_tail()
    wait_until(lambda: behind.metric("kafka_scheduler_assigned_partitions") == 3, 30, "all on the behind one")
    again = stack.start_instance(**skewed(faketime_preload, SKEW_S))
    wait_until(lambda: owns_partitions(again), 30, "the restarted instance owns a partition again")
    fires = settled_fires(stack, target, 150, 60)
    by_ahead = [f for f in fires if f.clock_offset_ms > 0]
    by_behind = [f for f in fires if f.clock_offset_ms <= 0]
    assert by_ahead and by_behind, "each skew must have fired something, or the test proves nothing"
    print(f"\nahead: {summary(by_ahead)}\nbehind: {summary(by_behind)}")
    assert_firing_clock(by_ahead, SKEW_S)
    assert_firing_clock(by_behind, -SKEW_S)
    for fire in fires:
        assert fire.lateness_ms >= -(SKEW_S * 1000 + SLACK_MS), f"early by more than the skew: {fire}"
        assert fire.lateness_ms <= SKEW_S * 1000 + 20_000, f"later than skew + a rebalance: {fire}"


def owns_partitions(instance: SchedulerProcess) -> bool:
    return instance.metric("kafka_scheduler_assigned_partitions") >= 1
