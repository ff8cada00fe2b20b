"""The live websocket: microphone PCM in, the session's events and reply audio out.

One ``DuplexSession`` per socket. The client reports how many reply samples it
has played; the server hands exactly those samples to the session, which uses
them as the echo canceller's reference and to know what was heard at a barge-in.
Until a client reports playback, its audio is taken as played at real-time pace
from when it was sent (``coda.streaming.playout``), so a client that never
reports still gets its turns stored whole. A bad frame, an oversized message or
a limit (``coda.server.link``) closes only this socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

import numpy as np
from fastapi import APIRouter, WebSocket

from coda.audio.frames import SampleQueue, pcm16
from coda.core.models import VoiceProcessingMode
from coda.providers.s2s.moshi_live import MoshiLiveBridge
from coda.server import errors, logs, moshi_stream
from coda.server.admission import admit, conversation_of, counted, reported
from coda.server.frames import Closed
from coda.server.link import Link
from coda.server.protocol import message_of
from coda.streaming.duplex import DuplexSession
from coda.streaming.playout import Playout
from coda.turn.events import (
    Interrupted,
    ReplyDiscarded,
    SpeechEnded,
    SpokenPiece,
    TurnFailed,
    TurnOutcome,
)

log = logging.getLogger(__name__)
router = APIRouter()


@router.websocket("/v1/conversations/{conversation_id}/stream")
async def stream(socket: WebSocket, conversation_id: str) -> None:
    """A full-duplex conversation; the protocol is in the API description."""
    settings = socket.app.state.settings
    # Accept first: a browser then sees the close code and reason, not a bare 403.
    await socket.accept()
    try:
        admitted = await admit(socket, conversation_id)
        rate, mode = _parameters(socket)
    except Closed as closed:
        await socket.close(closed.code, closed.reason)
        return
    voice = socket.app.state.voice
    logs.conversation_id.set(conversation_id)
    session: DuplexSession | None = None
    bridge: MoshiLiveBridge | None = None
    playout: Playout | None = None
    try:
        async with reported(socket, conversation_id), counted(socket, admitted, conversation_id):
            log.info("session opened at %d Hz", rate)
            link = Link(socket, settings, settings.max_frame_bytes)
            if mode is VoiceProcessingMode.MOSHI_ONLY:
                bridge = await moshi_stream.open_bridge(
                    voice.config.moshi, voice.engine.built.moshi_pool, rate
                )
                await _ready(link, conversation_id, rate, moshi_stream.OUTPUT_RATE)
                await race(
                    moshi_stream.read(link, bridge, rate),
                    moshi_stream.write(link, bridge),
                    settings.max_session_seconds,
                )
                return
            await conversation_of(socket, admitted, conversation_id)
            session = DuplexSession(
                voice.engine, conversation_id, rate, mode, speaker=admitted.speaker
            )
            output_rate = voice.config.audio.sample_rate
            await _ready(link, conversation_id, rate, output_rate)
            playout = Playout(session, output_rate, SampleQueue())
            await race(
                _read(link, session, playout, rate),
                _write(link, session, playout),
                settings.max_session_seconds,
            )
    finally:
        if playout is not None:
            await playout.close()
        if session is not None:
            await session.close()
        if bridge is not None:
            await bridge.close()


def _parameters(socket: WebSocket) -> tuple[int, VoiceProcessingMode | None]:
    """The socket's ``rate`` and ``mode``.

    Raises:
        Closed: 1008 if either is malformed, or the rate not one the front end takes.
    """
    rates = socket.app.state.voice.config.audio.input_sample_rates
    try:
        rate = int(socket.query_params.get("rate", "16000"))
        mode_name = socket.query_params.get("mode")
        mode = VoiceProcessingMode(mode_name) if mode_name else None
    except ValueError:
        raise Closed(errors.POLICY, "rate must be an integer and mode a processing mode") from None
    if rate not in rates:
        raise Closed(errors.POLICY, f"rate must be one of {', '.join(map(str, rates))} Hz")
    return rate, mode


async def _ready(link: Link, conversation_id: str, rate: int, output_rate: int) -> None:
    await link.send_json(
        {
            "type": "ready",
            "conversation_id": conversation_id,
            "input_rate": rate,
            "output_rate": output_rate,
        }
    )


async def race(
    reading: Coroutine[Any, Any, None], writing: Coroutine[Any, Any, None], max_seconds: float
) -> None:
    """Run the reader and the writer until one ends (or the session's time is up)."""
    reader, writer = asyncio.create_task(reading), asyncio.create_task(writing)
    try:
        done, _ = await asyncio.wait(
            {reader, writer}, timeout=max_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            raise Closed(errors.POLICY, f"session over {max_seconds:g} s")
        for task in done:
            task.result()  # re-raise Closed / disconnects
    finally:
        for task in (reader, writer):
            task.cancel()
        for task in (reader, writer):
            with contextlib.suppress(BaseException):
                await task


async def _read(link: Link, session: DuplexSession, playout: Playout, rate: int) -> None:
    while True:
        frame = await link.audio_or_command(rate)
        if isinstance(frame, np.ndarray):
            await session.feed(frame)
        elif frame["type"] == "played":
            count = frame.get("samples")
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise Closed(errors.BAD_DATA, "played.samples must be a non-negative integer")
            playout.stop()  # the client says what it played: no more assuming
            session.played(playout.queued.take(count))
        elif frame["type"] == "end":
            raise Closed(1000, "ended by the client")
        else:
            raise Closed(errors.BAD_DATA, f"unknown message type {frame['type']!r}")


async def _write(link: Link, session: DuplexSession, playout: Playout) -> None:
    metrics = link.socket.app.state.metrics
    endpointing: float | None = None
    seq = 0
    while True:
        event = await session.events.get()
        message = message_of(event, seq)
        if message is None:
            continue
        await link.send_json(message)
        if isinstance(event, SpokenPiece):
            await link.send(pcm16(event.audio.samples))
            playout.push(event.audio.samples)
            seq += 1
        elif isinstance(event, SpeechEnded):
            endpointing = event.endpointing_ms
        elif isinstance(event, Interrupted):
            playout.clear()
        elif isinstance(event, TurnOutcome):
            metrics.record_turn(event.mode.value, event.metadata, endpointing)
        elif isinstance(event, TurnFailed):
            metrics.errors.labels(event.error).inc()
        elif isinstance(event, ReplyDiscarded):
            metrics.record_discarded(event.wasted_ms)
