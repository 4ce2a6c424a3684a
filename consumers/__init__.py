"""The consumer framework: per-key ordered, parallel across keys, idempotent by fire id, retrying via the scheduler.

Declare an `App`, register handlers with `@app.handler("topic")`, then `app.run()` or
`kafka-scheduler consume module:app`. docs/consumers.md states the delivery semantics.
"""

from consumers.app import DEFAULT_STORE, App, Ordering
from consumers.handlers import DeserializationError, Middleware
from consumers.idempotency import AlreadyDone, IdempotencyStore, InMemoryStore, SQLiteStore
from consumers.message import Context, Message
from consumers.metrics import ConsumerMetrics
from consumers.retry import DltReason, NonRetryable, Retry, RetryPolicy, compute_backoff
from consumers.settings import ConsumerSettings
from consumers.shutdown import ShutdownIncomplete
from consumers.timeouts import HandlerTimeout

__all__ = [
    "DEFAULT_STORE",
    "AlreadyDone",
    "App",
    "ConsumerMetrics",
    "ConsumerSettings",
    "Context",
    "DeserializationError",
    "DltReason",
    "HandlerTimeout",
    "IdempotencyStore",
    "InMemoryStore",
    "Message",
    "Middleware",
    "NonRetryable",
    "Ordering",
    "Retry",
    "RetryPolicy",
    "SQLiteStore",
    "ShutdownIncomplete",
    "compute_backoff",
]
