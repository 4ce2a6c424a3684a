"""What the three examples share: configuration from the environment and an SQLite database per example."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from consumers import App, ConsumerSettings, Message, SQLiteStore

__all__ = ["ExampleConfig", "TimerService", "connect"]


@dataclass(frozen=True)
class ExampleConfig:
    """Topic and file names are overridable so tests run each example on fresh topics."""

    name: str
    bootstrap: str | None = field(  # None: the App's KAFKA_SCHEDULER_BOOTSTRAP_SERVERS (or -b)
        default_factory=lambda: os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    )
    scheduled_topic: str = field(
        default_factory=lambda: os.environ.get("KAFKA_SCHEDULER_SCHEDULED_TOPIC", "scheduled")
    )
    topic: str = ""
    group: str = ""
    db: Path = Path()
    delay_s: float = 0.0

    @classmethod
    def from_env(cls, name: str, delay_s: float) -> ExampleConfig:
        prefix = f"EXAMPLE_{name.upper()}_"
        return cls(
            name=name,
            topic=os.environ.get(prefix + "TOPIC", f"{name}.timers"),
            group=os.environ.get(prefix + "GROUP", f"{name}-service"),
            db=Path(os.environ.get(prefix + "DB", f"{name}.sqlite3")),
            delay_s=float(os.environ.get(prefix + "DELAY_S", str(delay_s))),
        )

    def app(self) -> App:
        """The example's consumer App; its idempotency store sits next to the example's database."""
        return App(
            self.group,
            bootstrap_servers=self.bootstrap,
            concurrency=8,
            idempotency=SQLiteStore(self.db.with_suffix(".idempotency.sqlite3")),
            # The rest (KAFKA_SCHEDULER_METRICS_PORT in docker-compose.yml and make demo, …) from the environment.
            settings=ConsumerSettings(scheduled_topic=self.scheduled_topic, commit_interval_s=0.5),
        )


@contextmanager
def connect(path: Path, schema: str) -> Iterator[sqlite3.Connection]:
    """One short transaction on a fresh connection (handlers run on many threads): commit or roll back, close."""
    db = sqlite3.connect(path, timeout=30)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(schema)
        with db:
            yield db
    finally:
        db.close()


class TimerService:
    """An example service: an SQLite database, an App with one handler, timers scheduled through the client."""

    schema = ""

    def __init__(self, config: ExampleConfig) -> None:
        self.config = config
        self.app: App = config.app()
        self.app.handler(config.topic)(self.on_timer)

    def on_timer(self, message: Message) -> None:
        raise NotImplementedError

    def db(self) -> AbstractContextManager[sqlite3.Connection]:
        return connect(self.config.db, self.schema)

    def schedule_timer(self, schedule_id: str, key: str, body: dict[str, object]) -> None:
        """Due `config.delay_s` from now; same id = replace (the client's idempotent enqueue)."""
        self.app.scheduler.schedule(
            schedule_id,
            topic=self.config.topic,
            key=key,
            value=json.dumps(body),
            delay=timedelta(seconds=self.config.delay_s),
        )
        self.app.scheduler.flush(30)

    def transition(self, db: sqlite3.Connection, table: str, entity_id: str, old: str, new: str) -> bool:
        """Compare-and-set of a status column: the guard that makes a redelivered timer harmless."""
        sql = f"UPDATE {table} SET status = ? WHERE id = ? AND status = ?"  # table names are constants
        return db.execute(sql, (new, entity_id, old)).rowcount == 1

    def status(self, table: str, entity_id: str) -> str | None:
        with self.db() as db:
            row = db.execute(f"SELECT status FROM {table} WHERE id = ?", (entity_id,)).fetchone()
        return None if row is None else str(row[0])
