"""kafka-scheduler: messages to the future on Kafka. The public API is exactly `__all__`."""

from scheduler.aio import AsyncSchedulerClient
from scheduler.client import SchedulerClient
from scheduler.config import ClientSettings
from scheduler.errors import (
    ClusterUnreachable,
    CodecError,
    ConfigError,
    CorruptStateRecord,
    DeliveryError,
    InvalidDeliverAt,
    InvalidHeaders,
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
from scheduler.model import Cancel, Schedule

__all__ = [
    "AsyncSchedulerClient",
    "Cancel",
    "ClientSettings",
    "ClusterUnreachable",
    "CodecError",
    "ConfigError",
    "CorruptStateRecord",
    "DeliveryError",
    "InvalidDeliverAt",
    "InvalidHeaders",
    "InvalidScheduleId",
    "InvalidTopic",
    "KafkaFatalError",
    "LocalBrokerError",
    "PayloadTooLarge",
    "Schedule",
    "SchedulerClient",
    "SchedulerError",
    "TopicConfigError",
    "UnknownTargetTopic",
    "ValidationError",
]
