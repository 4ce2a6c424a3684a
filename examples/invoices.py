"""Invoice an order once it has shipped: the service reschedules its own check until then (a chain, no cron).

    kafka-scheduler consume examples.invoices:app

`place()` stores the order and schedules the first check. Each check either invoices (once: the invoice's
primary key is the order id) or schedules the next check from inside the handler via `message.context.schedule`,
up to `MAX_CHECKS`.
"""

from __future__ import annotations

import json
from datetime import timedelta

from consumers import Message
from examples.common import ExampleConfig, TimerService

__all__ = ["MAX_CHECKS", "Invoices", "app", "service"]

MAX_CHECKS = 1000
SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, amount_cents INTEGER NOT NULL, shipped INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS invoices (order_id TEXT PRIMARY KEY, amount_cents INTEGER NOT NULL, checks INTEGER);
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

    def on_timer(self, message: Message) -> None:
        body = json.loads(message.value or b"{}")
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
