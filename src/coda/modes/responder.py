"""The contract of a responder: the user's words in, a spoken reply out, as events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from coda.core.models import ConversationState, ConversationTurn, VoiceProcessingMode
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
        max_tokens: This turn's token cap (None: the LLM config's).
        temperature: This turn's sampling temperature (None: the LLM config's).
    """

    text: str
    history: Sequence[ConversationTurn]
    extra_context: str | None = None
    audio: np.ndarray | None = None
    audio_rate: int = 16000
    max_tokens: int | None = None
    temperature: float | None = None


class Responder(Protocol):
    """Answers a turn: ``TextDelta`` and ``SpokenPiece`` events, then ``TurnFinished``."""

    name: str
    mode: VoiceProcessingMode

    def respond(self, request: TurnRequest, clock: TurnClock) -> AsyncIterator[TurnEvent]:
        """Stream the reply's events."""
        ...


@dataclass
class TurnPlan:
    """What the integrations add to a turn once the user's words are known.

    Attributes:
        extra_context: Text for the LLM (memories, personality, tool results).
        max_tokens: A token cap for the reply (None: unchanged).
        metadata: Recorded in the response's metadata (memories used, tool results).
        before_commit: Reshapes the finished turn (a ``TurnOutcome``) before it is
            stored and returned, so the history keeps what was actually said.
    """

    extra_context: str | None = None
    max_tokens: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    before_commit: Callable[[Any], Awaitable[Any]] | None = None


BeforeReply = Callable[[str, ConversationState], Awaitable[TurnPlan]]
"""Called with the user's words and the conversation before the reply is generated."""
