"""Questions about the user's own facts, and the questions a fact answers.

MiniLM puts a question far from the statement that answers it ("Where does my
sister live?" / "My sister lives in Lisbon." ≈ 0.65), so each fact is also
indexed by the questions it answers, written the way the user would ask them
(``likely_questions``); a question then meets its fact at cosine ≈ 0.9.

``personal_question`` tells a question about the user's own facts ("What is my
name?", "Where do I live?") from one that only mentions them ("What should I
cook for my sister?"): the first is answered from memory, or with "you haven't
told me", never by the LLM's guess. ``forget_request`` reads "forget my wifi
password".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from coda.memory.extraction import strip_filler
from coda.memory.facts import Fact, is_person, owner_key

_OWNED = re.compile(
    r"\b(my|our)\s+((?:favou?rite\s+)?[a-z'-]+(?:\s+(?!(?:is|are|was|were|do|does|did|live|"
    r"lives|work|works|called|named|have|has|like|likes|eat|eats|study|studies)\b)[a-z'-]+)?)",
    re.IGNORECASE,
)
_ADVICE = re.compile(
    r"\b(?:should|recommend|suggest|help|give|make|write|plan|ideas?|"
    r"tell me (?:a|an|some)|buy|cook|visit|gift|present|weather|time is it|"
    r"how (?:do|can) i(?! usually))\b",
    re.IGNORECASE,
)
_ABOUT_ME = re.compile(
    r"\b(?:(?:remember|know|recall)\b.*\b(?:my|our|me|i|we)\b|who am i|how old am i|"
    r"\b(?:i|we)\s+usually\b|\b(?:where|when|what|who|which)\s+did\s+(?:i|we)\b|"
    r"(?:where|what|which|who|how|do|did|am|are)\b.*\b(?:i|we)\s+(?:live|work|study|come from|"
    r"eat|drink|like|love|hate|enjoy|prefer|have|own|play|speak|drive|grow up|do for (?:a )?"
    r"(?:living|work)|allergic|from|called|born|vegetarian|vegan|married|support|read|watch|"
    r"cook|collect|ride|smoke)\b)",
    re.IGNORECASE,
)
_QUESTION = re.compile(
    r"^(?:what|who|whom|whose|where|when|which|how|do|does|did|is|are|am|was|were|can|could|"
    r"have|has)\b|\?\s*$",
    re.IGNORECASE,
)
_FORGET = re.compile(
    r"^(?:please\s+|can you\s+|could you\s+|i want you to\s+)?(?:forget|delete|erase|remove|"
    r"stop remembering|don't remember|do not remember)\s+(?:about\s+|that\s+|everything\s+about\s+|"
    r"what\s+i\s+(?:said|told you)\s+about\s+)?(?P<what>.+?)[.!?\s]*$",
    re.IGNORECASE,
)
SHARED = frozenset(
    ("solar", "planet", "world", "country", "galaxy", "universe", "sun", "moon", "society",
     "species", "own", "time", "lives", "language", "history", "environment")
)  # fmt: skip
"""What "our" shares with everyone ("our solar system"): not the user's own."""
_NOT_A_THING = frozenset(("it", "that", "this", "about it", "about that", "everything", "me"))


@dataclass(frozen=True)
class PersonalQuestion:
    """A question about the user's own facts.

    Attributes:
        text: The question, as asked.
        owned: What the user owns that it asks about ("my sister" → "sister"),
            lower case; empty for a question about the user themselves.
    """

    text: str
    owned: tuple[str, ...]

    def not_told(self) -> str:
        """The honest answer when nothing was told: "you haven't told me …"."""
        topic = next((o for o in self.owned if o.split()[-1] != "name"), None)
        if topic is None and "name" in self.owned:
            return "I don't know your name yet. You haven't told me."
        about = f"about your {topic}" if topic else "that"
        return f"I don't know. You haven't told me {about} yet."


def personal_question(text: str) -> PersonalQuestion | None:
    """``text`` as a question about the user's own facts, or None."""
    asked = strip_filler(text)
    if not asked or not _QUESTION.search(asked) or _ADVICE.search(asked):
        return None
    owned = tuple(
        m.group(2).lower()
        for m in _OWNED.finditer(asked)
        if m.group(2).split()[0].lower() not in SHARED
    )
    if not owned and not _ABOUT_ME.search(asked):
        return None
    return PersonalQuestion(asked, owned)


def forget_request(text: str) -> str | None:
    """What the user asks Coda to forget ("my wifi password"), or None."""
    match = _FORGET.match(strip_filler(text))
    if not match or match["what"].lower() in _NOT_A_THING:
        return None
    return match["what"]


def _forms(subject: str) -> tuple[str, str, str, str]:
    """Subject as asked, its "do" and "be", and its possessive: ("my sister", "does", …)."""
    key = owner_key(subject)
    if key == "i":
        said = "we" if subject.lower() == "we" else "I"
        return said, "do", ("are" if said == "we" else "am"), ("our" if said == "we" else "my")
    return subject.lower(), "does", "is", f"{subject.lower()}'s"


def likely_questions(fact: Fact) -> str:
    """Questions, in the user's words, that ``fact`` answers (empty if none are known)."""
    if not fact.relation:
        return ""
    who, do, be, poss = _forms(fact.subject)
    relation, value = fact.relation, fact.value
    if owner_key(fact.subject) == "my name":
        return "What is my name? What am I called? Who am I? Do you remember my name?"
    if owner_key(fact.subject) == "my age":
        return "How old am I? What is my age?"
    templates = {
        "is called": f"What is {who} called? What is the name of {who}? What's {poss} name?",
        "is a": f"What {be} {who}? What does {who} do for work? What is {poss} job?",
        "live in": f"Where {do} {who} live? Which city {do} {who} live in? Where is {poss} home?",
        "is from": f"Where {be} {who} from? Where does {who} come from?",
        "was born in": f"Where was {who} born?",
        "grew up in": f"Where did {who} grow up?",
        "work as": f"What {do} {who} do for work? What is {poss} job? What {do} {who} do?",
        "work at": f"Where {do} {who} work? Who {do} {who} work for?",
        "study": f"What {do} {who} study?",
        "is allergic to": f"What {be} {who} allergic to? {be} {who} allergic to anything? "
        f"Is there anything {who} can't eat? What should {who} avoid eating?",
        "have": f"What {do} {who} have? {do} {who} have any pets? What pets {do} {who} have?",
    }
    if relation == "is":
        if is_person(fact.subject):
            return _capitalized(f"{be} {who} {value}? What {be} {who} like?")
        return f"What is {who}? Do you remember {who}?"
    default = f"What {do} {who} {relation}? {do} {who} {relation} {value}?"
    if fact.kind == "preference":  # asked as "like", whichever verb was said
        default += f" What {do} {who} like? What kind of {value.split()[-1]} {do} {who} like?"
    return _capitalized(templates.get(relation, default))


def _capitalized(questions: str) -> str:
    return re.sub(r"(^|[?] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), questions)
