"""The consumer framework: per-key ordered, parallel across keys, idempotent by fire id, retrying via the scheduler.

    app = App("billing", bootstrap_servers="localhost:9092")

    @app.handler("reservations.expired")
    def refund(message: Message) -> None: ...

    app.run()  # or: kafka-scheduler consume mymodule:app
"""

from consumers.app import DEFAULT_STORE, App, Ordering
from consumers.handlers import DeserializationError
from consumers.idempotency import IdempotencyStore, InMemoryStore, SQLiteStore
from consumers.message import Context, Message
from consumers.metrics import ConsumerMetrics
from consumers.retry import DltReason, NonRetryable, RetryPolicy, compute_backoff
from consumers.settings import ConsumerSettings

__all__ = [
    "DEFAULT_STORE",
    "App",
    "ConsumerMetrics",
    "ConsumerSettings",
    "Context",
    "DeserializationError",
    "DltReason",
    "IdempotencyStore",
    "InMemoryStore",
    "Message",
    "NonRetryable",
    "Ordering",
    "RetryPolicy",
    "SQLiteStore",
    "compute_backoff",
]
