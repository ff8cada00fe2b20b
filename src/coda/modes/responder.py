"""The contract of a responder: the user's words in, a spoken reply out, as events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from coda.core.enums import VoiceProcessingMode
from coda.core.models import ConversationTurn
from coda.modes.clock import TurnClock
from coda.turn.events import TurnEvent


@dataclass(frozen=True)
class TurnRequest:
    """What a responder needs to answer one turn.

    Attributes:
        text: The user's words.
        history: Earlier turns of the conversation, oldest first.
        extra_context: Text for the LLM before the user's words (memories, tools).
        reply: The reply already known (from memory): spoken without the LLM.
        summary: What the conversation's turns older than ``history`` said.
        style: Standing instructions for the speaker (the personality), which
            open the system prompt.
        audio: The user's cleaned speech, for responders that listen (Moshi).
        audio_rate: Sample rate of ``audio``, in Hz.
        max_tokens: This turn's token cap (None: the LLM config's).
        temperature: This turn's sampling temperature (None: the LLM config's).
        max_sentences: Stop the reply after this many sentences (None: no cap).
        speaking_rate: Speech rate relative to the voice's own pace.
        volume_gain: Scale of the reply audio (kept below clipping).
        conversation_id: The conversation the turn belongs to (for scheduling).
    """

    text: str
    history: Sequence[ConversationTurn]
    extra_context: str | None = None
    reply: str | None = None
    summary: str | None = None
    style: str | None = None
    audio: np.ndarray | None = None
    audio_rate: int = 16000
    max_tokens: int | None = None
    temperature: float | None = None
    max_sentences: int | None = None
    speaking_rate: float = 1.0
    volume_gain: float = 1.0
    conversation_id: str = ""


class Responder(Protocol):
    """Answers a turn: ``TextDelta`` and ``SpokenPiece`` events, then ``TurnFinished``."""

    name: str
    mode: VoiceProcessingMode

    def respond(self, request: TurnRequest, clock: TurnClock) -> AsyncIterator[TurnEvent]:
        """Stream the reply's events."""
        ...
