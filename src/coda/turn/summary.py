"""Long conversations: the turns that no longer fit the prompt are summarized, not dropped.

When a conversation outgrows ``max_conversation_length``, its oldest turns leave
the history in a chunk (``Conversations.commit``), and this stage folds them into
the conversation's summary in the background, with the background model. The
summary opens the prompt (after the system prompt), so what was said an hour ago
still counts, and it changes only once per chunk, which keeps the LLM's cached
prefix valid in between. If the model fails, the user's own sentences are kept
instead, so nothing they said is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from coda.core.errors import VoiceProcessingError
from coda.core.models import ConversationTurn, LLMMessage
from coda.providers.base import GenerationRequest, GenerationStats, LanguageModel

log = logging.getLogger(__name__)

MAX_CHARS = 1200
"""A summary is kept to about this many characters (a few hundred tokens)."""
_SYSTEM = (
    "You keep the running summary of a spoken conversation between a user and Coda, a "
    "voice assistant. Rewrite the summary so it also covers the new turns. Keep what the "
    "user said about themselves, what they asked for and what was decided; drop small "
    'talk. Write at most five short sentences in the third person ("The user ...").'
)


def _transcript(turns: Sequence[ConversationTurn]) -> str:
    return "\n".join(f"User: {t.user_text}\nCoda: {t.assistant_text}" for t in turns)


def kept_words(previous: str, turns: Sequence[ConversationTurn]) -> str:
    """The summary without a model: the earlier one and the user's own words."""
    said = " ".join(t.user_text.strip() for t in turns if t.user_text.strip())
    joined = f"{previous} The user said: {said}".strip() if said else previous
    return joined[-MAX_CHARS:]


class Summarizer:
    """Folds turns into a conversation's summary with a language model.

    Args:
        llm: The background model (not the voice model, whose cache it would evict).
        max_tokens: The summary's token cap.
    """

    def __init__(self, llm: LanguageModel, max_tokens: int = 160) -> None:
        self.llm = llm
        self.max_tokens = max_tokens

    async def summarize(self, previous: str, turns: Sequence[ConversationTurn]) -> str:
        """The summary of ``previous`` and ``turns`` (their words kept if the model fails)."""
        if not turns:
            return previous
        prompt = f"Summary so far: {previous or '(none)'}\n\nNew turns:\n{_transcript(turns)}"
        request = GenerationRequest(
            [LLMMessage("system", _SYSTEM), LLMMessage("user", prompt)],
            max_tokens=self.max_tokens,
            temperature=0.0,
            top_p=1.0,
            seed=0,
        )
        try:
            await self.llm.load()
            text = "".join([d async for d in self.llm.stream(request, GenerationStats())])
        except VoiceProcessingError as exc:
            log.warning("summarizing failed, keeping the user's words: %s", exc)
            return kept_words(previous, turns)
        summary = " ".join(text.split())
        return summary[:MAX_CHARS] if summary else kept_words(previous, turns)
