"""A fact about the user or their world, normalized: who, what, and the value.

``Fact("my sister", "live in", "Lisbon")`` is "My sister lives in Lisbon." Its
key (who, what) decides updates: a new value of a single-valued relation (where
someone lives, what something is called) supersedes the old one, which is kept
as history; a multi-valued one (likes, allergies) keys on the value too, so
"I eat meat now" supersedes "I don't eat meat" but "I like tea" adds to "I like
jazz". Facts are rendered in the user's first person, which the memory keeps and
a later question in the user's words finds best; ``coda.memory.perspective``
turns them towards the user ("Your sister …") or about them ("The user's …").
"""

from __future__ import annotations

from dataclasses import dataclass

_THIRD = {"have": "has", "do": "does", "go": "goes"}
SINGLE_VALUED = frozenset(
    ("is", "is called", "is a", "is from", "live in", "work as", "work at", "study",
     "was born in", "grew up in")
)  # fmt: skip
"""Relations with one current value: a new one supersedes the old."""
_BE = {"i": "am", "we": "are"}
_PEOPLE = frozenset(
    ("sister", "brother", "sibling", "mother", "mom", "mum", "father", "dad", "parent", "wife",
     "husband", "partner", "son", "daughter", "kid", "child", "children", "baby", "friend",
     "boss", "colleague", "girlfriend", "boyfriend", "fiance", "fiancee", "grandma",
     "grandmother", "grandfather", "grandpa", "aunt", "uncle", "cousin", "niece", "nephew",
     "neighbour", "neighbor", "roommate", "flatmate", "family", "twin", "cat", "dog", "pet",
     "puppy", "kitten", "horse", "rabbit", "hamster", "parrot", "bird", "fish", "turtle")
)  # fmt: skip


def owner_key(subject: str) -> str:
    """``subject`` with "our"/"we" folded into "my"/"I", lower case (for keys and matching)."""
    folded = {"our": "my", "we": "i", "us": "i", "me": "i"}
    return " ".join(folded.get(w, w) for w in subject.lower().split())


def is_person(subject: str) -> bool:
    """The user, a person or a pet ("I", "my sister", "our cats"), not a thing they have."""
    words = subject.lower().split()
    if words in (["i"], ["we"]):
        return True
    if any(w.endswith("'s") for w in words):  # "my son's teacher": whose it is decides nothing
        words = words[-1:]
    words = [w.removesuffix("'s") for w in words]
    return any(w in _PEOPLE or w[:-1] in _PEOPLE for w in words)


def _conjugate(relation: str, subject: str, negated: bool) -> str:
    """``relation`` ("am allergic to", "live in") as ``subject`` says it."""
    person = subject.lower() if subject.lower() in ("i", "we") else "it"
    head, _, rest = relation.partition(" ")
    if head in ("was", "grew"):  # past: the same for every person
        return f"never {relation}" if negated else relation
    if head == "is":
        be = _BE.get(person, "is")
        return f"{be} not {rest}".strip() if negated else f"{be} {rest}".strip()
    if negated:
        return f"{'doesn' if person == 'it' else 'don'}'t {relation}"
    if person != "it":
        return relation
    third = _THIRD.get(head) or (head + "es" if head.endswith(("s", "sh", "ch")) else head + "s")
    return f"{third} {rest}".strip()


@dataclass(frozen=True)
class Fact:
    """One normalized fact.

    Attributes:
        subject: Who or what it is about, in the user's words ("I", "we",
            "my sister", "our cat", "my wifi password").
        relation: The relation in its base form, "to be" as "is" ("live in",
            "is called", "is allergic to", "like"); empty for a sentence kept whole.
        value: What the relation holds ("Lisbon", "Luna", "peanuts").
        negated: The user said it is not so ("I don't eat meat").
        kind: "fact" or "preference".
    """

    subject: str
    relation: str
    value: str
    negated: bool = False
    kind: str = "fact"

    @property
    def single_valued(self) -> bool:
        """A new value replaces the old one.

        "is" holds many values for a person or pet ("I am vegetarian", "I am a
        nurse"), one for an attribute ("my favourite colour is green").
        """
        if self.relation in ("is", "is a") and is_person(self.subject):
            return self.relation == "is a" and owner_key(self.subject) != "i"
        return self.relation in SINGLE_VALUED

    @property
    def key(self) -> str:
        """What a later statement must share to supersede this one."""
        base = f"{owner_key(self.subject)}|{self.relation}"
        return base if self.single_valued else f"{base}|{self.value.lower()}"

    @property
    def text(self) -> str:
        """The fact in the user's first person: "My sister lives in Lisbon."."""
        if not self.relation:
            return self.value
        subject = "I" if self.subject.lower() in ("i", "me") else self.subject
        relation = _conjugate(self.relation, subject, self.negated)
        sentence = f"{subject} {relation} {self.value}".strip()
        return sentence[:1].upper() + sentence[1:] + "."
