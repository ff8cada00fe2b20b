"""What a responder emits while it answers one turn, in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coda.providers.base import SpeechAudio


@dataclass(frozen=True)
class Transcribed:
    """The user's words are known."""

    text: str
    confidence: float
    source: str  # "asr" or "provided"


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
    """The reply is complete."""

    reply_text: str
    finish_reason: str | None
    timings_ms: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


TurnEvent = Transcribed | TextDelta | SpokenPiece | TurnFinished
