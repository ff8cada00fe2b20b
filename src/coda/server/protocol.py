"""The websocket's JSON: the one mapping of a turn's events (``coda.turn.events``)."""

from __future__ import annotations

import json
from typing import Any

from coda.turn.events import (
    Interrupted,
    MemoryRecalled,
    ReplyDiscarded,
    SpeechEnded,
    SpeechStarted,
    SpokenPiece,
    TextDelta,
    ToolCalled,
    Transcribed,
    TurnEvent,
    TurnFailed,
    TurnOutcome,
    TurnStored,
)


def _jsonable(value: Any) -> Any:
    """``value`` if JSON can carry it, else its text (a tool's result may be anything)."""
    return json.loads(json.dumps(value, default=str))


def message_of(event: TurnEvent, seq: int) -> dict[str, Any] | None:
    """The JSON message for ``event`` (None for events the socket does not carry).

    ``seq`` numbers the reply's audio pieces; each ``audio`` message is followed by
    one binary message of PCM16.
    """
    if isinstance(event, SpeechStarted):
        return {"type": "speech_started", "at": round(event.at_seconds, 3)}
    if isinstance(event, SpeechEnded):
        return {
            "type": "speech_ended",
            "at": round(event.at_seconds, 3),
            "endpointing_ms": round(event.endpointing_ms, 1),
            "reason": event.reason,
        }
    if isinstance(event, ReplyDiscarded):
        return {
            "type": "reply_discarded",
            "words": event.words,
            "wasted_ms": round(event.wasted_ms, 1),
        }
    if isinstance(event, Transcribed):
        return {"type": "transcript", "text": event.text}
    if isinstance(event, MemoryRecalled):
        return {"type": "memory", "memories": _jsonable(list(event.memories))}
    if isinstance(event, ToolCalled):
        return {"type": "tool", **_jsonable(event.as_dict())}
    if isinstance(event, TextDelta):
        return {"type": "text", "delta": event.text}
    if isinstance(event, SpokenPiece):
        return {
            "type": "audio",
            "seq": seq,
            "samples": len(event.audio.samples),
            "text": event.text,
        }
    if isinstance(event, Interrupted):
        return {"type": "interrupted", "heard": event.heard, "spoken": event.spoken}
    if isinstance(event, TurnOutcome):
        return {
            "type": "turn",
            "mode": event.mode.value,
            "user_text": event.user_text,
            "reply_text": event.reply_text,
            "timings_ms": event.metadata.get("timings_ms", {}),
            "interrupted": event.interrupted,
        }
    if isinstance(event, TurnStored):
        return {
            "type": "stored",
            "message_id": event.message_id,
            "user_text": event.user_text,
            "reply_text": event.reply_text,
        }
    if isinstance(event, TurnFailed):
        return {
            "type": "error",
            "code": "turn_failed",
            "error": event.error,
            "message": f"{event.error}: {event.message}",
        }
    return None
