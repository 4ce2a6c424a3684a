"""Lifecycle hooks against a real broker: startup before the first handler, shutdown after the last, and an async
startup hook on the same event loop as the async handlers (so a connection pool made there is usable in them)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from consumers import Message
from tests.conftest import wait_until
from tests.integration.consumer_helpers import make_app, produce


def test_startup_and_shutdown_hooks_bracket_the_handlers_and_share_their_loop(
    kafka_bootstrap: str, unique: Callable[[str], str], create_topic: Callable[..., str]
) -> None:
    topic = create_topic(unique("hooks"), partitions=1)
    produce(kafka_bootstrap, topic, [(b"a", b"1", None), (b"b", b"2", None)])
    events: list[str] = []
    loops: dict[str, asyncio.AbstractEventLoop] = {}
    lock = threading.Lock()
    app = make_app(kafka_bootstrap, unique("g"))

    @app.on_startup
    def open_files() -> None:
        events.append("startup")

    @app.on_startup
    async def open_pool() -> None:
        loops["startup"] = asyncio.get_running_loop()
        events.append("async startup")

    @app.on_shutdown
    def close_files() -> None:
        events.append("shutdown")

    @app.handler(topic)
    async def handle(message: Message) -> None:
        loops["handler"] = asyncio.get_running_loop()
        with lock:
            events.append("handled")

    with app.running():
        wait_until(lambda: events.count("handled") == 2, 30, "both records handled")
    assert events == ["startup", "async startup", "handled", "handled", "shutdown"]
    assert loops["startup"] is loops["handler"], "an async startup hook runs on the handlers' event loop"
