"""``/v1/realtime``: the OpenAI Realtime API's websocket, served by Coda.

The official ``openai`` SDK connects with ``websocket_base_url=ws://HOST:PORT/v1``
and ``Authorization: Bearer <a Coda API key>`` (``X-API-Key`` and ``?api_key=`` work
too). ``?model=`` is accepted and ignored (Coda's models are its own);
``?conversation_id=`` continues a stored conversation (default: a new one),
``?user=`` names the speaker behind the key. The key's rate limit and the
session limits of Coda's own websocket apply. ``docs/realtime.md`` lists every
event and what is not supported.
"""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from coda.core.models import new_id
from coda.server import errors, logs
from coda.server.admission import admit, counted, reported
from coda.server.frames import Closed
from coda.server.realtime.session import RealtimeSession
from coda.server.realtime.settings import RealtimeError

log = logging.getLogger(__name__)
router = APIRouter()
MAX_EVENT_BYTES = 1 << 20
"""Largest client event (about 20 s of 24 kHz PCM16 in base64)."""


@router.websocket("/v1/realtime")
async def realtime(socket: WebSocket) -> None:
    """A Realtime session over one conversation, until the client leaves."""
    await socket.accept()
    conversation_id = socket.query_params.get("conversation_id") or new_id("rt")
    try:
        admitted = await admit(socket, conversation_id)
    except Closed as closed:
        await socket.close(closed.code, closed.reason)
        return
    logs.conversation_id.set(conversation_id)
    voice = socket.app.state.voice
    beta = "realtime=v1" in socket.headers.get("openai-beta", "")
    session: RealtimeSession | None = None
    try:
        async with reported(socket, conversation_id), counted(socket, admitted, conversation_id):
            if await voice.get_conversation_state(conversation_id) is None:
                await voice.start_conversation(conversation_id)
            session = RealtimeSession(
                voice.engine, conversation_id, admitted.speaker, socket.send_text, beta,
                socket.app.state.metrics,
            )  # fmt: skip
            await session.start()
            log.info("realtime session %s opened", session.id)
            while True:
                text = await _receive(socket)
                try:
                    event = json.loads(text)
                except ValueError:
                    await session.refuse(RealtimeError("events are JSON", "invalid_json"), None)
                    continue
                await session.handle(event)
    finally:
        if session is not None:
            await session.close()


async def _receive(socket: WebSocket) -> str:
    """The next client event's text.

    Raises:
        Closed: For a binary message, or one over ``MAX_EVENT_BYTES``.
        WebSocketDisconnect: When the client has gone.
    """
    message = await socket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        raise Closed(errors.BAD_DATA, "Realtime events are JSON text messages")
    if len(text) > MAX_EVENT_BYTES:
        raise Closed(errors.TOO_BIG, f"an event is at most {MAX_EVENT_BYTES} bytes")
    return str(text)
