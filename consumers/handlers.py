"""Handler registration: a plain or async function per topic, with an optional value deserializer."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from consumers.message import Message

__all__ = ["DeserializationError", "Handler", "HandlerFn"]

HandlerFn = Callable[[Message], Any]
Deserializer = Callable[[bytes | None], object]


class DeserializationError(Exception):
    """The value could not be decoded; the record is dead-lettered at once (reason deserialization_error)."""


@dataclass(frozen=True, slots=True)
class Handler:
    topic: str
    fn: HandlerFn
    deserializer: Deserializer | None = None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def call_sync(self, message: Message) -> None:
        self.fn(message)

    def call_async(self, message: Message) -> Awaitable[object]:
        result: Awaitable[object] = self.fn(message)
        return result
