"""What the user said about themselves, as Coda should say it back: "my" → "your".

Memories keep the user's own words ("My sister lives in Lisbon."), which a later
question in the user's words finds best. Put into the prompt that way, a small
model repeats them verbatim and answers in the wrong person; in the second
person ("Your sister lives in Lisbon.") it repeats the right thing.
"""

from __future__ import annotations

import re

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


def second_person(text: str) -> str:
    """``text`` with the speaker's first person turned into "you"/"your"."""
    text = _CALL_ME.sub("You like to be called", text.strip())
    out: list[str] = []
    position = 0
    after_i = False
    for match in _WORD.finditer(text):
        word = match.group(0)
        lowered = word.lower()
        swapped = _SWAPS.get(lowered) or (_VERBS.get(lowered) if after_i else None)
        before = text[: match.start()].rstrip()
        starts = not before or before.endswith((".", "!", "?"))
        out.append(text[position : match.start()])
        out.append(_cased(swapped, word, starts) if swapped else word)
        position = match.end()
        after_i = lowered == "i"
    out.append(text[position:])
    return "".join(out)


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


def third_person(text: str) -> str:
    """``text`` about the user: "I live in Paris." → "The user lives in Paris."."""
    text = text.strip().replace("I'm ", "I am ").replace("We're ", "We are ")
    out: list[str] = []
    position = 0
    after_subject = False
    for match in _WORD.finditer(text):
        word = match.group(0)
        lowered = word.lower()
        out.append(text[position : match.start()])
        if lowered in _THIRD:
            swapped = _THIRD[lowered]
            before = text[: match.start()].rstrip()
            starts = not before or before.endswith((".", "!", "?"))
            out.append(swapped[:1].upper() + swapped[1:] if starts else swapped)
            after_subject = lowered in ("i", "we")
        else:
            out.append(_third_verb(word) if after_subject else word)
            after_subject = False
        position = match.end()
    out.append(text[position:])
    return "".join(out)
