"""Full-jitter backoff and the retry decision."""

from __future__ import annotations

import random

import pytest

from consumers import DltReason, NonRetryable, RetryPolicy, compute_backoff


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(1, 1.0), (2, 2.0), (3, 4.0), (9, 256.0), (10, 300.0), (500, 300.0)]
)
def test_backoff_stays_within_the_capped_exponential_ceiling(attempt: int, ceiling: float) -> None:
    rng = random.Random(1)
    draws = [compute_backoff(attempt, 1.0, 300.0, rng) for _ in range(500)]
    assert all(0.0 <= d <= ceiling for d in draws)
    assert max(draws) > ceiling * 0.9, "full jitter should reach close to the ceiling"


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt"):
        compute_backoff(0, 1.0, 10.0, random.Random())


class Poison(Exception):
    pass


@pytest.mark.parametrize(
    ("exc", "attempt", "expected"),
    [
        (RuntimeError("flaky"), 1, None),
        (RuntimeError("flaky"), 4, None),
        (RuntimeError("flaky"), 5, DltReason.MAX_ATTEMPTS_EXHAUSTED),
        (NonRetryable("bad"), 1, DltReason.NON_RETRYABLE_ERROR),
        (Poison("configured"), 1, DltReason.NON_RETRYABLE_ERROR),
    ],
)
def test_retry_decision(exc: Exception, attempt: int, expected: DltReason | None) -> None:
    policy = RetryPolicy(max_attempts=5, non_retryable=(Poison,))
    assert policy.decide(exc, attempt) == expected


def test_policy_validates_its_bounds() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base=10, cap=1)
