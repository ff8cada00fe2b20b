"""The contract of a responder: the user's words in, a spoken reply out, as events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from coda.core.models import ConversationTurn, VoiceProcessingMode
from coda.modes.clock import TurnClock
from coda.modes.events import TurnEvent


@dataclass(frozen=True)
class TurnRequest:
    """What a responder needs to answer one turn.

    Attributes:
        text: The user's words.
        history: Earlier turns of the conversation, oldest first.
        extra_context: Text appended to the system prompt (memory, personality).
        audio: The user's cleaned speech, for responders that listen (Moshi).
        audio_rate: Sample rate of ``audio``, in Hz.
    """

    text: str
    history: Sequence[ConversationTurn]
    extra_context: str | None = None
    audio: np.ndarray | None = None
    audio_rate: int = 16000


class Responder(Protocol):
    """Answers a turn: ``TextDelta`` and ``SpokenPiece`` events, then ``TurnFinished``."""

    name: str
    mode: VoiceProcessingMode

    def respond(self, request: TurnRequest, clock: TurnClock) -> AsyncIterator[TurnEvent]:
        """Stream the reply's events."""
        ...
