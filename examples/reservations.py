"""A reservation expires N seconds after creation unless picked up; the expiry refunds exactly once.

    kafka-scheduler consume examples.reservations:app

`create()` holds stock and schedules the expiry through the scheduler; `pick_up()` marks it collected (and
cancels the timer, best effort). The expiry handler moves held → expired and writes the refund in one SQLite
transaction, so even a redelivered expiry (at-least-once) cannot refund twice.
"""

from __future__ import annotations

import json

from consumers import Message
from examples.common import ExampleConfig, TimerService

__all__ = ["Reservations", "app", "service"]


class Reservations(TimerService):
    schema = """
    CREATE TABLE IF NOT EXISTS reservations (id TEXT PRIMARY KEY, amount_cents INTEGER NOT NULL, status TEXT);
    CREATE TABLE IF NOT EXISTS refunds (reservation_id TEXT PRIMARY KEY, amount_cents INTEGER NOT NULL);
    """

    def create(self, reservation_id: str, amount_cents: int) -> None:
        with self.db() as db:
            db.execute("INSERT INTO reservations VALUES (?, ?, 'held')", (reservation_id, amount_cents))
        self.schedule_timer(f"reservation-expiry:{reservation_id}", reservation_id, {"id": reservation_id})

    def pick_up(self, reservation_id: str) -> bool:
        """True if it was still held; the timer is cancelled, and the handler ignores it if it fires anyway."""
        with self.db() as db:
            picked = self.transition(db, "reservations", reservation_id, "held", "picked_up")
        if picked:
            self.app.scheduler.cancel(f"reservation-expiry:{reservation_id}")
            self.app.scheduler.flush(30)
        return picked

    def on_timer(self, message: Message) -> None:
        reservation_id = json.loads(message.value or b"{}")["id"]
        with self.db() as db:  # one transaction: the state change and the refund commit together
            if self.transition(db, "reservations", reservation_id, "held", "expired"):
                db.execute(
                    "INSERT INTO refunds SELECT id, amount_cents FROM reservations WHERE id = ?",
                    (reservation_id,),
                )

    def refunds(self) -> list[str]:
        with self.db() as db:
            return [str(r[0]) for r in db.execute("SELECT reservation_id FROM refunds")]


service = Reservations(ExampleConfig.from_env("reservations", delay_s=15 * 60))
app = service.app
