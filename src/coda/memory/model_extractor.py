"""The slow path of learning: the language model reads a statement the rules could not.

It runs after the turn, in the background, on its own model instance (so the
voice model's cached prompt is not disturbed), with schema-constrained JSON.
Its facts are checked against the user's words: a value the user did not say
is dropped, so the model can miss a fact but cannot invent one.
"""

from __future__ import annotations

import json
import logging
import re

from coda.core.errors import VoiceProcessingError
from coda.core.models import LLMMessage
from coda.memory.extraction import statements
from coda.memory.facts import Fact
from coda.providers.base import GenerationRequest, GenerationStats, LanguageModel
from coda.providers.scheduler import current_ticket

log = logging.getLogger(__name__)

_SYSTEM = (
    "You read one thing a user said and list the lasting facts it states about the user "
    'or about the people, pets and things in their life. subject is "I", "we", or '
    '"my ..."/"our ..." as the user says it; relation is a short verb phrase in its '
    'base form ("live in", "work as", "is called", "like", "have", "eat", '
    '"is allergic to"); value is copied from the user\'s words; negated is true when the '
    "user says it is not so. Questions, greetings, requests and passing moods state no facts."
)
_EXAMPLES = [
    ("My grandmother was a teacher in Lyon.",
     [{"subject": "my grandmother", "relation": "was", "value": "a teacher in Lyon",
       "negated": False}]),
    ("I never drink coffee after lunch.",
     [{"subject": "I", "relation": "drink", "value": "coffee after lunch", "negated": True}]),
    ("Could you tell me the time?", []),
]  # fmt: skip
_SCHEMA = {
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "maxItems": 4,
            "items": {
                "type": "object",
                "properties": {
                    "subject": {"type": "string", "maxLength": 40},
                    "relation": {"type": "string", "maxLength": 30},
                    "value": {"type": "string", "maxLength": 80},
                    "negated": {"type": "boolean"},
                },
                "required": ["subject", "relation", "value", "negated"],
            },
        }
    },
    "required": ["facts"],
}
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|we|we're|my|our)\b", re.IGNORECASE)
_SUBJECT = re.compile(r"^(?:i|we|(?:my|our)\s+[\w' -]{1,30})$", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9']+")
_NEGATION = re.compile(r"\b(?:not|never|no longer|no)\b|n't\b", re.IGNORECASE)
_PREFERENCES = ("like", "love", "enjoy", "prefer", "hate", "dislike", "adore")


def worth_a_model(words: str) -> bool:
    """A statement in the first person that the rules did not read (a question is not)."""
    return any(_FIRST_PERSON.search(s) for s in statements(words))


def _relation(raw: str) -> str:
    words = raw.lower().strip().split()
    if not words:
        return ""
    if words[0] in ("am", "are", "'m", "'re"):
        words[0] = "is"
    elif words[0] in ("lives", "works", "likes", "loves", "has", "eats", "drinks", "studies"):
        words[0] = {"has": "have", "studies": "study"}.get(words[0], words[0][:-1])
    return " ".join(words)


def checked(user_text: str, items: list[dict[str, object]]) -> list[Fact]:
    """The model's facts that hold up: a first-person subject, and a value the user said."""
    said = set(_WORD.findall(user_text.lower()))
    facts: list[Fact] = []
    for item in items:
        subject = str(item.get("subject", "")).strip()
        value = str(item.get("value", "")).strip().rstrip(".")
        relation = _relation(str(item.get("relation", "")))
        words = _WORD.findall(value.lower())
        if not (_SUBJECT.match(subject) and relation and words and set(words) <= said):
            continue
        kind = "preference" if relation.split()[0] in _PREFERENCES else "fact"
        negated = bool(item.get("negated")) and bool(_NEGATION.search(user_text))
        facts.append(Fact(subject, relation, value, negated, kind))
    return facts


class ModelExtractor:
    """Facts read by a language model, checked against the user's words.

    Args:
        llm: The background model (loaded on first use, off the latency path; its
            owner closes it). Decoding is greedy.
    """

    def __init__(self, llm: LanguageModel) -> None:
        self.llm = llm

    async def extract(self, user_text: str) -> list[Fact]:
        """The checked facts in ``user_text`` (none if the model fails)."""
        messages = [LLMMessage("system", _SYSTEM)]
        for said, facts in _EXAMPLES:
            messages.append(LLMMessage("user", said))
            messages.append(LLMMessage("assistant", json.dumps({"facts": facts})))
        messages.append(LLMMessage("user", user_text))
        request = GenerationRequest(
            messages, max_tokens=160, temperature=0.0, top_p=1.0, seed=0, json_schema=_SCHEMA
        )
        ticket = current_ticket.get()
        if ticket is not None:
            ticket.optional = True  # best effort: the next turn does not wait for it
        try:
            await self.llm.load()
            text = "".join([d async for d in self.llm.stream(request, GenerationStats())])
            items = json.loads(text).get("facts", [])
        except (VoiceProcessingError, ValueError, AttributeError) as exc:
            log.warning("the model could not read %r: %s", user_text, exc)
            return []
        return checked(user_text, [i for i in items if isinstance(i, dict)])
