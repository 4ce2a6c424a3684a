"""A reservation expires N seconds after creation unless picked up; the expiry refunds exactly once.

    kafka-scheduler consume examples.reservations:app

`create()` holds stock and schedules the expiry through the scheduler; `pick_up()` marks it collected (and
cancels the timer, best effort). The expiry handler moves held → expired and writes the refund in one SQLite
transaction, so even a redelivered expiry (at-least-once) cannot refund twice.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import AbstractContextManager
from datetime import timedelta

from consumers import App, Message
from examples.common import ExampleConfig, connect

__all__ = ["Reservations", "app", "service"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS reservations (id TEXT PRIMARY KEY, amount_cents INTEGER NOT NULL, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refunds (reservation_id TEXT PRIMARY KEY, amount_cents INTEGER NOT NULL);
"""


class Reservations:
    def __init__(self, config: ExampleConfig) -> None:
        self.config = config
        self.app: App = config.app()
        self.app.handler(config.topic)(self.on_expiry)

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        return connect(self.config.db, SCHEMA)

    def create(self, reservation_id: str, amount_cents: int) -> None:
        with self._db() as db:
            db.execute("INSERT INTO reservations VALUES (?, ?, 'held')", (reservation_id, amount_cents))
        self.app.scheduler.schedule(
            f"reservation-expiry:{reservation_id}",
            topic=self.config.topic,
            key=reservation_id,
            value=json.dumps({"reservation_id": reservation_id}),
            delay=timedelta(seconds=self.config.delay_s),
        )
        self.app.scheduler.flush(30)

    def pick_up(self, reservation_id: str) -> bool:
        """True if it was still held; the timer is cancelled, and the handler ignores it if it fires anyway."""
        with self._db() as db:
            picked = db.execute(
                "UPDATE reservations SET status = 'picked_up' WHERE id = ? AND status = 'held'",
                (reservation_id,),
            ).rowcount
        if picked:
            self.app.scheduler.cancel(f"reservation-expiry:{reservation_id}")
            self.app.scheduler.flush(30)
        return bool(picked)

    def on_expiry(self, message: Message) -> None:
        reservation_id = json.loads(message.value or b"{}")["reservation_id"]
        with self._db() as db:  # one transaction: the state change and the refund commit together
            expired = db.execute(
                "UPDATE reservations SET status = 'expired' WHERE id = ? AND status = 'held'",
                (reservation_id,),
            ).rowcount
            if expired:
                db.execute(
                    "INSERT INTO refunds SELECT id, amount_cents FROM reservations WHERE id = ?",
                    (reservation_id,),
                )

    def status(self, reservation_id: str) -> str | None:
        with self._db() as db:
            row = db.execute("SELECT status FROM reservations WHERE id = ?", (reservation_id,)).fetchone()
        return None if row is None else str(row[0])

    def refunds(self) -> list[str]:
        with self._db() as db:
            return [str(r[0]) for r in db.execute("SELECT reservation_id FROM refunds")]


service = Reservations(ExampleConfig.from_env("reservations", delay_s=15 * 60))
app = service.app
