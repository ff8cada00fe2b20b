"""Server VAD: the live session hears the appended audio, ends the user's turns and answers.

The same ``DuplexSession`` as Coda's own websocket does the work (echo
cancellation, voice activity, turn-taking from the words, barge-in); this module
only says what it does in the Realtime API's events. The client plays Coda's
audio as it arrives, so it is taken as played at real-time pace from then on:
that is the echo canceller's reference, and what a barge-in keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

import numpy as np

from coda.audio.frames import SampleQueue
from coda.core.models import new_id
from coda.server.realtime import items
from coda.server.realtime.items import Item, Items
from coda.server.realtime.output import ResponseStream
from coda.streaming.duplex import DuplexSession
from coda.streaming.playout import Playout
from coda.turn.events import (
    FunctionCallRequested,
    Interrupted,
    SpeechEnded,
    SpeechStarted,
    SpokenPiece,
    TextDelta,
    Transcribed,
    TurnEvent,
    TurnFailed,
    TurnOutcome,
)


class Host(Protocol):
    """What the bridge needs of its Realtime session."""

    items: Items

    async def emit(self, event: dict[str, Any]) -> None:
        """Send a server event."""

    async def begin_response(self) -> ResponseStream:
        """A new response, announced (``response.created``)."""
        ...

    def end_response(self, stream: ResponseStream) -> None:
        """The response is over."""

    def hold(self, item_id: str, words: str) -> None:
        """A turn's words, for a response the client will ask for."""

    def record(self, outcome: TurnOutcome, endpointing_ms: float | None) -> None:
        """Count a finished turn."""

    def remember_call(self, call: FunctionCallRequested, words: str) -> None:
        """A client tool call, and the words it answers."""


class VadBridge:
    """A live session and the Realtime events of what happens in it.

    Args:
        session: The live session (closed by ``close``).
        host: The Realtime session the events go to.
        rate: The rate of Coda's audio, in Hz.
    """

    def __init__(self, session: DuplexSession, host: Host, rate: int) -> None:
        self.session = session
        self.host = host
        self.playout = Playout(session, rate, SampleQueue())
        self.response: ResponseStream | None = None
        self._user: Item | None = None
        self._cancelled = False  # by the client (response.cancel), not by speech
        self._endpointing_ms: float | None = None
        self._pump = asyncio.create_task(self._events())

    async def feed(self, samples: np.ndarray) -> None:
        """Captured audio (float32 at the session's input rate)."""
        await self.session.feed(samples)

    async def cancel(self) -> bool:
        """Stop the reply being made or played; False if there was none."""
        self._cancelled = True
        return await self.session.cancel_reply()

    async def close(self) -> None:
        """Stop listening; a reply being played is stored with what was heard."""
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        await self.playout.close()
        await self.session.close()
        with contextlib.suppress(Exception):  # the client may be gone already
            await self._end("cancelled", "session_changed")

    async def _events(self) -> None:
        while True:
            await self._event(await self.session.events.get())

    async def _event(self, event: TurnEvent) -> None:
        host = self.host
        if isinstance(event, SpeechStarted):
            self._user = Item(items.user_audio(new_id("item")))
            await host.emit({"type": "input_audio_buffer.speech_started", "item_id": self._user.id,
                             "audio_start_ms": round(event.at_seconds * 1000)})  # fmt: skip
        elif isinstance(event, SpeechEnded) and self._user is not None:
            self._endpointing_ms = event.endpointing_ms
            user = self._user
            await host.emit({"type": "input_audio_buffer.speech_stopped", "item_id": user.id,
                             "audio_end_ms": round(event.at_seconds * 1000)})  # fmt: skip
            previous = host.items.add(user)
            await host.emit({"type": "input_audio_buffer.committed", "item_id": user.id,
                             "previous_item_id": previous})  # fmt: skip
            await host.emit({"type": "conversation.item.added", "item": user.body,
                             "previous_item_id": previous})  # fmt: skip
        elif isinstance(event, Transcribed) and self._user is not None:
            await self._transcribed(self._user, event.text)
        elif isinstance(event, TextDelta | SpokenPiece | FunctionCallRequested | TurnOutcome):
            await self._reply(event)
        elif isinstance(event, Interrupted) and self.response is not None:
            self.playout.clear()
            await self._truncated(self.response, round(event.played_seconds * 1000))
        elif isinstance(event, TurnFailed):
            if self.response is not None:
                await self._end("failed", event.error)
            else:
                await host.emit({"type": "error", "error": {"type": "server_error",
                                 "code": "turn_failed", "message": event.message}})  # fmt: skip

    async def _transcribed(self, user: Item, text: str) -> None:
        user.body["content"][0]["transcript"] = text
        if not self.session.answers:  # create_response off: held before the client hears
            self.host.hold(user.id, text)  # of it, so its response.create finds them
        await self.host.emit(
            {"type": "conversation.item.input_audio_transcription.completed", "item_id": user.id,
             "content_index": 0, "transcript": text}
        )  # fmt: skip
        await self.host.emit({"type": "conversation.item.done", "item": user.body})

    async def _reply(self, event: TurnEvent) -> None:
        if self.response is None:
            self.response = await self.host.begin_response()
        response = self.response
        if isinstance(event, TextDelta):
            await response.text(event.text)
        elif isinstance(event, SpokenPiece):
            await response.spoken(event.text, event.audio.samples)
            self.playout.push(event.audio.samples)
        elif isinstance(event, FunctionCallRequested):
            user = self._user
            transcript = user.body["content"][0]["transcript"] if user is not None else ""
            self.host.remember_call(event, transcript or "")
            await response.function_call(event)
            self._forget(response)
        else:
            assert isinstance(event, TurnOutcome)
            self.host.record(event, self._endpointing_ms)
            await self._end("completed")

    async def _truncated(self, response: ResponseStream, played_ms: int) -> None:
        item = response.item
        if item is not None and item.body["type"] == "message":
            item.truncate(played_ms)
            await self.host.emit({"type": "conversation.item.truncated", "item_id": item.id,
                                  "content_index": 0, "audio_end_ms": played_ms})  # fmt: skip
        reason = "client_cancelled" if self._cancelled else "turn_detected"
        self._cancelled = False
        await self._end("cancelled", reason)

    async def _end(self, status: str, reason: str | None = None) -> None:
        response = self.response
        if response is not None:
            await response.finish(status, reason)
            self._forget(response)

    def _forget(self, response: ResponseStream) -> None:
        self.response = None
        self.host.end_response(response)
