"""kafka-scheduler: messages to the future on Kafka. The public API is exactly `__all__`.

The clients load on first use (PEP 562): `kafka-scheduler run`, and every worker it starts, import this package
without either client (or confluent-kafka's asyncio producer).
"""

import importlib
from typing import TYPE_CHECKING, Any

from scheduler.errors import (
    ClusterUnreachable,
    CodecError,
    ConfigError,
    CorruptStateRecord,
    DeliveryError,
    InvalidDeliverAt,
    InvalidHeaders,
    InvalidRecurrence,
    InvalidScheduleId,
    InvalidTopic,
    KafkaFatalError,
    LocalBrokerError,
    PayloadTooLarge,
    SchedulerError,
    TopicConfigError,
    UnknownTargetTopic,
    ValidationError,
)
from scheduler.model import Backfill, Cancel, Done, Missed, Overlap, Pause, Recurrence, Resume, Schedule

if TYPE_CHECKING:
    from scheduler.aio import AsyncSchedulerClient
    from scheduler.client import SchedulerClient
    from scheduler.config import ClientSettings

_LAZY = {
    "AsyncSchedulerClient": "scheduler.aio",
    "SchedulerClient": "scheduler.client",
    "ClientSettings": "scheduler.config",
}

__all__ = [
    "AsyncSchedulerClient",
    "Backfill",
    "Cancel",
    "ClientSettings",
    "ClusterUnreachable",
    "CodecError",
    "ConfigError",
    "CorruptStateRecord",
    "DeliveryError",
    "Done",
    "InvalidDeliverAt",
    "InvalidHeaders",
    "InvalidRecurrence",
    "InvalidScheduleId",
    "InvalidTopic",
    "KafkaFatalError",
    "LocalBrokerError",
    "Missed",
    "Overlap",
    "Pause",
    "PayloadTooLarge",
    "Recurrence",
    "Resume",
    "Schedule",
    "SchedulerClient",
    "SchedulerError",
    "TopicConfigError",
    "UnknownTargetTopic",
    "ValidationError",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'scheduler' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
