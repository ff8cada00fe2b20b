"""What the user said about themselves, told back to them or told about them.

Memories keep the user's first person ("My sister lives in Lisbon."), which a
later question in the user's words finds best. An answer from memory turns it
towards the user (``second_person``: "Your sister lives in Lisbon."); the LLM's
context states it about the user (``third_person``: "The user's sister lives in
Lisbon."), so a small model does not repeat "my sister" back as its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_SWAPS = {
    "i": "you",
    "me": "you",
    "my": "your",
    "mine": "yours",
    "myself": "yourself",
    "we": "you",
    "us": "you",
    "our": "your",
    "ours": "yours",
    "ourselves": "yourselves",
    "i'm": "you're",
    "i've": "you've",
    "i'd": "you'd",
    "i'll": "you'll",
    "we're": "you're",
    "we've": "you've",
    "we'd": "you'd",
    "we'll": "you'll",
}
_VERBS = {"am": "are", "was": "were"}  # after "I"
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_CALL_ME = re.compile(r"^call me\b", re.IGNORECASE)  # "Call me Ada." is a name, not an order


def _cased(word: str, like: str, sentence_start: bool) -> str:
    # "I" is upper case anywhere; "you" only where a sentence starts.
    upper = sentence_start if like.lower().startswith("i") else like[:1].isupper()
    return word[:1].upper() + word[1:] if upper else word


def _rewrite(text: str, swap: Callable[[str, str, bool], str]) -> str:
    """Each word of ``text`` as ``swap(word, previous word in lower case, starts a sentence)``."""
    out: list[str] = []
    position = 0
    previous = ""
    for match in _WORD.finditer(text):
        word = match.group(0)
        before = text[: match.start()].rstrip()
        out.append(text[position : match.start()])
        out.append(swap(word, previous, not before or before.endswith((".", "!", "?"))))
        position = match.end()
        previous = word.lower()
    out.append(text[position:])
    return "".join(out)


def _towards(word: str, previous: str, starts: bool) -> str:
    lowered = word.lower()
    swapped = _SWAPS.get(lowered) or (_VERBS.get(lowered) if previous == "i" else None)
    return _cased(swapped, word, starts) if swapped else word


def second_person(text: str) -> str:
    """``text`` with the speaker's first person turned into "you"/"your"."""
    return _rewrite(_CALL_ME.sub("You like to be called", text.strip()), _towards)


_THIRD = {
    "i": "the user",
    "me": "the user",
    "my": "the user's",
    "mine": "the user's",
    "myself": "themselves",
    "we": "the user",
    "us": "the user",
    "our": "the user's",
    "ours": "the user's",
}
_AFTER_USER = {"am": "is", "are": "is", "'m": "is", "have": "has", "do": "does", "don't": "doesn't",
               "were": "was", "'ve": "has"}  # fmt: skip
_NOT_VERBS = frozenset(("was", "never", "also", "really", "still", "is", "has", "can", "will"))


def _third_verb(word: str) -> str:
    lowered = word.lower()
    if lowered in _AFTER_USER:
        return _AFTER_USER[lowered]
    if lowered in _NOT_VERBS or lowered.endswith(("ed", "'t")):
        return word
    if lowered.endswith("y") and lowered[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + ("es" if lowered.endswith(("s", "sh", "ch", "o", "x")) else "s")


def _about(word: str, previous: str, starts: bool) -> str:
    swapped = _THIRD.get(word.lower())
    if swapped is not None:
        return swapped[:1].upper() + swapped[1:] if starts else swapped
    return _third_verb(word) if previous in ("i", "we") else word


def third_person(text: str) -> str:
    """``text`` about the user: "I live in Paris." → "The user lives in Paris."."""
    return _rewrite(text.strip().replace("I'm ", "I am ").replace("We're ", "We are "), _about)
