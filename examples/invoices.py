"""Invoice shipped orders: per order (a check that reschedules itself until the order ships) and, as the
nightly batch job it replaces, a recurring 02:00 Europe/Paris run that invoices every shipped order left.

    kafka-scheduler consume examples.invoices:app

`place()` stores the order and schedules the first check. Each check either invoices (once: the invoice's
primary key is the order id) or schedules the next check from inside the handler via `message.context.schedule`,
up to `MAX_CHECKS`. `install_nightly()` sends the recurring schedule `invoice-nightly` (same id again = replace,
so every deploy may call it); its occurrences arrive on the same topic and run `invoice_shipped()`, the same
code a person runs for "these orders" (`invoice_shipped(["o-1", "o-2"])`). Each occurrence fires once for the
whole cluster, however many instances of this service run.
"""

from __future__ import annotations

import json
from datetime import timedelta

from consumers import Message
from examples.common import ExampleConfig, TimerService

__all__ = ["MAX_CHECKS", "NIGHTLY_CRON", "NIGHTLY_ID", "NIGHTLY_ZONE", "Invoices", "app", "service"]

MAX_CHECKS = 1000
NIGHTLY_ID = "invoice-nightly"
NIGHTLY_CRON = "0 2 * * *"  # 02:00 every day, Paris time (CET or CEST: the scheduler follows the zone)
NIGHTLY_ZONE = "Europe/Paris"
SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, amount_cents INTEGER NOT NULL, shipped INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS invoices (order_id TEXT PRIMARY KEY, amount_cents INTEGER NOT NULL, checks INTEGER);
CREATE TABLE IF NOT EXISTS runs (run TEXT NOT NULL, invoiced INTEGER NOT NULL);
"""


class Invoices(TimerService):
    schema = SCHEMA

    def place(self, order_id: str, amount_cents: int) -> None:
        with self.db() as db:
            db.execute("INSERT INTO orders VALUES (?, ?, 0)", (order_id, amount_cents))
        self.schedule_timer(f"invoice-check:{order_id}:1", order_id, {"order_id": order_id, "check": 1})

    def ship(self, order_id: str) -> None:
        with self.db() as db:
            db.execute("UPDATE orders SET shipped = 1 WHERE id = ?", (order_id,))

    def install_nightly(self, cron: str = NIGHTLY_CRON, timezone: str = NIGHTLY_ZONE) -> None:
        """The nightly run as a recurring schedule (a replace if it exists: safe on every start)."""
        self.app.scheduler.schedule_recurring(
            NIGHTLY_ID,
            topic=self.config.topic,
            key="nightly",
            value=json.dumps({"run": "nightly"}),
            cron=cron,
            timezone=timezone,
            missed="latest",  # after an outage, one catch-up run (it invoices everything left anyway)
        )
        self.app.scheduler.flush(30)

    def invoice_shipped(self, order_ids: list[str] | None = None, run: str = "manual") -> int:
        """Invoice every shipped order not invoiced yet (or only these ones); returns how many it invoiced."""
        sql = "SELECT id, amount_cents FROM orders WHERE shipped = 1 AND id NOT IN (SELECT order_id FROM invoices)"
        with self.db() as db:
            rows = db.execute(sql).fetchall()
            wanted = [(oid, amount) for oid, amount in rows if order_ids is None or oid in order_ids]
            for oid, amount in wanted:
                db.execute("INSERT OR IGNORE INTO invoices VALUES (?, ?, ?)", (oid, amount, 0))
            db.execute("INSERT INTO runs VALUES (?, ?)", (run, len(wanted)))
        return len(wanted)

    def runs(self) -> list[tuple[str, int]]:
        """The nightly (and manual) runs so far: (occurrence or "manual", orders invoiced)."""
        with self.db() as db:
            return [(str(r), int(n)) for r, n in db.execute("SELECT run, invoiced FROM runs").fetchall()]

    def on_timer(self, message: Message) -> None:
        body = json.loads(message.value or b"{}")
        if (
            body.get("run") == "nightly"
        ):  # an occurrence of the recurring schedule: once per night, cluster-wide
            self.invoice_shipped(run=message.header("scheduler-occurrence-at") or "nightly")
            return
        order_id, check = body["order_id"], int(body["check"])
        with self.db() as db:
            row = db.execute("SELECT amount_cents, shipped FROM orders WHERE id = ?", (order_id,)).fetchone()
            if row is None or not row[1]:
                shipped = False
            else:
                db.execute("INSERT OR IGNORE INTO invoices VALUES (?, ?, ?)", (order_id, row[0], check))
                shipped = True
        if not shipped and row is not None and check < MAX_CHECKS:
            message.context.schedule(  # the id names the step, so a re-run of this check replaces, not adds
                f"invoice-check:{order_id}:{check + 1}",
                topic=self.config.topic,
                key=order_id,
                value=json.dumps({"order_id": order_id, "check": check + 1}),
                delay=timedelta(seconds=self.config.delay_s),
            )

    def invoice(self, order_id: str) -> tuple[int, int] | None:
        """(amount, the check that found it shipped), or None before invoicing."""
        with self.db() as db:
            row = db.execute(
                "SELECT amount_cents, checks FROM invoices WHERE order_id = ?", (order_id,)
            ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))


service = Invoices(ExampleConfig.from_env("invoices", delay_s=60))
app = service.app
