"""Shutdown steps never raise over the error that ended the scheduler's loop (seen in chaos: a fenced
producer's flush raising SystemError out of confluent-kafka replaced the _FENCED line with a traceback)."""

from __future__ import annotations

import logging

import pytest

from scheduler.service.app import close_quietly


@pytest.mark.parametrize("error", [SystemError("returned a result with an exception set"), RuntimeError("x")])
def test_a_failing_shutdown_step_is_logged_not_raised(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    def step() -> None:
        raise error

    with caplog.at_level(logging.WARNING, logger="scheduler.service.app"):
        close_quietly("flushing the producer", step)
    assert f"flushing the producer: {type(error).__name__}: {error}" in caplog.text


def test_a_step_that_works_runs_once_and_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    close_quietly("closing a consumer", lambda: calls.append(1))
    assert calls == [1]
    assert caplog.text == ""
