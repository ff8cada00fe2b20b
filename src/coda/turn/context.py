"""Who and what a turn is about: its options and the context its hooks share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coda.core.errors import ValidationError
from coda.core.models import ConversationState
from coda.tools.registry import Tool

INTEGRATIONS = ("memory", "personality", "tools", "sync")
"""The integrations a turn may include (each is one ``TurnHooks``)."""


@dataclass(frozen=True)
class TurnOptions:
    """How one turn is answered, beyond its words.

    Attributes:
        system_context: Extra text for the LLM's system prompt.
        max_tokens: This turn's token cap (None: the LLM config's or the personality's).
        temperature: This turn's sampling temperature (None: the LLM config's).
        integrations: The installed integrations this turn may use (None: all).
        user_feedback: Feedback about the previous reply (``{"too_long": True}``).
        client_tools: Tools the client runs itself (the Realtime API's function
            tools): the tools hook may choose one, and the turn then ends with a
            ``FunctionCallRequested`` for the client instead of a reply.
    """

    system_context: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    integrations: frozenset[str] | None = None
    user_feedback: dict[str, Any] | None = None
    client_tools: tuple[Tool, ...] = ()

    def allows(self, name: str) -> bool:
        """Whether the integration ``name`` takes part in this turn."""
        return self.integrations is None or name in self.integrations

    @classmethod
    def from_context(cls, context: dict[str, Any] | None) -> TurnOptions:
        """The options in the spec's ``context`` dict of ``process_voice_message``.

        Keys: ``system_context``, ``max_tokens``, ``temperature``, ``integrations``
        (names from ``INTEGRATIONS``) and ``user_feedback``; others are ignored.

        Raises:
            ValidationError: If a key has the wrong type.
        """
        context = context or {}
        names = context.get("integrations")
        if names is not None:
            unknown = set(names) - set(INTEGRATIONS)
            if unknown or isinstance(names, str):
                raise ValidationError(f"context['integrations'] must name {INTEGRATIONS}")
        feedback = context.get("user_feedback")
        if feedback is not None and not isinstance(feedback, dict):
            raise ValidationError("context['user_feedback'] must be a dict")
        max_tokens = context.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise ValidationError("context['max_tokens'] must be a positive integer")
        return cls(
            system_context=context.get("system_context"),
            max_tokens=max_tokens,
            temperature=context.get("temperature"),
            integrations=None if names is None else frozenset(names),
            user_feedback=feedback,
        )


@dataclass
class TurnContext:
    """What the hooks of one turn know about it.

    Attributes:
        conversation_id: The conversation.
        speaker: Who is speaking: memories and personality belong to them.
        message_id: The user's message id, if any.
        options: How the turn is answered.
        words: The user's words, once recognized.
        confidence: Recognition confidence of ``words``, in [0, 1].
        state: The conversation before this turn.
        streamed: The reply is played as it is made, so it cannot be re-spoken
            after the fact (the live session, ``process_streaming``).
        reply_context: The extra text the reply is made with (kept with the turn).
    """

    conversation_id: str
    speaker: str
    message_id: str | None = None
    options: TurnOptions = field(default_factory=TurnOptions)
    words: str = ""
    confidence: float = 1.0
    state: ConversationState | None = None
    streamed: bool = False
    reply_context: str | None = None
