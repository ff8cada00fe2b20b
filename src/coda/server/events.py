"""Sync events over a websocket: what happens to a conversation, on whichever instance.

``GET /v1/conversations/{id}/events?api_key=KEY`` streams the conversation's sync
events as JSON: ``{"type": "sync", "event": "voice_message_added", "payload": {...},
"timestamp": ..., "instance": null | "<the instance it happened on>"}``. Over a
shared PostgreSQL store, turns answered by other instances arrive too. A client
that reads too slowly loses the oldest events, and is told how many
(``{"type": "dropped", "count": N}``); nothing grows without bound.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from coda.core.models import SyncEventType
from coda.server import errors
from coda.server.admission import admit
from coda.server.frames import Closed
from coda.server.link import Link
from coda.server.tenancy import NotFound, owned
from coda.sync.events import SyncEvent

router = APIRouter()
QUEUE_EVENTS = 256
"""Events held for a slow reader before the oldest are dropped."""


@router.websocket("/v1/conversations/{conversation_id}/events")
async def events(socket: WebSocket, conversation_id: str) -> None:
    """Stream the conversation's sync events until the client leaves."""
    await socket.accept()
    try:
        admitted = await admit(socket, conversation_id)
        try:
            await owned(socket.app.state.voice, conversation_id, admitted.identity)
        except NotFound:
            raise Closed(errors.POLICY, "conversation not found") from None
        sync = socket.app.state.voice.engine.integrations.sync
        if sync is None:
            raise Closed(errors.POLICY, "conversation sync is switched off (sync)")
    except Closed as closed:
        await socket.close(closed.code, closed.reason)
        return
    queue: asyncio.Queue[SyncEvent] = asyncio.Queue(QUEUE_EVENTS)
    dropped = 0

    def enqueue(event: SyncEvent) -> None:
        nonlocal dropped
        if event.conversation_id != conversation_id:
            return
        if queue.full():
            queue.get_nowait()
            dropped += 1
        queue.put_nowait(event)

    for kind in SyncEventType:
        sync.add_event_handler(kind, enqueue)
    listener = asyncio.create_task(_until_closed(socket))
    link = Link(socket, socket.app.state.settings, 4096)
    try:
        await link.send_json({"type": "ready", "conversation_id": conversation_id})
        while not listener.done():
            getting = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getting, listener}, return_when=asyncio.FIRST_COMPLETED)
            if getting not in done:
                getting.cancel()
                break
            if dropped:
                await link.send_json({"type": "dropped", "count": dropped})
                dropped = 0
            event = getting.result()
            message = {
                "type": "sync",
                "event": event.event_type.value,
                "payload": event.payload,
                "timestamp": event.timestamp,
                "instance": event.instance,
            }
            await link.send_json(message)
    except WebSocketDisconnect:
        pass
    except Closed as closed:
        with contextlib.suppress(Exception):
            await socket.close(closed.code, closed.reason)
    finally:
        for kind in SyncEventType:
            sync.remove_event_handler(kind, enqueue)
        listener.cancel()
        with contextlib.suppress(BaseException):
            await listener


async def _until_closed(socket: WebSocket) -> None:
    """Read (and ignore) until the client goes: how a disconnect is noticed."""
    while (await socket.receive())["type"] != "websocket.disconnect":
        pass
