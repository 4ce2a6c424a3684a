"""A payment request expires if it is not paid in time.

    kafka-scheduler consume examples.payments:app

`request()` stores a pending request and schedules its expiry; `pay()` settles it if still pending. The expiry
handler moves pending → expired and queues one notification, in one SQLite transaction.
"""

from __future__ import annotations

import json

from consumers import Message
from examples.common import ExampleConfig, TimerService

__all__ = ["Payments", "app", "service"]


class Payments(TimerService):
    schema = """
    CREATE TABLE IF NOT EXISTS payment_requests (id TEXT PRIMARY KEY, amount_cents INTEGER NOT NULL, status TEXT);
    CREATE TABLE IF NOT EXISTS notifications (request_id TEXT PRIMARY KEY, kind TEXT NOT NULL);
    """

    def request(self, request_id: str, amount_cents: int) -> None:
        with self.db() as db:
            db.execute("INSERT INTO payment_requests VALUES (?, ?, 'pending')", (request_id, amount_cents))
        self.schedule_timer(f"payment-expiry:{request_id}", request_id, {"id": request_id})

    def pay(self, request_id: str) -> bool:
        """True if the request was still pending (an expired request can no longer be paid)."""
        with self.db() as db:
            return self.transition(db, "payment_requests", request_id, "pending", "paid")

    def on_timer(self, message: Message) -> None:
        request_id = json.loads(message.value or b"{}")["id"]
        with self.db() as db:
            if self.transition(db, "payment_requests", request_id, "pending", "expired"):
                db.execute("INSERT INTO notifications VALUES (?, 'payment_request_expired')", (request_id,))


service = Payments(ExampleConfig.from_env("payments", delay_s=30 * 60))
app = service.app
