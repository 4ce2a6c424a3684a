"""Every error kafka-scheduler raises, in one tree.

SchedulerError
├── ConfigError                 a setting is missing, malformed, or contradicts a forced one
├── ValidationError             the client refused a command before sending it
│   ├── InvalidScheduleId
│   ├── InvalidTopic
│   │   └── UnknownTargetTopic  the target topic does not exist on the cluster (checked at schedule())
│   ├── InvalidDeliverAt        naive datetime, both/neither of at and delay, beyond the horizon
│   ├── InvalidRecurrence       not exactly one of cron/every/after, a bad option, ends before it starts
│   ├── PayloadTooLarge
│   └── InvalidHeaders
├── DeliveryError               the broker did not take a command (latched, raised at the next call)
├── CodecError                  a value cannot be expressed in or read from the wire format
│   └── CorruptStateRecord      a state-topic record does not decode: the state topic needs attention
├── TopicConfigError            a topic would lose or resurrect schedules; the message says the fix
├── ClusterUnreachable          the cluster did not answer in time: down, a wrong address, TLS or SASL refused
├── KafkaFatalError             the producer or consumer is unusable; stop firing and exit
└── LocalBrokerError            the development broker could not start or stop
"""

from __future__ import annotations

from scheduler.model import RejectReason

__all__ = [
    "ClusterUnreachable",
    "CodecError",
    "ConfigError",
    "CorruptStateRecord",
    "DeliveryError",
    "InvalidDeliverAt",
    "InvalidHeaders",
    "InvalidRecurrence",
    "InvalidScheduleId",
    "InvalidTopic",
    "KafkaFatalError",
    "LocalBrokerError",
    "PayloadTooLarge",
    "SchedulerError",
    "TopicConfigError",
    "UnknownTargetTopic",
    "ValidationError",
]


class SchedulerError(Exception):
    """Root of every error this package raises."""


class ConfigError(SchedulerError):
    """A setting is missing, malformed, or contradicts a forced one."""


class ValidationError(SchedulerError, ValueError):
    """A command was refused before anything was sent; `reason` is the scheduler's word for what it would do."""

    reason: RejectReason | None = None

    def __init__(self, message: str, reason: RejectReason | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class InvalidScheduleId(ValidationError):
    """The schedule id is empty or longer than 255 UTF-8 bytes."""

    reason = RejectReason.INVALID_KEY


class InvalidTopic(ValidationError):
    """The target topic name is not a legal Kafka topic name, is forbidden, or the partition is out of range."""

    reason = RejectReason.INVALID_TARGET_TOPIC


class UnknownTargetTopic(InvalidTopic):
    """The target topic does not exist on the cluster (or may not be described): the scheduler would reject it."""

    reason = RejectReason.UNKNOWN_TARGET_TOPIC


class InvalidDeliverAt(ValidationError):
    """The due time is naive, ambiguous, negative or beyond the horizon."""

    reason = RejectReason.INVALID_DUE


class InvalidRecurrence(ValidationError):
    """A recurring schedule's spec is wrong in a way the client can see (the scheduler checks the rest)."""

    reason = RejectReason.INVALID_RECURRENCE


class PayloadTooLarge(ValidationError):
    """The payload or headers exceed the configured size."""

    reason = RejectReason.PAYLOAD_TOO_LARGE


class InvalidHeaders(ValidationError):
    """A header name is not a string or a value is not bytes/str/None, or it is one of the control headers."""


class DeliveryError(SchedulerError):
    """The broker refused or lost a produced command."""


class CodecError(SchedulerError, ValueError):
    """A value cannot be expressed in, or read from, the wire format."""


class CorruptStateRecord(CodecError):
    """A record on the state topic does not decode; replaying past it would lose a schedule."""


class TopicConfigError(SchedulerError):
    """A topic is configured so that schedules could be lost or resurrected."""


class ClusterUnreachable(SchedulerError):
    """The cluster did not answer within the timeout (brokers down, a wrong address, TLS or SASL refused)."""


class KafkaFatalError(SchedulerError):
    """A Kafka client hit a fatal error; the process must stop firing and exit."""


class LocalBrokerError(SchedulerError):
    """The local development broker could not be started or stopped."""
