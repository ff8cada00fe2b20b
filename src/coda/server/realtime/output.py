"""One Realtime response's server events, from ``response.created`` to ``response.done``.

A response holds one output item: Coda's message (audio with its transcript, or
text), or a call of one of the client's tools. Audio goes out as PCM16 at 24 kHz
in base64, each spoken piece with its words as the transcript's delta, so the
transcript always matches the audio sent.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from coda.audio.decode import resample
from coda.audio.frames import pcm16
from coda.core.models import new_id
from coda.server.realtime import items
from coda.server.realtime.items import Item, Items
from coda.server.realtime.settings import RATE
from coda.turn.events import FunctionCallRequested

BETA_NAMES = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "conversation.item.added": "conversation.item.created",
}
"""Server events under the names of the beta API (``OpenAI-Beta: realtime=v1`` clients)."""
Send = Callable[[dict[str, Any]], Awaitable[None]]
"""Sends one server event (the session adds its ``event_id``)."""


class ResponseStream:
    """The events of one response.

    Args:
        send: Where the events go.
        conversation: The session's items (the output item joins them).
        modality: "audio" or "text".
        rate: The rate of the audio Coda speaks, in Hz (sent at 24 kHz).
    """

    def __init__(self, send: Send, conversation: Items, modality: str, rate: int) -> None:
        self.id = new_id("resp")
        self.send = send
        self.conversation = conversation
        self.modality = modality
        self.rate = rate
        self.item: Item | None = None
        self.sent_ms = 0
        self.finished = False

    def _ids(self) -> dict[str, Any]:
        assert self.item is not None
        return {"response_id": self.id, "item_id": self.item.id, "output_index": 0}

    def _response(self, status: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "realtime.response",
            "status": status,
            "status_details": details,
            "output": [self.item.body] if self.item is not None else [],
            "output_modalities": [self.modality],
            "conversation_id": None,
        }

    async def created(self) -> None:
        """``response.created``."""
        await self.send({"type": "response.created", "response": self._response("in_progress")})

    async def _open(self, body: dict[str, Any]) -> Item:
        self.item = Item(body)
        previous = self.conversation.add(self.item)
        await self.send(
            {"type": "response.output_item.added", "response_id": self.id, "output_index": 0,
             "item": body}
        )  # fmt: skip
        await self.send(
            {"type": "conversation.item.added", "item": body, "previous_item_id": previous}
        )
        return self.item

    async def _message(self) -> Item:
        if self.item is None:
            item = await self._open(items.assistant(new_id("item"), self.modality))
            part = item.body["content"][0]
            await self.send(
                {"type": "response.content_part.added", **self._ids(), "content_index": 0,
                 "part": _part(part)}
            )  # fmt: skip
        assert self.item is not None
        return self.item

    async def spoken(self, text: str, samples: np.ndarray) -> None:
        """A spoken piece: its audio and its words (audio modality)."""
        if self.modality != "audio":
            return
        item = await self._message()
        audio = samples if self.rate == RATE else resample(samples, self.rate, RATE)
        self.sent_ms += round(len(audio) * 1000 / RATE)
        part = item.body["content"][0]
        words = f" {text.strip()}" if part["transcript"] else text.strip()
        item.pieces.append((self.sent_ms, words))
        part["transcript"] += words
        delta = base64.b64encode(pcm16(audio)).decode()
        await self.send({"type": "response.output_audio.delta", **self._ids(), "content_index": 0,
                         "delta": delta})  # fmt: skip
        await self.send({"type": "response.output_audio_transcript.delta", **self._ids(),
                         "content_index": 0, "delta": words})  # fmt: skip

    async def text(self, delta: str) -> None:
        """A piece of the reply's text (text modality)."""
        if self.modality != "text" or not delta:
            return
        item = await self._message()
        item.body["content"][0]["text"] += delta
        await self.send({"type": "response.output_text.delta", **self._ids(), "content_index": 0,
                         "delta": delta})  # fmt: skip

    async def function_call(self, call: FunctionCallRequested) -> None:
        """The response is a call of a client tool: its item, its arguments, then done."""
        item = await self._open(
            items.function_call(new_id("item"), call.call_id, call.name, call.arguments)
        )
        ids = {**self._ids(), "call_id": call.call_id}
        await self.send({"type": "response.function_call_arguments.delta", **ids,
                         "delta": call.arguments})  # fmt: skip
        await self.send({"type": "response.function_call_arguments.done", **ids,
                         "name": call.name, "arguments": call.arguments})  # fmt: skip
        await self._close_item(item)
        await self._done("completed")

    async def finish(self, status: str, reason: str | None = None) -> None:
        """End the response: "completed", "cancelled" (what was sent stays) or "failed"."""
        if self.finished:
            return
        item = self.item
        if item is not None and item.body["type"] == "message":
            part = item.body["content"][0]
            item.body["status"] = "completed" if status == "completed" else "incomplete"
            done = "response.output_audio" if self.modality == "audio" else "response.output_text"
            if self.modality == "audio":
                await self.send({"type": f"{done}.done", **self._ids(), "content_index": 0})
                await self.send({"type": "response.output_audio_transcript.done", **self._ids(),
                                 "content_index": 0, "transcript": part["transcript"]})  # fmt: skip
            else:
                await self.send({"type": f"{done}.done", **self._ids(), "content_index": 0,
                                 "text": part["text"]})  # fmt: skip
            await self.send({"type": "response.content_part.done", **self._ids(),
                             "content_index": 0, "part": _part(part)})  # fmt: skip
            await self._close_item(item)
        await self._done(status, reason)

    async def _close_item(self, item: Item) -> None:
        await self.send({"type": "response.output_item.done", "response_id": self.id,
                         "output_index": 0, "item": item.body})  # fmt: skip
        await self.send({"type": "conversation.item.done", "item": item.body})

    async def _done(self, status: str, reason: str | None = None) -> None:
        self.finished = True
        details = {"type": status, "reason": reason} if reason else None
        await self.send({"type": "response.done", "response": self._response(status, details)})


def _part(content: dict[str, Any]) -> dict[str, Any]:
    """A content part as ``response.content_part.*`` name it ("audio" or "text")."""
    if content["type"] == "output_audio":
        return {"type": "audio", "transcript": content["transcript"]}
    return {"type": "text", "text": content["text"]}
