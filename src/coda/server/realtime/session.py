"""One Realtime session: the client's events, the turns they start, and the events back.

Every turn goes through Coda's turn pipeline, with memory, personality and
tools. With server VAD (the default) the live session (``vad``) hears the
appended audio and answers each turn by itself; with ``turn_detection: null``
the client commits the buffer, or creates a text item, and asks for the
response. A client tool the model chooses goes out as a function-call item; its
output (``function_call_output``) and ``response.create`` answer the same words
with it. A refused event gets an ``error`` event naming it; the session goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import numpy as np

from coda.audio.frames import to_float
from coda.core.errors import VoiceProcessingError
from coda.core.models import VoiceMessage, new_id
from coda.server.link import AudioPace
from coda.server.metrics import Metrics
from coda.server.realtime import items
from coda.server.realtime.inputs import Pending, message_content, pcm_of, tool_result
from coda.server.realtime.items import Item, Items
from coda.server.realtime.output import BETA_NAMES, ResponseStream
from coda.server.realtime.settings import RATE, RealtimeError, SessionSettings
from coda.server.realtime.vad import VadBridge
from coda.streaming.duplex import DuplexSession
from coda.turn.context import INTEGRATIONS, TurnOptions
from coda.turn.events import (
    FunctionCallRequested,
    SpokenPiece,
    TextDelta,
    Transcribed,
    TurnOutcome,
)
from coda.voice.engine import VoiceEngine

log = logging.getLogger(__name__)

FRAME = RATE // 50
"""Appended audio goes to the live session 20 ms at a time."""
MAX_CALLS = 64


class RealtimeSession:
    """A client's Realtime session over one conversation.

    Args:
        engine: The initialized engine.
        conversation_id: The conversation the turns are stored in.
        speaker: Whose memories and personality apply.
        write: Sends one JSON text message to the client.
        beta: Name the events as the beta API did.
        metrics: Where the server counts turns and their stage latencies.
        pace: How fast the client may send audio (None: as fast as it likes).
    """

    def __init__(
        self,
        engine: VoiceEngine,
        conversation_id: str,
        speaker: str,
        write: Callable[[str], Awaitable[None]],
        beta: bool = False,
        metrics: Metrics | None = None,
        pace: AudioPace | None = None,
    ) -> None:
        self.engine = engine
        self.conversation_id = conversation_id
        self.speaker = speaker
        self.write = write
        self.beta = beta
        self.metrics = metrics
        self.pace = pace
        self.id = new_id("sess")
        self.settings = SessionSettings()
        self.items = Items()
        self.vad: VadBridge | None = None
        self.response: ResponseStream | None = None
        self._task: asyncio.Task[None] | None = None
        self._buffer = bytearray()
        self._pending: Pending | None = None
        self._calls: OrderedDict[str, tuple[str, str]] = OrderedDict()  # call → (tool, words)
        self._sending = asyncio.Lock()
        tools = engine.integrations.tools
        self._reserved = (
            frozenset(t.name for t in tools.tools_manager.tools) if tools else frozenset()
        )

    # -- sending ---------------------------------------------------------------------------

    async def emit(self, event: dict[str, Any]) -> None:
        """Send a server event, with its ``event_id`` (and its beta name, for beta clients).

        An item added to the conversation is announced as ``conversation.item.added``
        and, as the GA API still names it too, ``conversation.item.created``.
        """
        kinds = [event["type"]]
        if self.beta:
            kinds = [BETA_NAMES.get(kinds[0], kinds[0])]
        elif kinds[0] == "conversation.item.added":
            kinds.append("conversation.item.created")
        async with self._sending:
            for kind in kinds:
                await self.write(json.dumps({"event_id": new_id("event"), **event, "type": kind}))

    async def refuse(self, error: RealtimeError, event_id: str | None) -> None:
        """An ``error`` event for a client event Coda refused."""
        await self.emit({"type": "error", "error": {
            "type": "invalid_request_error", "code": error.code, "message": error.message,
            "param": error.param, "event_id": event_id}})  # fmt: skip

    async def begin_response(self) -> ResponseStream:
        """A new response, announced.

        Raises:
            RealtimeError: While another response is in progress.
        """
        if self.response is not None:
            raise RealtimeError(
                "a response is in progress; cancel it first",
                "conversation_already_has_active_response",
            )
        modality = self.settings.output_modalities[0]
        self.response = ResponseStream(
            self.emit, self.items, modality, self.engine.config.audio.sample_rate
        )
        await self.response.created()
        return self.response

    def end_response(self, stream: ResponseStream) -> None:
        """The response is over: another may begin."""
        if self.response is stream:
            self.response = None

    def record(self, outcome: TurnOutcome, endpointing_ms: float | None = None) -> None:
        """Count a finished turn in the server's metrics."""
        if self.metrics is not None:
            self.metrics.record_turn(outcome.mode.value, outcome.metadata, endpointing_ms)

    def hold(self, item_id: str, words: str) -> None:
        """A turn's words, heard and not answered yet: the next ``response.create`` does."""
        self._pending = Pending(item_id, text=words)

    def remember_call(self, call: FunctionCallRequested, words: str) -> None:
        """A client tool call, and the words its output will answer."""
        self._calls[call.call_id] = (call.name, words)
        while len(self._calls) > MAX_CALLS:
            self._calls.popitem(last=False)

    # -- the session -----------------------------------------------------------------------

    async def start(self) -> None:
        """``session.created``, and the live session of the default server VAD."""
        await self._listen()
        await self.emit({"type": "session.created", "session": self._described()})

    def _described(self) -> dict[str, Any]:
        return self.settings.as_json(self.id, f"whisper-{self.engine.config.stt.model}")

    def options(self, context: str | None = None, tools: bool = True) -> TurnOptions:
        """How this session's turns are answered: its instructions, caps and tools."""
        settings = self.settings
        system = "\n\n".join(c for c in (settings.instructions, context) if c) or None
        offer = tools and settings.tool_choice == "auto"
        return TurnOptions(
            system_context=system,
            max_tokens=settings.max_output_tokens,
            integrations=None if offer else frozenset(INTEGRATIONS) - {"tools"},
            client_tools=settings.tools if offer else (),
        )

    async def _listen(self) -> None:
        """Open (or close) the live session as ``turn_detection`` says."""
        if self.vad is not None:
            vad, self.vad = self.vad, None
            await vad.close()
        detection = self.settings.turn_detection
        if detection is None:
            return
        config = self.engine.config
        audio = replace(
            config.audio,
            vad_threshold=detection.threshold,
            pre_roll_ms=detection.prefix_padding_ms,
            vad_end_offset=min(config.audio.vad_end_offset, detection.threshold / 2),
        )
        streaming = replace(
            config.streaming,
            end_silence_unsure_ms=detection.silence_duration_ms,
            preemptive_reply=config.streaming.preemptive_reply and detection.create_response,
        )
        live = DuplexSession(self.engine, self.conversation_id, RATE, speaker=self.speaker,
                             options=self.options(), audio=audio, streaming=streaming)  # fmt: skip
        live.answers, live.interruptible = detection.create_response, detection.interrupt_response
        self.vad = VadBridge(live, self, config.audio.sample_rate)

    async def close(self) -> None:
        """Stop the response under way and the live session."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self.vad is not None:
            await self.vad.close()

    # -- client events ---------------------------------------------------------------------

    async def handle(self, event: Any) -> None:
        """Act on one client event; a refused one gets an ``error`` event."""
        event_id = event.get("event_id") if isinstance(event, dict) else None
        try:
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                raise RealtimeError("an event is a JSON object with a type", "invalid_event")
            handler = getattr(self, "_" + event["type"].replace(".", "_"), None)
            if handler is None:
                raise RealtimeError(
                    f"unknown event type {event['type']!r}", "unknown_event_type", "type"
                )
            await handler(event)
        except RealtimeError as error:
            await self.refuse(error, event_id if isinstance(event_id, str) else None)

    async def _session_update(self, event: dict[str, Any]) -> None:
        session = event.get("session")
        if not isinstance(session, dict):
            raise RealtimeError("session.update needs a session object", param="session")
        before = self.settings.turn_detection
        self.settings = self.settings.updated(session, self._reserved)
        if self.settings.turn_detection != before:
            await self._listen()
        elif self.vad is not None:
            self.vad.session.options = self.options()
        await self.emit({"type": "session.updated", "session": self._described()})

    async def _input_audio_buffer_append(self, event: dict[str, Any]) -> None:
        pcm = pcm_of(event.get("audio"), "audio")
        if self.pace is not None:
            await self.pace.take(len(pcm) / 2 / RATE)
        if self.vad is not None:
            samples = to_float(np.frombuffer(pcm, "<i2"))
            for start in range(0, len(samples), FRAME):
                await self.vad.feed(samples[start : start + FRAME])
            return
        limit = self.engine.config.audio.max_audio_length_seconds
        if len(self._buffer) + len(pcm) > limit * RATE * 2:
            raise RealtimeError(
                f"the input audio buffer holds at most {limit:g} s: commit or clear it",
                "input_audio_buffer_full",
            )
        self._buffer.extend(pcm)

    async def _input_audio_buffer_commit(self, event: dict[str, Any]) -> None:
        if self.vad is not None:
            raise RealtimeError(
                "with server_vad the server commits the audio; set turn_detection null to "
                "commit yourself", "commit_with_server_vad",
            )  # fmt: skip
        if len(self._buffer) < RATE * 2 // 10:
            raise RealtimeError(
                "the input audio buffer holds less than 100 ms of audio",
                "input_audio_buffer_commit_empty",
            )
        item = Item(items.user_audio(new_id("item")))
        self._pending = Pending(item.id, pcm=bytes(self._buffer))
        self._buffer.clear()
        previous = self.items.add(item)
        await self.emit({"type": "input_audio_buffer.committed", "item_id": item.id,
                         "previous_item_id": previous})  # fmt: skip
        await self.emit({"type": "conversation.item.added", "item": item.body,
                         "previous_item_id": previous})  # fmt: skip

    async def _input_audio_buffer_clear(self, event: dict[str, Any]) -> None:
        self._buffer.clear()
        await self.emit({"type": "input_audio_buffer.cleared"})

    async def _conversation_item_create(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            raise RealtimeError("conversation.item.create needs an item", param="item")
        given = item.get("id")
        item_id = given if isinstance(given, str) and 0 < len(given) <= 64 else new_id("item")
        if item.get("type") == "function_call_output":
            call = self._calls.get(str(item.get("call_id")))
            if call is None:
                raise RealtimeError("no call of this session has that call_id", param="call_id")
            output = item.get("output")
            if not isinstance(output, str):
                raise RealtimeError("a function_call_output's output is a string", param="output")
            body = {
                "id": item_id,
                "object": "realtime.item",
                "type": "function_call_output",
                "call_id": item["call_id"],
                "output": output,
                "status": "completed",
            }
            name, words = call
            self._pending = Pending(item_id, text=words, context=tool_result(name, output))
        elif item.get("type") == "message" and item.get("role") in ("user", "system"):
            text, pcm = message_content(item.get("content"))
            body = items.user_text(item_id, text) if text else items.user_audio(item_id)
            if item["role"] == "system":
                body["role"] = "system"
                self.settings = replace(
                    self.settings, instructions=f"{self.settings.instructions}\n{text}".strip()
                )
            else:
                self._pending = Pending(item_id, text=text or None, pcm=pcm)
        else:
            raise RealtimeError(
                "items are user or system messages, or function_call_output", param="item.type"
            )
        previous = self.items.add(Item(body))
        await self.emit({"type": "conversation.item.added", "item": body,
                         "previous_item_id": previous})  # fmt: skip
        await self.emit({"type": "conversation.item.done", "item": body,
                         "previous_item_id": previous})  # fmt: skip

    async def _conversation_item_truncate(self, event: dict[str, Any]) -> None:
        item = self._item(event)
        end = event.get("audio_end_ms")
        if item.body.get("role") != "assistant" or not isinstance(end, int) or end < 0:
            raise RealtimeError(
                "truncate an assistant's audio at audio_end_ms >= 0", param="item_id"
            )
        item.truncate(end)
        await self.emit({"type": "conversation.item.truncated", "item_id": item.id,
                         "content_index": 0, "audio_end_ms": end})  # fmt: skip

    async def _conversation_item_delete(self, event: dict[str, Any]) -> None:
        item = self._item(event)
        self.items.delete(item.id)
        await self.emit({"type": "conversation.item.deleted", "item_id": item.id})

    async def _conversation_item_retrieve(self, event: dict[str, Any]) -> None:
        await self.emit({"type": "conversation.item.retrieved", "item": self._item(event).body})

    def _item(self, event: dict[str, Any]) -> Item:
        item = self.items.get(str(event.get("item_id")))
        if item is None:
            raise RealtimeError("no item of this session has that item_id", "item_not_found",
                                "item_id")  # fmt: skip
        return item

    async def _response_create(self, event: dict[str, Any]) -> None:
        pending = self._pending
        if pending is None:
            raise RealtimeError(
                "nothing to answer: commit audio or create a user item first", "no_input"
            )
        stream = await self.begin_response()
        self._pending = None
        self._task = asyncio.create_task(self._respond(stream, pending))

    async def _response_cancel(self, event: dict[str, Any]) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        elif self.vad is None or not await self.vad.cancel():
            raise RealtimeError("no response is in progress", "response_cancel_not_active")

    async def _respond(self, stream: ResponseStream, pending: Pending) -> None:
        """A response the client asked for, through the pipeline."""
        message = VoiceMessage(
            self.conversation_id, pending.pcm, text_content=pending.text, speaker=self.speaker,
            message_id=pending.item_id, format="pcm_s16le" if pending.pcm else None,
            sample_rate=RATE if pending.pcm else None, channels=1 if pending.pcm else None,
        )  # fmt: skip
        options = self.options(pending.context, tools=pending.context is None)
        pipeline = self.engine.require_ready()
        try:
            async for event in pipeline.message(message, None, options, streamed=True):
                if isinstance(event, Transcribed) and pending.pcm:
                    await self._transcribed(pending.item_id, event.text)
                elif isinstance(event, TextDelta):
                    await stream.text(event.text)
                elif isinstance(event, SpokenPiece):
                    await stream.spoken(event.text, event.audio.samples)
                elif isinstance(event, FunctionCallRequested):
                    self.remember_call(event, pending.text or "")
                    await stream.function_call(event)
                elif isinstance(event, TurnOutcome):
                    self.record(event)
                    await stream.finish("completed")
            await stream.finish("failed", "no_reply")  # (a no-op once finished)
        except asyncio.CancelledError:
            await stream.finish("cancelled", "client_cancelled")
        except VoiceProcessingError as error:
            log.info("a realtime response failed: %s", error)
            await stream.finish("failed", type(error).__name__)
        finally:
            self.end_response(stream)

    async def _transcribed(self, item_id: str, text: str) -> None:
        item = self.items.get(item_id)
        if item is not None:
            item.body["content"][0]["transcript"] = text
        await self.emit(
            {"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id,
             "content_index": 0, "transcript": text}
        )  # fmt: skip
