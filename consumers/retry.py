"""Retry policy: a pure full-jitter backoff and the retriable / non-retriable decision, per exception type."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

__all__ = ["DltReason", "NonRetryable", "Retry", "RetryPolicy", "compute_backoff"]


class NonRetryable(Exception):
    """Raise (or subclass) in a handler to dead-letter the record at once instead of retrying it."""


class Retry(Exception):
    """Raise in a handler to retry the record after `after` (default: the policy's backoff).

    It counts as an attempt: past `max_attempts` the record is dead-lettered (`raise Retry(...) from exc` names
    `exc`'s class in the dead letter).
    """

    def __init__(self, after: timedelta | float | None = None, reason: str = "") -> None:
        seconds = after.total_seconds() if isinstance(after, timedelta) else after
        if seconds is not None and seconds < 0:
            raise ValueError(f"Retry(after=...) must not be negative, got {after!r}")
        self.after: float | None = None if seconds is None else float(seconds)
        when = "with the policy's backoff" if self.after is None else f"after {self.after:g}s"
        super().__init__(reason or f"the handler asked for a retry {when}")


class DltReason(StrEnum):
    """Why a record went to the dead-letter topic (the `consumer-dlt-reason` header)."""

    MAX_ATTEMPTS_EXHAUSTED = "max_attempts_exhausted"
    NON_RETRYABLE_ERROR = "non_retryable_error"
    DESERIALIZATION_ERROR = "deserialization_error"


def compute_backoff(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**(attempt-1))] seconds.

    `attempt` is the attempt that just failed (1 = the first delivery).
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 62))
    return rng.uniform(0.0, ceiling)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """At most `max_attempts` deliveries per record (1 = no retry); exceptions of `non_retryable` go to the DLT.

    The delay before attempt n+1 is at least `min_delay` and otherwise `compute_backoff(n, base, cap)`.
    `per_exception` maps exception classes to their own policy: the nearest class in the raised exception's MRO
    wins (one level: the chosen policy's own `per_exception` is not consulted).
    """

    max_attempts: int = 5
    base: float = 1.0
    cap: float = 300.0
    non_retryable: tuple[type[BaseException], ...] = ()
    min_delay: float = 0.0
    per_exception: Mapping[type[BaseException], RetryPolicy] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base <= 0 or self.cap < self.base:
            raise ValueError(f"need 0 < base <= cap, got base={self.base} cap={self.cap}")
        if self.min_delay < 0:
            raise ValueError(f"min_delay must be >= 0, got {self.min_delay}")
        for cls, policy in self.per_exception.items():
            if not (isinstance(cls, type) and issubclass(cls, BaseException)) or not isinstance(
                policy, RetryPolicy
            ):
                raise ValueError(
                    f"per_exception maps exception classes to RetryPolicy, got {cls!r}: {policy!r}"
                )

    def for_exception(self, exc: BaseException) -> RetryPolicy:
        """The policy that applies to `exc`: its nearest class in `per_exception`, else this one."""
        for cls in type(exc).__mro__:
            if cls in self.per_exception:
                return self.per_exception[cls]
        return self

    def decide(self, exc: BaseException, attempt: int) -> DltReason | None:
        """None = schedule another attempt; otherwise the dead-letter reason."""
        policy = self.for_exception(exc)
        if not isinstance(exc, Retry) and isinstance(exc, (NonRetryable, *policy.non_retryable)):
            return DltReason.NON_RETRYABLE_ERROR
        if attempt >= policy.max_attempts:
            return DltReason.MAX_ATTEMPTS_EXHAUSTED
        return None

    def delay(self, attempt: int, rng: random.Random, exc: BaseException | None = None) -> float:
        """Seconds before attempt `attempt + 1`; a `Retry(after=...)` says it exactly."""
        if isinstance(exc, Retry) and exc.after is not None:
            return exc.after
        policy = self if exc is None else self.for_exception(exc)
        return max(policy.min_delay, compute_backoff(attempt, policy.base, policy.cap, rng))
