"""Letting a live websocket in, and counting it while it lasts.

Every live socket (Coda's own ``/stream``, ``/v1/realtime``) passes the same
gate: the key and its rate limit, the speaker's name, the browser's origin, the
conversation id and the models' readiness (``admit``); then this instance's
``max_sessions`` and the key's ``max_sessions_per_key`` on all instances
(``counted``). A refusal is ``Closed`` with its close code and reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import WebSocket, WebSocketDisconnect

from coda.core.ids import is_conversation_id
from coda.server import errors
from coda.server.auth import check, speaker_of
from coda.server.frames import Closed
from coda.server.tenancy import NotFound, owned

log = logging.getLogger(__name__)
CLOSE_SECONDS = 2.0


@dataclass(frozen=True)
class Admitted:
    """Who is on a socket that was let in."""

    identity: str
    """The API key's digest."""
    speaker: str
    """Whose memories and personality the turns use."""


def origin_allowed(socket: WebSocket) -> bool:
    """A browser's origin is allowed (the server's own, or one of ``allowed_origins``)."""
    origin = socket.headers.get("origin")
    if origin is None:
        return True  # not a browser
    if origin.split("://", 1)[-1] == socket.headers.get("host", ""):
        return True  # the server's own page, whatever else is allowed
    allowed = socket.app.state.settings.allowed_origins
    return origin in allowed or "*" in allowed


async def admit(socket: WebSocket, conversation_id: str) -> Admitted:
    """Check the key, the speaker, the origin, the conversation id and readiness.

    Raises:
        Closed: 1008 for what the client got wrong, 1013 for what may pass later.
    """
    identity, status, reason = await check(socket)
    if status:
        raise Closed(errors.TRY_AGAIN if status == 503 else errors.POLICY, reason)
    assert identity is not None
    try:
        speaker = speaker_of(identity, socket.query_params.get("user"))
    except ValueError as bad:
        raise Closed(errors.POLICY, str(bad)) from None
    if not origin_allowed(socket):
        raise Closed(errors.POLICY, "origin not allowed")
    if not is_conversation_id(conversation_id):
        raise Closed(errors.POLICY, "conversation ids are 1-128 of [A-Za-z0-9_.:-]")
    if not socket.app.state.voice.engine.initialized:
        raise Closed(errors.TRY_AGAIN, "the models are still loading")
    return Admitted(identity, speaker)


async def conversation_of(socket: WebSocket, admitted: Admitted, conversation_id: str) -> None:
    """The key's conversation, started as theirs if it is new.

    Raises:
        Closed: 1008 if it is another key's (as if it did not exist).
    """
    try:
        await owned(socket.app.state.voice, conversation_id, admitted.identity, start=True)
    except NotFound:
        raise Closed(errors.POLICY, "conversation not found") from None


@asynccontextmanager
async def reported(socket: WebSocket, conversation_id: str) -> AsyncIterator[None]:
    """Run a socket's session: what ends it reaches the client as a close code, no internals."""
    try:
        yield
    except Closed as closed:
        log.info("closing session %s: %s", conversation_id, closed.reason)
        await _close(socket, closed.code, closed.reason)
    except WebSocketDisconnect:
        pass
    except Exception as error:  # noqa: BLE001 - reported to the client without internals
        log.exception("session %s failed", conversation_id)
        await _close(socket, errors.SERVER_ERROR, errors.public_message(error))


async def _close(socket: WebSocket, code: int, reason: str) -> None:
    """Close, unless the client is gone or stuck (a client that stopped reading)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_SECONDS):  # not wait_for: it may swallow a cancel
            await socket.close(code, reason)


@asynccontextmanager
async def counted(
    socket: WebSocket, admitted: Admitted, conversation_id: str
) -> AsyncIterator[None]:
    """Hold a session slot (here, and of the key everywhere) for the block.

    Raises:
        Closed: 1013 when this instance or the key has no slot free.
    """
    app = socket.app
    settings = app.state.settings
    if app.state.sessions >= settings.max_sessions:
        raise Closed(errors.TRY_AGAIN, "too many sessions; try again later")
    try:
        registered = await app.state.registry.begin(admitted.identity, conversation_id)
    except Exception:  # noqa: BLE001 - an outage of the shared store
        log.exception("live sessions could not be counted")
        raise Closed(errors.TRY_AGAIN, "sessions cannot be counted just now") from None
    if registered is None:
        raise Closed(
            errors.TRY_AGAIN,
            f"this key has {settings.max_sessions_per_key} sessions open; close one first",
        )
    app.state.sessions += 1
    app.state.metrics.active_sessions.inc()
    try:
        yield
    finally:
        app.state.sessions -= 1
        app.state.metrics.active_sessions.dec()
        try:
            await app.state.registry.end(registered)
        except Exception:  # noqa: BLE001 - a gone instance's sessions stop counting anyway
            log.exception("could not unregister session %s", registered)
