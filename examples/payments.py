"""A payment request expires if it is not paid in time.

    kafka-scheduler consume examples.payments:app

`request()` stores a pending request and schedules its expiry; `pay()` settles it if still pending. The expiry
handler moves pending → expired and queues one notification, in one SQLite transaction.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import AbstractContextManager
from datetime import timedelta

from consumers import App, Message
from examples.common import ExampleConfig, connect

__all__ = ["Payments", "app", "service"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS payment_requests (id TEXT PRIMARY KEY, amount_cents INTEGER NOT NULL, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS notifications (request_id TEXT PRIMARY KEY, kind TEXT NOT NULL);
"""


class Payments:
    def __init__(self, config: ExampleConfig) -> None:
        self.config = config
        self.app: App = config.app()
        self.app.handler(config.topic)(self.on_expiry)

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        return connect(self.config.db, SCHEMA)

    def request(self, request_id: str, amount_cents: int) -> None:
        with self._db() as db:
            db.execute("INSERT INTO payment_requests VALUES (?, ?, 'pending')", (request_id, amount_cents))
        self.app.scheduler.schedule(
            f"payment-expiry:{request_id}",
            topic=self.config.topic,
            key=request_id,
            value=json.dumps({"request_id": request_id}),
            delay=timedelta(seconds=self.config.delay_s),
        )
        self.app.scheduler.flush(30)

    def pay(self, request_id: str) -> bool:
        """True if the request was still pending (an expired request can no longer be paid)."""
        with self._db() as db:
            paid = db.execute(
                "UPDATE payment_requests SET status = 'paid' WHERE id = ? AND status = 'pending'",
                (request_id,),
            ).rowcount
        return bool(paid)

    def on_expiry(self, message: Message) -> None:
        request_id = json.loads(message.value or b"{}")["request_id"]
        with self._db() as db:
            expired = db.execute(
                "UPDATE payment_requests SET status = 'expired' WHERE id = ? AND status = 'pending'",
                (request_id,),
            ).rowcount
            if expired:
                db.execute("INSERT INTO notifications VALUES (?, 'payment_request_expired')", (request_id,))

    def status(self, request_id: str) -> str | None:
        with self._db() as db:
            row = db.execute("SELECT status FROM payment_requests WHERE id = ?", (request_id,)).fetchone()
        return None if row is None else str(row[0])


service = Payments(ExampleConfig.from_env("payments", delay_s=30 * 60))
app = service.app
