"""An App whose handler hangs: `kafka-scheduler consume tests.integration.consumer_hang_app:app` (shutdown tests).

The handler writes HANG_MARKER when it starts, then sleeps for an hour (a call with no timeout of its own). The
time limits come from HANG_SHUTDOWN_S and HANG_HANDLER_S; a timed-out record is dead-lettered (no retry), so no
scheduler is needed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from consumers import App, ConsumerSettings, InMemoryStore, Message, RetryPolicy

app = App(
    os.environ["HANG_GROUP"],
    idempotency=InMemoryStore(),
    retry=RetryPolicy(max_attempts=1),
    settings=ConsumerSettings(
        shutdown_timeout_s=float(os.environ["HANG_SHUTDOWN_S"]),
        handler_timeout_s=float(os.environ["HANG_HANDLER_S"]),
        consumer={"session.timeout.ms": "6000"},
    ),
)


@app.handler(os.environ["HANG_TOPIC"])
def hang(message: Message) -> None:
    Path(os.environ["HANG_MARKER"]).write_text(f"{message.offset}")
    time.sleep(3600)
