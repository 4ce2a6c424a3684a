"""Handler registration: a plain or async function per topic, an optional deserializer and retry policy, and the
middleware every call goes through.

A middleware is `fn(message, call_next)`: it runs on the worker thread around the handler (also around an async
one: `call_next` returns when the coroutine is done, and contextvars set before it are visible inside), may change
the message it passes on, and sees what the handler raises. Whatever it raises decides the record's fate.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from consumers.message import Message
from consumers.retry import RetryPolicy

__all__ = ["DeserializationError", "Handler", "HandlerFn", "Hook", "Middleware", "run_hook"]

HandlerFn = Callable[[Message], Any]
Deserializer = Callable[[bytes | None], object]
Next = Callable[[Message], None]
Middleware = Callable[[Message, Next], None]
Hook = Callable[[], Any]  # a startup or shutdown hook: plain, or async (run on the handlers' event loop)
RunAsync = Callable[[Coroutine[Any, Any, object]], object]


class DeserializationError(Exception):
    """The value could not be decoded; the record is dead-lettered at once (reason deserialization_error)."""


@dataclass(frozen=True, slots=True)
class Handler:
    topic: str
    fn: HandlerFn
    deserializer: Deserializer | None = None
    retry: RetryPolicy | None = None  # None: the App's
    middleware: tuple[Middleware, ...] = ()

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def invoke(self, message: Message, run_async: RunAsync) -> None:
        """The middleware chain (first registered outermost), then the handler."""

        def innermost(msg: Message) -> None:
            if self.is_async:
                run_async(self.fn(msg))
            else:
                self.fn(msg)

        call: Next = innermost
        for middleware in reversed(self.middleware):
            call = _link(middleware, call)
        call(message)


def _link(middleware: Middleware, call_next: Next) -> Next:
    def call(message: Message) -> None:
        middleware(message, call_next)

    return call


def run_hook(hook: Hook, run_async: RunAsync) -> None:
    """A startup or shutdown hook: called, or for an async one run to completion on the handlers' loop."""
    if inspect.iscoroutinefunction(hook):
        run_async(hook())
    else:
        hook()
