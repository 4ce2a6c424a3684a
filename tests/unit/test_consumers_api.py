"""The public API stays honest, and `kafka-scheduler consume` resolves module:app targets."""

from __future__ import annotations

import pytest
import typer

import consumers
from consumers import App, RetryPolicy
from scheduler.cli.consume import load_app
from scheduler.errors import ConfigError


def test_every_exported_name_exists_and_nothing_private_is_exported() -> None:
    for name in consumers.__all__:
        assert hasattr(consumers, name), name
        assert not name.startswith("_")


def test_load_app_resolves_an_example() -> None:
    app = load_app("examples.reservations:app")
    assert isinstance(app, App) and app.handlers


@pytest.mark.parametrize("target", ["no-colon", "examples.nope:app", "examples.reservations:service"])
def test_load_app_refuses_bad_targets_with_a_usage_error(target: str) -> None:
    with pytest.raises(typer.BadParameter):
        load_app(target)


def test_app_validates_its_arguments_and_handlers() -> None:
    with pytest.raises(ConfigError, match="ordering"):
        App("g", ordering="sometimes")  # type: ignore[arg-type]
    app = App("g", retry=RetryPolicy(max_attempts=2), idempotency=None)

    @app.handler("t")
    def first(message: consumers.Message) -> None:
        pass

    with pytest.raises(ConfigError, match="already has a handler"):
        app.handler("t")(first)
    with pytest.raises(ConfigError, match="no handlers"):
        App("empty", idempotency=None).run()


def test_signals_arm_a_backstop_only_while_the_app_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """run() without a stop event owns SIGTERM/SIGINT; afterwards the old handlers are back and no hard exit looms."""
    import signal
    import threading

    from consumers import app as app_module

    fired = threading.Event()
    monkeypatch.setattr(app_module, "_overdue", fired.set)
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    with app_module._signals(stop, timeout_s=0.05):
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler) and handler is not before
        handler(signal.SIGTERM, None)
        assert stop.is_set()
    assert signal.getsignal(signal.SIGTERM) is before
    assert not fired.wait(1.0), "the backstop must be disarmed once run() returned"


def test_the_backstop_fires_when_shutdown_overruns_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    import signal
    import threading

    from consumers import app as app_module

    fired = threading.Event()
    monkeypatch.setattr(app_module, "_overdue", fired.set)
    with app_module._signals(threading.Event(), timeout_s=0.05):
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # type: ignore[operator,misc]
        assert fired.wait(5.0), "still running 0.5 s past the deadline: the process must exit hard"
