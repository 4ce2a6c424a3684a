"""Retry policy: a pure full-jitter backoff and the retriable / non-retriable decision."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["DltReason", "NonRetryable", "RetryPolicy", "compute_backoff"]


class NonRetryable(Exception):
    """Raise (or subclass) in a handler to dead-letter the record at once instead of retrying it."""


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
    """At most `max_attempts` deliveries per record (1 = no retry); exceptions of `non_retryable` go to the DLT."""

    max_attempts: int = 5
    base: float = 1.0
    cap: float = 300.0
    non_retryable: tuple[type[BaseException], ...] = ()
    min_delay: float = 0.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base <= 0 or self.cap < self.base:
            raise ValueError(f"need 0 < base <= cap, got base={self.base} cap={self.cap}")

    def decide(self, exc: BaseException, attempt: int) -> DltReason | None:
        """None = schedule another attempt; otherwise the dead-letter reason."""
        if isinstance(exc, (NonRetryable, *self.non_retryable)):
            return DltReason.NON_RETRYABLE_ERROR
        if attempt >= self.max_attempts:
            return DltReason.MAX_ATTEMPTS_EXHAUSTED
        return None

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds before attempt `attempt + 1`."""
        return max(self.min_delay, compute_backoff(attempt, self.base, self.cap, rng))
