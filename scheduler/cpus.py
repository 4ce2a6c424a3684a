"""How many cores this process may use: the CPU affinity mask, capped by a cgroup CPU quota (containers)."""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["usable_cpus"]

CGROUP = Path("/sys/fs/cgroup")


def usable_cpus(cgroup: Path = CGROUP) -> int:
    """Cores this process may run on, at least 1: a pod limited to `cpu: 2` on a 64-core node gets 2."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = cgroup_quota(cgroup)
    if quota is not None:
        cores = min(cores, quota)
    return max(1, cores)


def cgroup_quota(cgroup: Path = CGROUP) -> int | None:
    """The CPU quota in whole cores, rounded up (cgroup v2 `cpu.max`, else v1 `cpu.cfs_quota_us`); None if none."""
    try:
        quota, _sep, period = (cgroup / "cpu.max").read_text().strip().partition(" ")
        return _cores(quota, period or "100000", unlimited="max")
    except (OSError, ValueError):
        pass
    try:
        v1 = cgroup / "cpu"
        quota = (v1 / "cpu.cfs_quota_us").read_text().strip()
        return _cores(quota, (v1 / "cpu.cfs_period_us").read_text().strip(), unlimited="-1")
    except (OSError, ValueError):
        return None


def _cores(quota: str, period: str, unlimited: str) -> int | None:
    if quota == unlimited:
        return None
    q, p = int(quota), int(period)
    if q <= 0 or p <= 0:
        return None
    return max(1, math.ceil(q / p))
