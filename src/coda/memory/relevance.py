"""How relevant a memory is to what the user just said, in [0, 1].

MiniLM's cosine between a question and the statement that answers it is lower
than between two statements ("What is my dog called?" / "My dog is called
Bella." ≈ 0.71; a related but wrong memory, "My cat is named Tom.", ≈ 0.52).
Relevance therefore blends the cosine, rescaled to [0, 1] over its useful range,
with what the words share: the share of the question's content words the memory
contains, or, as strongly, the same thing owned ("my name" in "Do you remember
my name?" and "My name is Ada."), so the spec's default threshold (0.7)
separates the two.
"""

from __future__ import annotations

import re

from coda.memory.facts import is_person
from coda.modes.quality import STOPWORDS

_WORD = re.compile(r"[a-z0-9']+")
_QUESTION_WORDS = frozenset(
    ("remember", "know", "recall", "called", "named", "name", "anything", "something", "like")
)
COSINE_FLOOR = 0.1
COSINE_SPAN = 0.6
COSINE_WEIGHT = 0.6
_OWNED = re.compile(r"\b(?:my|our)\s+(?:favou?rite\s+)?([a-z']+)")
_PHRASE = re.compile(r"\b(?:my|our)\s+((?:[a-z']+\s+){0,2}[a-z']+)")
_SELF = re.compile(r"\b(?:i|we|i'm|i've|we're|myself)\b")  # "remind me" asks of others too


def _stem(word: str) -> str:
    """A crude stem that maps "live", "lives", "lived" and "living" alike ("liv")."""
    word = word.removesuffix("'s").strip("'")
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            word = word[: -len(suffix)]
            break
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


def content_stems(text: str) -> set[str]:
    """Stems of the words that carry meaning (no stopwords, no question scaffolding)."""
    words = (w.removesuffix("'s") for w in _WORD.findall(text.lower()))
    return {_stem(w) for w in words if w not in STOPWORDS and w not in _QUESTION_WORDS}


def owned(text: str) -> set[str]:
    """Stems of what the speaker owns in ``text``: "my dog", "our cat" → dog, cat."""
    return {_stem(m.group(1)) for m in _OWNED.finditer(text.lower())}


def about_whom(text: str) -> set[str]:
    """The people and pets ``text`` speaks of, as stems ("my best friend" → "friend")."""
    phrases = (m.group(1).split() for m in _PHRASE.finditer(text.lower()))
    return {_stem(word) for words in phrases for word in words if is_person(f"my {word}")}


def same_subject(query: str, subject: str) -> bool:
    """A memory about ``subject`` ("i", "my sister", "" for any) can answer ``query``.

    "Where do I live?" is not answered by "My sister lives in Lisbon.", nor
    "Where does my sister live?" by "I live in Berlin.".
    """
    if not subject:
        return True
    asked = about_whom(query)
    if subject == "i" or not is_person(subject):  # the user, or one of their attributes
        return not asked or bool(_SELF.search(query.lower()))
    return any(_stem(word) in asked for word in subject.split()[1:])


def relevance(query: str, memory: str, cosine: float, relation: str = "") -> float:
    """Blend of rescaled cosine and content-word overlap.

    ``memory`` may carry the questions the memory answers as well as its sentence;
    a question that uses the fact's own verb ("Which team do I support?" for "I
    support Arsenal.") matches as strongly as one about the same owned thing.

    A question with no content words of its own ("What is my name?") has nothing
    to overlap, so its meaning (the rescaled cosine) decides alone.
    """
    scaled = min(1.0, max(0.0, (cosine - COSINE_FLOOR) / COSINE_SPAN))
    asked, owner = content_stems(query), owned(query)
    if not asked and not owner:
        return scaled
    overlap = len(asked & content_stems(memory)) / len(asked) if asked else 0.0
    verb = content_stems(relation) & asked if relation else set()
    shared = 1.0 if owner & owned(memory) or verb else 0.0
    return COSINE_WEIGHT * scaled + (1 - COSINE_WEIGHT) * max(overlap, shared)
