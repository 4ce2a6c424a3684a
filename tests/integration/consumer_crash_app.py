"""An App for the crash test, run in a subprocess: `kafka-scheduler consume tests.integration.consumer_crash_app:app`.

Its handler appends one row per effect to a ledger table inside the idempotency store's SQLite file, through
`message.context.transaction()` (effect and done mark in one transaction: exactly once); the first time it sees
CRASH_VALUE it SIGKILLs its own process mid-handler (before the effect), like a pod killed by the OOM killer.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from consumers import App, ConsumerSettings, Message, SQLiteStore

TOPIC = os.environ["CRASH_TOPIC"]
MARKER = Path(os.environ["CRASH_MARKER"])
CRASH_VALUE = os.environ["CRASH_VALUE"].encode()

app = App(
    os.environ["CRASH_GROUP"],
    bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
    concurrency=8,
    idempotency=SQLiteStore(os.environ["CRASH_STORE"]),
    # A wide window of done-but-uncommitted records; a short session so the restart rejoins quickly.
    settings=ConsumerSettings(commit_interval_s=30.0, consumer={"session.timeout.ms": "6000"}),
)


@app.handler(TOPIC)
def apply_effect(message: Message) -> None:
    time.sleep(0.002)
    if message.value == CRASH_VALUE and not MARKER.exists():
        MARKER.write_text("crashed once")
        os.kill(os.getpid(), signal.SIGKILL)
    with message.context.transaction() as db:
        db.execute("CREATE TABLE IF NOT EXISTS effects (value TEXT NOT NULL)")
        db.execute("INSERT INTO effects (value) VALUES (?)", ((message.value or b"").decode(),))
