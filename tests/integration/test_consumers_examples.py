"""The examples end to end through the real scheduler and the consumer framework."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from examples.common import ExampleConfig
from examples.invoices import NIGHTLY_ID, Invoices
from examples.payments import Payments
from examples.reservations import Reservations
from examples.status import REFRESH_ID, StatusRefresh
from tests.conftest import wait_until
from tests.integration.consumer_helpers import produce_raw, read_all


def _config(
    stack: Any, unique: Callable[[str], str], create_topic: Callable[..., str], tmp: Path
) -> ExampleConfig:
    name = unique("example")
    return ExampleConfig(
        name=name,
        bootstrap=stack.bootstrap,
        scheduled_topic=stack.scheduled_topic,
        topic=create_topic(unique("timers"), partitions=2),
        group=unique("g"),
        db=tmp / f"{name}.sqlite3",
        delay_s=2.0,
    )


def _with_registry(app: Any) -> CollectorRegistry:
    registry = CollectorRegistry()
    app.settings = app.settings.model_copy(update={"registry": registry})
    return registry


def test_reservation_expiry_refunds_exactly_once_and_never_after_pick_up(
    scheduler_stack: Any, unique: Callable[[str], str], create_topic: Callable[..., str], tmp_path: Path
) -> None:
    config = _config(scheduler_stack, unique, create_topic, tmp_path)
    service = Reservations(config)
    registry = _with_registry(service.app)
    with service.app.running():
        service.create("r-picked", 500)
        service.create("r-forgotten", 700)
        assert service.pick_up("r-picked")
        wait_until(
            lambda: service.status("reservations", "r-forgotten") == "expired",
            60,
            "the forgotten reservation expired",
        )
        [(key, value, headers)] = read_all(config.bootstrap, config.topic, 1)
        produce_raw(config.bootstrap, config.topic, key, value, headers)  # the expiry delivered a second time
        skipped = {"group": config.group, "topic": config.topic, "outcome": "duplicate_skipped"}
        wait_until(
            lambda: registry.get_sample_value("kafka_scheduler_consumer_messages_total", skipped) == 1,
            30,
            "the duplicate expiry skipped",
        )
    assert service.refunds() == ["r-forgotten"]
    assert service.status("reservations", "r-picked") == "picked_up"


def test_payment_request_expires_only_if_unpaid(
    scheduler_stack: Any, unique: Callable[[str], str], create_topic: Callable[..., str], tmp_path: Path
) -> None:
    service = Payments(_config(scheduler_stack, unique, create_topic, tmp_path))
    with service.app.running():
        service.request("p-paid", 1000)
        service.request("p-unpaid", 2000)
        assert service.pay("p-paid")
        wait_until(
            lambda: service.status("payment_requests", "p-unpaid") == "expired",
            60,
            "the unpaid request expired",
        )
        wait_until(
            lambda: service.status("payment_requests", "p-paid") == "paid", 5, "the paid request untouched"
        )
    assert not service.pay("p-unpaid"), "an expired request can no longer be paid"


def test_invoice_is_issued_once_after_shipment_by_a_self_rescheduling_chain(
    scheduler_stack: Any, unique: Callable[[str], str], create_topic: Callable[..., str], tmp_path: Path
) -> None:
    config = dataclasses.replace(_config(scheduler_stack, unique, create_topic, tmp_path), delay_s=1.0)
    service = Invoices(config)
    registry = _with_registry(service.app)
    handled = {"group": config.group, "topic": config.topic, "outcome": "success"}
    with service.app.running():
        service.place("o-1", 4200)
        wait_until(
            lambda: (registry.get_sample_value("kafka_scheduler_consumer_messages_total", handled) or 0) >= 2,
            60,
            "two checks before shipment",
        )
        assert service.invoice("o-1") is None
        service.ship("o-1")
        wait_until(lambda: service.invoice("o-1") is not None, 60, "the invoice after shipment")
    amount, check = service.invoice("o-1") or (0, 0)
    assert amount == 4200 and check >= 3


def test_nightly_invoice_run_is_a_recurring_schedule_next_to_the_per_order_path(
    scheduler_stack: Any, unique: Callable[[str], str], create_topic: Callable[..., str], tmp_path: Path
) -> None:
    """The invoice job as a cron: every-second cron stands in for 02:00 Europe/Paris; each occurrence invoices
    the shipped orders left, once (two service instances run: the occurrence still runs once)."""
    config = _config(scheduler_stack, unique, create_topic, tmp_path)
    service = Invoices(config)
    twin = Invoices(config)  # a second instance of the same service, same group, same database
    with service.app.running(), twin.app.running():
        service.place("o-1", 1000)
        service.place("o-2", 2000)
        service.ship("o-1")
        service.install_nightly(cron="*/2 * * * * *", timezone="Europe/Paris")
        wait_until(lambda: service.invoice("o-1") is not None, 60, "the nightly run invoices o-1")
        assert service.invoice("o-2") is None, "not shipped: not invoiced"
        service.ship("o-2")
        wait_until(lambda: service.invoice("o-2") is not None, 60, "the next run invoices o-2")
        wait_until(lambda: len(service.runs()) >= 4, 60, "four nightly runs")
        service.app.scheduler.cancel(NIGHTLY_ID)
        service.app.scheduler.flush(10)
    runs = [run for run, _n in service.runs()]
    assert len(runs) == len(set(runs)), f"an occurrence ran twice: {runs}"
    assert all(int(run) % 2000 == 0 for run in runs), runs  # each run names its occurrence (even seconds)
    assert sum(n for _r, n in service.runs()) <= 2, (
        "each shipped order invoiced once (the per-order path may be first)"
    )
    assert service.invoice_shipped(["o-1"]) == 0, "the manual path: nothing left for these orders"


def test_status_refresh_at_a_fixed_rate(
    scheduler_stack: Any, unique: Callable[[str], str], create_topic: Callable[..., str], tmp_path: Path
) -> None:
    config = dataclasses.replace(_config(scheduler_stack, unique, create_topic, tmp_path), delay_s=1.0)
    service = StatusRefresh(config)
    with service.app.running():
        service.set_seats("hall", 40)
        service.install()
        wait_until(lambda: len(service.refreshes()) >= 3, 60, "three refreshes")
        service.app.scheduler.cancel(REFRESH_ID)
        service.app.scheduler.flush(10)
    times = [at for at, _v, _s in service.refreshes()]
    assert all(b - a == 1000 for a, b in itertools.pairwise(times)), times
    assert service.refreshes()[0][1:] == (1, 40)
