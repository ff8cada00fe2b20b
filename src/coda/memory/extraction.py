"""What is worth remembering in what the user said: first-person facts and preferences.

Rules, not the LLM: on this machine the embedded 0.5B model takes about a second
per schema-constrained extraction and misses often, while these patterns run in
microseconds and, on the labelled utterances in ``tests/test_memory.py``, keep
precision at 1.0. Questions are never memories. The user's own sentence is kept
(tidied), because a later question in the user's words finds it best.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FILLER = re.compile(
    r"^(?:(?:um+|uh+|well|so|oh|okay|ok|hi|hello|hey|by the way|also|and|actually|"
    r"just so you know)[,\s]+)+",
    re.IGNORECASE,
)
_QUESTION_START = re.compile(
    r"^(?:what|who|whom|whose|where|when|why|how|which|do|does|did|is|are|am|was|were|can|"
    r"could|would|will|should|have|has)\b",
    re.IGNORECASE,
)
_REMEMBER = re.compile(r"^(?:please\s+)?remember(?:\s+that)?\s+(?P<rest>.+)$", re.IGNORECASE)
_PREFERENCE = re.compile(
    r"^i\s+(?:really\s+|do\s+not\s+|don't\s+)?(?:like|love|enjoy|prefer|hate|dislike|adore)\b"
    r"|\bmy\s+favou?rite\b",
    re.IGNORECASE,
)
_FACT = re.compile(
    r"^(?:"
    r"(?:my|our)\s+[\w' -]{1,40}?\s+(?:is|are|was|were|lives|live|works|work|studies|has|have)\b"
    r"|call\s+me\s+\w+"
    r"|i\s+(?:live|work|study|grew\s+up|was\s+born)\s+(?:in|at|for|on)\b"
    r"|i\s+(?:am|'m)\s+(?:a|an|allergic|vegetarian|vegan|from|married|\d+\s+years)\b"
    r"|i'm\s+(?:a|an|allergic|vegetarian|vegan|from|married|\d+\s+years)\b"
    r"|i\s+have\s+(?:a|an|two|three|four|\d+)\b"
    r")",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Candidate:
    """A memory worth keeping: the sentence, and whether it is a fact or a preference."""

    text: str
    kind: str  # "fact" or "preference"


def _tidy(sentence: str) -> str:
    sentence = sentence.strip().rstrip(".!")
    sentence = re.sub(r"\bi\b", "I", sentence)
    return sentence[:1].upper() + sentence[1:] + "."


def extract(user_text: str) -> list[Candidate]:
    """The memories in one user utterance (possibly none)."""
    found: list[Candidate] = []
    for raw in _SENTENCE.split(user_text.strip()):
        sentence = _FILLER.sub("", raw.strip())
        if not sentence or sentence.endswith("?") or _QUESTION_START.match(sentence):
            continue
        remembered = _REMEMBER.match(sentence)
        if remembered:
            sentence = remembered.group("rest")
        if _PREFERENCE.search(sentence):
            found.append(Candidate(_tidy(sentence), "preference"))
        elif _FACT.match(sentence) or remembered:
            found.append(Candidate(_tidy(sentence), "fact"))
    return found
