"""Answers that come from memory itself, not from the LLM's guess.

Measured on the embedded 0.5B model (``../shared/spec/stack.md``, and ``coda
eval``): no prompt stops it inventing a sister's city it was never told, and it
often repeats "my name is Ada" back in the user's person. So a question about
the user's own facts is answered here: from the fact, turned towards the user
("Your sister lives in Lisbon."), or, when nothing was ever told, honestly
("You haven't told me about your sister yet."). Everything else stays with the
LLM, with the facts in its context.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from coda.memory.extraction import statements
from coda.memory.perspective import second_person
from coda.memory.questions import PersonalQuestion
from coda.memory.relevance import content_stems

MAX_FACTS = 3
"""A broad question ("What do you know about me?") is answered with at most this many."""
CLOSE = 0.08
"""Facts this close to the best one answer together ("What am I allergic to?")."""
NOTHING_YET = "I don't know much about you yet."
NOT_THAT = "I don't know. You haven't told me that yet."
_BROAD = re.compile(r"\b(?:know|remember)\s+about\s+me\b|\bwho am i\b", re.IGNORECASE)
# What a question asks for, and the relations of the facts that answer it.
_ASKS = [
    (r"\b(?:live|lives|home|city|address)\b", ("live in",)),
    (r"\b(?:work|works|job|living|profession|do for)\b", ("work as", "work at", "is a")),
    (r"\b(?:called|named|name)\b", ("is called", "is")),
    (r"\bstud(?:y|ies|ying)\b", ("study", "is")),
    (r"\ballergic\b", ("is allergic to",)),
    (r"\bfrom\b", ("is from",)),
    (r"\bborn\b", ("was born in",)),
    (r"\bgr(?:o|e)w\b", ("grew up in",)),
]


def _answers(question: str, relation: str) -> bool:
    """A fact with ``relation`` can answer ``question`` (e.g. "live in" for "where … live")."""
    wanted = {r for pattern, relations in _ASKS if re.search(pattern, question, re.I)
              for r in relations}  # fmt: skip
    return not wanted or not relation or relation in wanted


@dataclass(frozen=True)
class MemoryAnswer:
    """A reply from memory, and the memories it tells (none for "you haven't told me")."""

    text: str
    used: tuple[dict[str, Any], ...] = ()


def _told(memories: Sequence[dict[str, Any]]) -> MemoryAnswer:
    return MemoryAnswer(" ".join(second_person(m["text"]) for m in memories), tuple(memories))


def from_memory(
    question: PersonalQuestion,
    memories: Sequence[dict[str, Any]],
    answer_above: float,
    earlier_words: Sequence[str],
) -> MemoryAnswer | None:
    """The reply to ``question``, or None to leave it to the LLM.

    Args:
        question: The user's question about their own facts.
        memories: Recalled memories (text, relevance), best first.
        answer_above: The relevance a memory needs to answer by itself.
        earlier_words: What the user said earlier in this conversation: if a
            statement in it speaks of what is asked, the LLM answers from the
            history instead (an earlier question about it does not count).
    """
    if _BROAD.search(question.text):
        return _told(memories[:MAX_FACTS]) if memories else MemoryAnswer(NOTHING_YET)
    fitting = [m for m in memories if _answers(question.text, m.get("relation", ""))]
    if fitting and fitting[0]["relevance"] >= answer_above:
        floor = fitting[0]["relevance"] - CLOSE
        return _told([m for m in fitting if m["relevance"] >= floor][:MAX_FACTS])
    if memories:
        # Related facts, none of which answers what is asked ("where does my brother
        # live?" when only his employer is known): not a guess, and not the LLM's.
        return None if fitting else MemoryAnswer(NOT_THAT)
    asked = content_stems(question.text)
    for said in (s for words in earlier_words for s in statements(words)):  # not questions
        lowered = said.lower()
        if asked & content_stems(said) or any(o in lowered for o in question.owned):
            return None
    return MemoryAnswer(question.not_told())
