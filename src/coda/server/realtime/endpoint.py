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

from fastapi import APIRouter, WebSocket

from coda.core.models import new_id
from coda.server import errors, logs
from coda.server.admission import admit, conversation_of, counted, reported
from coda.server.frames import Closed
from coda.server.link import Link
from coda.server.realtime.session import RealtimeSession
from coda.server.realtime.settings import RealtimeError

log = logging.getLogger(__name__)
router = APIRouter()


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
            await conversation_of(socket, admitted, conversation_id)
            link = Link(
                socket, socket.app.state.settings, socket.app.state.settings.max_event_bytes
            )
            session = RealtimeSession(
                voice.engine, conversation_id, admitted.speaker, link.send, beta,
                socket.app.state.metrics, link.pace,
            )  # fmt: skip
            await session.start()
            log.info("realtime session %s opened", session.id)
            while True:
                text = await link.receive()
                if isinstance(text, bytes):
                    raise Closed(errors.BAD_DATA, "Realtime events are JSON text messages")
                try:
                    event = json.loads(text)
                except (ValueError, RecursionError):  # not JSON, or nested too deep
                    await session.refuse(RealtimeError("events are JSON", "invalid_json"), None)
                    continue
                await session.handle(event)
    finally:
        if session is not None:
            await session.close()
