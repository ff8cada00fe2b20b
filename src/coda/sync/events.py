"""Sync events and their ordered delivery to handlers.

Events go to handlers in the order they occur, with a sequence number that grows
by one per event of the dispatcher. A handler that raises is logged and counted,
never propagated. An event raised while another is being delivered (by a handler
that syncs, or by a concurrent sync) is delivered by the coroutine already
delivering, after the events before it.

Over a shared store, each event of this instance is also handed to a ``relay``
that tells the other instances, and the events they relay arrive through
``receive``: a handler registered on any instance sees every instance's events.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from coda.core.errors import SyncError
from coda.core.models import SyncEventType

log = logging.getLogger(__name__)

Handler = Callable[["SyncEvent"], Any]
Relay = Callable[["SyncEvent"], Awaitable[None]]


@dataclass(frozen=True)
class SyncEvent:
    """One sync event, as handlers receive it.

    Attributes:
        instance: The Coda instance it happened on, if another one (None: here).
    """

    event_type: SyncEventType
    conversation_id: str
    payload: dict[str, Any]
    timestamp: float
    sequence: int
    instance: str | None = None


class EventDispatcher:
    """Numbers sync events and delivers them, in order, to the registered handlers.

    Attributes:
        emitted: How many events were emitted (the last event's sequence number).
        handler_errors: How many handler calls raised.
        last_handler_error: The latest handler failure, as "handler: Error: message".
    """

    def __init__(self) -> None:
        self._handlers: dict[SyncEventType, list[Handler]] = {}
        self._events: deque[SyncEvent] = deque()
        self._delivering = False
        self.emitted = 0
        self.handler_errors = 0
        self.last_handler_error: str | None = None
        self.relay: Relay | None = None
        """Tells other instances of each event of this one (set over a shared store)."""

    def add_handler(self, event_type: SyncEventType, handler: Callable[..., Any]) -> None:
        """Register a handler (a function or a coroutine function) for an event type.

        Raises:
            SyncError: If the event type is unknown or the handler is not callable.
        """
        try:
            kind = SyncEventType(event_type)
        except ValueError as exc:
            raise SyncError(f"unknown sync event type {event_type!r}") from exc
        if not callable(handler):
            raise SyncError(f"event handler must be callable, got {handler!r}")
        self._handlers.setdefault(kind, []).append(handler)

    def remove_handler(self, event_type: SyncEventType, handler: Callable[..., Any]) -> None:
        """Unregister a handler (nothing happens if it is not registered)."""
        handlers = self._handlers.get(SyncEventType(event_type), [])
        if handler in handlers:
            handlers.remove(handler)

    def emit(self, event_type: SyncEventType, conversation_id: str, **payload: Any) -> None:
        """Number an event and queue it for delivery (call ``deliver`` afterwards)."""
        self.emitted += 1
        payload["conversation_id"] = conversation_id
        self._events.append(
            SyncEvent(event_type, conversation_id, payload, time.time(), self.emitted)
        )

    async def receive(self, event: SyncEvent) -> None:
        """Deliver an event another instance relayed, numbered here."""
        self.emitted += 1
        self._events.append(replace(event, sequence=self.emitted))
        await self.deliver()

    async def deliver(self) -> None:
        """Deliver queued events in order, unless a delivery is already under way."""
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._events:
                event = self._events.popleft()
                for handler in list(self._handlers.get(event.event_type, ())):
                    await self._call_handler(handler, event)
                if self.relay is not None and event.instance is None:
                    await self._relay(self.relay, event)
        finally:
            self._delivering = False

    async def _relay(self, relay: Relay, event: SyncEvent) -> None:
        try:
            await relay(event)
        except Exception:  # noqa: BLE001 - other instances miss it; this one goes on
            log.exception("relaying sync event %s failed", event.event_type.value)

    async def _call_handler(self, handler: Handler, event: SyncEvent) -> None:
        name = getattr(handler, "__qualname__", repr(handler))
        try:
            result = handler(event)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # noqa: BLE001 - a handler never breaks the sync
            self.handler_errors += 1
            self.last_handler_error = f"{name}: {type(exc).__name__}: {exc}"
            log.exception("sync event handler %s failed on %s", name, event.event_type.value)
