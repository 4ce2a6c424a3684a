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
