"""A fixed-rate status refresh: every N seconds (15 minutes in production), recompute a summary table.

    kafka-scheduler consume examples.status:app

`install()` sends the recurring schedule `status-refresh` (fixed rate, `every`; same id again = replace). Each
occurrence recomputes the open-reservation count per venue from the reservations example's table shape and
stamps it with the occurrence's nominal time (`scheduler-occurrence-at`), so a late or repeated delivery of one
occurrence writes the same row. With `missed="skip"` an outage does not bring a burst of catch-up refreshes:
only the next one matters.
"""

from __future__ import annotations

import json
from datetime import timedelta

from consumers import Message
from examples.common import ExampleConfig, TimerService

__all__ = ["REFRESH_ID", "StatusRefresh", "app", "service"]

REFRESH_ID = "status-refresh"
SCHEMA = """
CREATE TABLE IF NOT EXISTS venues (id TEXT PRIMARY KEY, open_seats INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS refreshes (occurrence_at INTEGER PRIMARY KEY, venues INTEGER NOT NULL,
                                      open_seats INTEGER NOT NULL);
"""


class StatusRefresh(TimerService):
    schema = SCHEMA

    def install(self) -> None:
        """The refresh as a recurring schedule, every `delay_s` seconds (missed occurrences are skipped)."""
        self.app.scheduler.schedule_recurring(
            REFRESH_ID,
            topic=self.config.topic,
            value=json.dumps({"refresh": "status"}),
            every=timedelta(seconds=self.config.delay_s),
            missed="skip",
        )
        self.app.scheduler.flush(30)

    def set_seats(self, venue: str, seats: int) -> None:
        with self.db() as db:
            db.execute("INSERT OR REPLACE INTO venues VALUES (?, ?)", (venue, seats))

    def on_timer(self, message: Message) -> None:
        at = int(message.header("scheduler-occurrence-at") or 0)
        with self.db() as db:
            venues, seats = db.execute("SELECT COUNT(*), COALESCE(SUM(open_seats), 0) FROM venues").fetchone()
            db.execute("INSERT OR REPLACE INTO refreshes VALUES (?, ?, ?)", (at, venues, seats))

    def refreshes(self) -> list[tuple[int, int, int]]:
        """(occurrence time, venues, open seats) of every refresh so far, oldest first."""
        with self.db() as db:
            rows = db.execute("SELECT occurrence_at, venues, open_seats FROM refreshes ORDER BY 1").fetchall()
        return [(int(a), int(v), int(s)) for a, v, s in rows]


service = StatusRefresh(ExampleConfig.from_env("status", delay_s=900))
app = service.app
