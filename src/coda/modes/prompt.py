"""Build the language model's messages from the conversation's history."""

from __future__ import annotations

from collections.abc import Sequence

from coda.core.models import ConversationTurn, LLMMessage


def build_messages(
    system_prompt: str,
    history: Sequence[ConversationTurn],
    user_text: str,
    max_turns: int,
    extra_context: str | None = None,
) -> list[LLMMessage]:
    """System prompt, the latest ``max_turns`` turns, then the new user turn.

    Older turns are dropped first; the system prompt always stays. The messages
    of earlier turns render identically every time, so the LLM's cached prefix
    stays valid from one turn to the next; for the same reason this turn's
    ``extra_context`` (memories, tool results) goes in a system message just
    before the user's words, not into the opening system prompt.
    """
    messages = [LLMMessage("system", system_prompt)]
    for turn in list(history)[-max_turns:] if max_turns > 0 else []:
        messages.append(LLMMessage("user", turn.user_text))
        messages.append(LLMMessage("assistant", turn.assistant_text))
    if extra_context:
        messages.append(LLMMessage("system", extra_context))
    messages.append(LLMMessage("user", user_text))
    return messages
