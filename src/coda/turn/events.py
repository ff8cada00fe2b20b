"""The one event vocabulary of a turn, from the first sound to the stored reply.

Responders emit ``TextDelta``, ``SpokenPiece`` and ``TurnFinished``; the pipeline
adds ``Transcribed``, ``MemoryRecalled`` and ``ToolCalled`` and ends with the
``TurnOutcome``; the live session adds ``SpeechStarted``, ``SpeechEnded``,
``ReplyDiscarded``, ``Interrupted``, ``TurnFailed`` and ``TurnStored``.
``VoiceStreamChunk``, the websocket's JSON and the browser page are each one
mapping of these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coda.core.enums import VoiceProcessingMode
from coda.providers.base import SpeechAudio
from coda.turn.context import TurnContext


@dataclass(frozen=True)
class SpeechStarted:
    """The user started speaking (session time, in seconds)."""

    at_seconds: float


@dataclass(frozen=True)
class SpeechEnded:
    """The user's turn is over; ``endpointing_ms`` after the true end of speech.

    ``reason`` says why the pause was taken as the end (the turn-taking verdict).
    """

    at_seconds: float
    endpointing_ms: float
    reason: str = ""


@dataclass(frozen=True)
class ReplyDiscarded:
    """A reply prepared during a pause was thrown away: the user went on speaking.

    Attributes:
        words: What the user had said when the reply was started.
        wasted_ms: How long it had been in the making.
    """

    words: str
    wasted_ms: float


@dataclass(frozen=True)
class Transcribed:
    """The user's words are known."""

    text: str
    confidence: float
    source: str  # "asr" or "provided"


@dataclass(frozen=True)
class MemoryRecalled:
    """What Coda remembered for this turn (each: text, kind, relevance, ...)."""

    memories: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class ToolCalled:
    """A tool ran for this turn: its name, arguments, and result or error."""

    name: str
    arguments: dict[str, Any]
    success: bool
    result: Any = None
    error: str | None = None
    duration_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """What the transports show of the call."""
        return {
            "name": self.name,
            "arguments": self.arguments,
            "success": self.success,
            "result": self.result,
            "error": self.error,
        }


@dataclass(frozen=True)
class TextDelta:
    """A piece of the reply text as the model writes it."""

    text: str


@dataclass(frozen=True)
class SpokenPiece:
    """A sentence (or clause) of the reply, synthesized."""

    text: str
    audio: SpeechAudio


@dataclass
class TurnFinished:
    """A responder's reply is complete."""

    reply_text: str
    finish_reason: str | None
    timings_ms: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class TurnOutcome:
    """Everything a finished turn produced (the last event of a turn)."""

    turn: TurnContext
    mode: VoiceProcessingMode
    user_text: str
    reply_text: str
    audio: np.ndarray
    sample_rate: int
    processing_time_ms: float
    scores: dict[str, float]
    metadata: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def conversation_id(self) -> str:
        """The conversation the turn belongs to."""
        return self.turn.conversation_id


@dataclass(frozen=True)
class Interrupted:
    """The user talked over the reply: stop playing now.

    Attributes:
        spoken: The part of the reply that was played (what the history keeps).
        heard: What the user said over it.
        played_seconds: Reply audio played before the interruption.
    """

    spoken: str
    heard: str
    played_seconds: float


@dataclass(frozen=True)
class TurnFailed:
    """The turn could not be answered.

    Attributes:
        error: The typed error's name.
        message: What a client may be told (``coda.core.errors.client_message``).
    """

    error: str
    message: str


@dataclass(frozen=True)
class FunctionCallRequested:
    """The answer is a call of one of the client's own tools (``TurnOptions.client_tools``).

    The turn ends here, with nothing said or stored: the client runs the tool, and
    a later turn answers the same words with its output.

    Attributes:
        call_id: Names the call, for the client's output.
        name: The tool.
        arguments: Its arguments, a JSON object.
    """

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class TurnStored:
    """A live turn is in the store, with the part of the reply that was heard.

    A live turn is stored once its reply has played (or was cut off), after its
    ``TurnOutcome``: a client that must not lose turns waits for this one.
    """

    message_id: str
    user_text: str
    reply_text: str


TurnEvent = (
    SpeechStarted
    | SpeechEnded
    | ReplyDiscarded
    | Transcribed
    | MemoryRecalled
    | ToolCalled
    | TextDelta
    | SpokenPiece
    | TurnFinished
    | TurnOutcome
    | Interrupted
    | TurnFailed
    | TurnStored
    | FunctionCallRequested
)
