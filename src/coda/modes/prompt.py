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
    style: str | None = None,
    summary: str | None = None,
) -> list[LLMMessage]:
    """The system prompt and ``style``, the latest ``max_turns`` turns, then the user's turn.

    Older turns are dropped first; the system prompt always stays. The messages
    of earlier turns render identically every time, each with the context it was
    answered with, so the LLM's cached prefix stays valid from one turn to the
    next. For the same reason the stable ``style`` opens the prompt, while this
    turn's ``extra_context`` (memories, tool results) goes in a system message
    just before the user's words.
    """
    opening = f"{system_prompt}\n{style}" if style else system_prompt
    messages = [LLMMessage("system", opening)]
    if summary:  # the turns no longer in the history; it changes once per summarized chunk
        messages.append(LLMMessage("system", f"Earlier in this conversation: {summary}"))
    for turn in list(history)[-max_turns:] if max_turns > 0 else []:
        if turn.context:
            messages.append(LLMMessage("system", turn.context))
        messages.append(LLMMessage("user", turn.user_text))
        messages.append(LLMMessage("assistant", turn.assistant_text))
    if extra_context:
        messages.append(LLMMessage("system", extra_context))
    messages.append(LLMMessage("user", user_text))
    return messages
