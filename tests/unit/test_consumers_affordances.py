"""What Celery, dramatiq, arq and Spring Kafka users expect: a retry policy per handler and per exception type,
`Retry(after=...)`, and middleware around every handler call."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from datetime import timedelta

import pytest

from consumers import DltReason, Message, Retry, RetryPolicy
from consumers.headers import header
from consumers.message import RawRecord
from tests.unit.consumer_fakes import HandlerFn, Harness

RECORD = RawRecord("orders", 0, 3, b"A", b"x", (), 1_000)


def raising(make_exc: Callable[[Message], BaseException]) -> Callable[[Harness], HandlerFn]:
    def make(h: Harness) -> HandlerFn:
        def handle(message: Message) -> None:
            h.seen.append(message)
            raise make_exc(message)

        return handle

    return make


def delay_of(h: Harness, index: int = 0) -> float:
    return float(h.scheduler.scheduled[index][1]["delay"].total_seconds())


def test_a_handlers_own_policy_replaces_the_apps() -> None:
    h = Harness(handler=raising(lambda m: RuntimeError("down")), route={"retry": RetryPolicy(max_attempts=1)})
    h.run_raw(RECORD)
    assert h.scheduler.scheduled == [] and len(h.dead) == 1, "max_attempts=1 of the handler: no retry"


class Upstream(ConnectionError):
    pass


@pytest.mark.parametrize(
    ("exc", "attempt", "expected"),
    [
        (Upstream("refused"), 7, None),  # a subclass of ConnectionError: its policy allows 10
        (Upstream("refused"), 10, DltReason.MAX_ATTEMPTS_EXHAUSTED),
        (ValueError("bad"), 2, DltReason.MAX_ATTEMPTS_EXHAUSTED),  # the default: 2
        (KeyError("k"), 1, DltReason.NON_RETRYABLE_ERROR),  # LookupError: never retried
        (IndexError("i"), 1, None),  # nearest class wins: IndexError has its own policy
    ],
)
def test_the_policy_of_the_nearest_exception_class_decides(
    exc: BaseException, attempt: int, expected: DltReason | None
) -> None:
    policy = RetryPolicy(
        max_attempts=2,
        per_exception={
            ConnectionError: RetryPolicy(max_attempts=10, base=5.0, cap=60.0),
            LookupError: RetryPolicy(non_retryable=(LookupError,)),
            IndexError: RetryPolicy(max_attempts=3),
        },
    )
    assert policy.decide(exc, attempt) == expected


def test_the_backoff_of_the_exceptions_policy_is_used() -> None:
    slow = RetryPolicy(max_attempts=10, base=50.0, cap=60.0, min_delay=40.0)
    h = Harness(
        handler=raising(lambda m: Upstream("refused")), policy=RetryPolicy(per_exception={OSError: slow})
    )
    h.run_raw(RECORD)
    assert 40.0 <= delay_of(h) <= 60.0


def test_retry_after_asks_for_that_delay_and_counts_as_an_attempt() -> None:
    class Throttled(Exception):
        pass

    def make_exc(message: Message) -> BaseException:
        try:
            raise Throttled("429 from the payment provider")
        except Throttled as exc:
            retry = Retry(after=timedelta(seconds=30))
            retry.__cause__ = exc
            return retry

    h = Harness(handler=raising(make_exc), policy=RetryPolicy(max_attempts=2))
    h.run_raw(RECORD)
    assert delay_of(h) == 30.0 and h.count("retry_scheduled") == 1
    h.run_raw(h.scheduler.fire(0, offset=0))
    [(_, _, _, headers)] = h.dead
    assert header(headers, "consumer-dlt-reason") == "max_attempts_exhausted"
    assert str(header(headers, "consumer-dlt-exception-type")).endswith(".Throttled"), "the cause, not Retry"


def test_retry_without_a_delay_uses_the_backoff_and_is_never_non_retryable() -> None:
    policy = RetryPolicy(max_attempts=3, base=2.0, cap=2.0, min_delay=1.5, non_retryable=(Retry,))
    h = Harness(handler=raising(lambda m: Retry()), policy=policy)
    h.run_raw(RECORD)
    assert 1.5 <= delay_of(h) <= 2.0
    with pytest.raises(ValueError, match="negative"):
        Retry(after=-1)


def test_middleware_wraps_every_call_in_order_and_may_translate_an_exception() -> None:
    calls: list[str] = []

    def outer(message: Message, call_next: Callable[[Message], None]) -> None:
        calls.append("outer>")
        try:
            call_next(message)
        except TimeoutError as exc:
            raise Retry(after=5) from exc
        finally:
            calls.append("<outer")

    def inner(message: Message, call_next: Callable[[Message], None]) -> None:
        calls.append(f"inner attempt {message.attempt}")
        call_next(message)

    h = Harness(
        handler=raising(lambda m: TimeoutError("slow upstream")), route={"middleware": (outer, inner)}
    )
    h.run_raw(RECORD)
    assert calls == ["outer>", "inner attempt 1", "<outer"]
    assert delay_of(h) == 5.0, "the middleware turned the TimeoutError into Retry(after=5)"


def test_contextvars_set_by_middleware_reach_an_async_handler() -> None:
    trace: contextvars.ContextVar[str] = contextvars.ContextVar("trace", default="none")
    seen: list[str] = []

    def tracing(message: Message, call_next: Callable[[Message], None]) -> None:
        token = trace.set(f"span-{message.offset}")
        try:
            call_next(message)
        finally:
            trace.reset(token)

    def make(h: Harness) -> HandlerFn:
        async def handle(message: Message) -> None:
            seen.append(trace.get())

        return handle

    h = Harness(handler=make, route={"middleware": (tracing,)})
    h.run_raw(RECORD)
    h.processor.runner.stop()
    assert seen == ["span-3"] and h.finished == [3]


def test_async_middleware_is_refused_at_registration() -> None:
    """It would return an un-awaited coroutine: the handler would silently never run."""
    from consumers import App
    from scheduler.errors import ConfigError

    app = App("g", idempotency=None)

    async def timing(message: Message, call_next: Callable[[Message], None]) -> None:
        call_next(message)

    with pytest.raises(ConfigError, match="async"):
        app.middleware(timing)
