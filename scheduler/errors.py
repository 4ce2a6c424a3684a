"""Every error kafka-scheduler raises, in one tree.

SchedulerError
├── ConfigError                 a setting is missing, malformed, or contradicts a forced one
├── ValidationError             the client refused a command before sending it
│   ├── InvalidScheduleId
│   ├── InvalidTopic
│   ├── InvalidDeliverAt        naive datetime, both/neither of at and delay, beyond the horizon
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

__all__ = [
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
    "SchedulerError",
    "TopicConfigError",
    "ValidationError",
]


class SchedulerError(Exception):
    """Root of every error this package raises."""


class ConfigError(SchedulerError):
    """A setting is missing, malformed, or contradicts a forced one."""


class ValidationError(SchedulerError, ValueError):
    """A command was refused before anything was sent."""


class InvalidScheduleId(ValidationError):
    """The schedule id is empty or longer than 255 UTF-8 bytes."""


class InvalidTopic(ValidationError):
    """The target topic name is not a legal Kafka topic name, or is forbidden."""


class InvalidDeliverAt(ValidationError):
    """The due time is naive, ambiguous, negative or beyond the horizon."""


class PayloadTooLarge(ValidationError):
    """The payload or headers exceed the configured size."""


class InvalidHeaders(ValidationError):
    """A header name is not a string or a value is not bytes/str/None."""


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
