"""The fast path of learning: facts the user states, read by rules in microseconds.

Each clause of a statement is matched against the ways people say things about
themselves and their world ("We have a cat called Luna.", "I moved to Berlin
last year.", "I don't eat meat."), and becomes a normalized ``Fact``. Questions
are never facts, and nor are requests to forget. What the rules cannot read,
the model-based extractor (``coda.memory.model_extractor``) reads in the
background.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from coda.memory.facts import Fact, is_person

_FILLER = re.compile(
    r"^(?:(?:um+|uh+|well|so|oh|okay|ok|hi|hello|hey|coda|by the way|also|and|actually|just|"
    r"just so you know|you know what|guess what|fun fact)[,\s]+)+",
    re.IGNORECASE,
)
_QUESTION_START = re.compile(
    r"^(?:what|who|whom|whose|where|when|why|how|which|do|does|did|is|are|am|was|were|can|"
    r"could|would|will|should|have|has|tell|forget|don't remember|do not remember)\b",
    re.IGNORECASE,
)
_REMEMBER = re.compile(
    r"^(?:please\s+)?(?:remember|note|keep in mind)(?:\s+that)?[,:]?\s+(?P<rest>.+)$",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.!?;])\s+")
_CLAUSE = re.compile(
    r",\s*(?:and|but|so)\s+|\s+(?:and|but)\s+(?=(?:i|we|my|our)\b)|,\s+(?=(?:i|we|my|our)\b)",
    re.IGNORECASE,
)
_WHEN = re.compile(
    r"\s+(?:(?:last|this|next)\s+(?:year|month|week|summer|winter|spring|autumn|fall)|"
    r"(?:a\s+(?:few\s+)?|\d+\s+|two\s+|three\s+)?(?:years?|months?|weeks?)\s+ago|"
    r"now|nowadays|these\s+days|recently|again|too|as\s+well|at\s+the\s+moment|since\s+\w+|"
    r"for\s+\w+\s+years)$",
    re.IGNORECASE,
)

_S = r"(?P<subj>i|we|(?:my|our)\s+[\w'-]+(?:\s+[\w'-]+){0,2})"  # "my son's favourite food"
_BE = r"(?:\s+(?:is|are|am)|'s|'re|'m)\s+"  # "I am", "I'm", "my dog's"
_VERBS = (
    r"like|love|enjoy|prefer|hate|dislike|adore|eat|drink|play|speak|drive|own|smoke|"
    r"support|read|watch|cook|collect|ride"
)
# What "I am …" says that lasts (not "I'm tired" or "I'm going out").
_STATES = (
    r"(?:a|an)\s+.+|vegetarian|vegan|pescatarian|married|single|divorced|retired|engaged|"
    r"left-handed|right-handed|pregnant|lactose intolerant|diabetic|colou?r\s?blind|"
    r"(?:\w+\s+)?(?:years?\s+old)"
)
_PREFERENCES = frozenset(("like", "love", "enjoy", "prefer", "hate", "dislike", "adore"))


def _value(text: str) -> str:
    text = _WHEN.sub("", text.strip().rstrip(".!,"))
    return _WHEN.sub("", text).strip()


def _plain(verb: str) -> str:
    """The verb's base form: "lives" → "live", "has" → "have"."""
    verb = verb.lower()
    if verb in ("has", "have", "'ve got"):
        return "have"
    for suffix in ("es", "s"):
        base = verb.removesuffix(suffix)
        if verb.endswith(suffix) and re.fullmatch(_VERBS, base):
            return base
    return verb


def _possessive(subject: str) -> str:
    lowered = subject.lower()
    return {"i": "my", "we": "our"}.get(lowered, f"{subject}'s")


_Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], list[Fact]]]


def _rule(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern + r"$", re.IGNORECASE)


def _name(m: re.Match[str]) -> list[Fact]:
    return [Fact("my name", "is", _value(m["value"]))]


def _named_thing(m: re.Match[str]) -> list[Fact]:
    owner = _possessive(m["subj"])
    return [
        Fact(m["subj"], "have", _value(f"{m['what']} called {m['name']}")),
        Fact(f"{owner} {m['thing'].lower()}", "is called", _value(m["name"])),
    ]


def _relation(relation: str) -> Callable[[re.Match[str]], list[Fact]]:
    return lambda m: [Fact(m["subj"], relation, _value(m["value"]))]


def _verb(m: re.Match[str]) -> list[Fact]:
    verb = _plain(m["verb"])
    negated = bool(m.groupdict().get("neg"))
    kind = "preference" if verb in _PREFERENCES else "fact"
    return [Fact(m["subj"], verb, _value(m["value"]), negated, kind)]


def _is(m: re.Match[str]) -> list[Fact]:
    value = _value(m["value"])
    article = re.match(r"(?:a|an)\s+(.+)", value, re.IGNORECASE)
    negated = bool(m.groupdict().get("neg"))
    if article and is_person(m["subj"]):
        return [Fact(m["subj"], "is a", article.group(1), negated)]
    kind = "preference" if "favo" in m["subj"].lower() else "fact"
    return [Fact(m["subj"], "is", value, negated, kind)]


_RULES: list[_Rule] = [
    (
        _rule(r"(?:my name is|my name's|call me|i'm called|i am called|people call me)\s+"
              r"(?P<value>[\w' -]{1,40})"),
        _name,
    ),
    # "I'm Ada", not "I'm tired" or "I'm Italian": a capitalized word, as heard.
    (re.compile(r"(?i:i'm|i am)\s+(?P<value>[A-Z][a-z]+)(?<!ian)(?<!ese)(?<!ish)$"), _name),
    (
        _rule(_S + r"\s+(?:have|has|got|'ve got|have got)\s+(?P<what>(?:a|an|one|two|three|\d+)"
              r"\s+(?P<thing>[\w-]+))\s+(?:called|named)\s+(?P<name>.+)"),
        _named_thing,
    ),
    (_rule(_S + _BE + r"(?:called|named)\s+(?P<value>.+)"), _relation("is called")),
    (
        _rule(_S + r"\s+(?:just\s+|recently\s+)?(?:moved|relocated)\s+(?:from\s+.+?\s+)?"
              r"(?:back\s+)?to\s+(?P<value>.+)"),
        _relation("live in"),
    ),
    (
        _rule(_S + r"\s+(?:still\s+|now\s+|currently\s+)?(?:live|lives)\s+in\s+(?P<value>.+)"),
        _relation("live in"),
    ),
    (_rule(_S + _BE + r"(?:originally\s+)?from\s+(?P<value>.+)"), _relation("is from")),
    (_rule(_S + r"\s+(?:was|were)\s+born\s+in\s+(?P<value>.+)"), _relation("was born in")),
    (_rule(_S + r"\s+grew\s+up\s+in\s+(?P<value>.+)"), _relation("grew up in")),
    (_rule(_S + r"\s+(?:work|works)\s+as\s+(?P<value>.+)"), _relation("work as")),
    (_rule(_S + r"\s+(?:work|works)\s+(?:at|for|in)\s+(?P<value>.+)"), _relation("work at")),
    (_rule(_S + r"\s+(?:study|studies)\s+(?P<value>.+)"), _relation("study")),
    (
        _rule(_S + _BE + r"(?:also\s+|very\s+|severely\s+|really\s+)*allergic\s+to\s+"
              r"(?P<value>.+)"),
        _relation("is allergic to"),
    ),
    (_rule(r"(?:i'm|i am)\s+(?P<value>\d+)(?:\s+years?\s+old)?"), lambda m: [
        Fact("my age", "is", m["value"])
    ]),
    (
        _rule(_S + r"\s+(?P<neg>don't|do not|doesn't|does not|never|no longer)\s+"
              r"(?P<verb>" + _VERBS + r"|have)\s+(?P<value>.+)"),
        _verb,
    ),
    (
        _rule(_S + r"\s+(?:really\s+|also\s+|only\s+|absolutely\s+)?(?P<verb>(?:" + _VERBS
              + r")(?:s|es)?)\s+(?P<value>.+)"),
        _verb,
    ),
    (
        _rule(_S + r"\s+(?P<verb>have|has|'ve got)\s+"
              r"(?P<value>(?:a|an|no|one|two|three|four|\d+)\s.+)"),
        _verb,
    ),
    (_rule(r"(?P<subj>i|we)" + _BE + r"(?P<neg>not\s+)?(?P<value>" + _STATES + r")"), _is),
    (_rule(r"(?P<subj>(?:my|our)\s+[\w'-]+(?:\s+[\w'-]+){0,2})" + _BE + r"(?P<neg>not\s+)?"
           r"(?P<value>.+)"), _is),
]  # fmt: skip


def strip_filler(text: str) -> str:
    """``text`` without the fillers and greetings that open it ("um, so", "hi")."""
    return _FILLER.sub("", text.strip())


def statements(user_text: str) -> list[str]:
    """The clauses of ``user_text`` that state something (not questions or requests)."""
    out: list[str] = []
    for raw in _SENTENCE.split(user_text.strip()):
        sentence = strip_filler(raw)
        if not sentence or sentence.endswith("?") or _QUESTION_START.match(sentence):
            continue
        remembered = _REMEMBER.match(sentence)
        if remembered:
            sentence = remembered.group("rest")
        out.extend(c.strip(" ,") for c in _CLAUSE.split(sentence) if c.strip(" ,"))
    return out


def extract(user_text: str) -> list[Fact]:
    """The facts the rules read in one user utterance (possibly none)."""
    found: list[Fact] = []
    for clause in statements(user_text):
        clause = strip_filler(clause).rstrip(".!")
        for pattern, build in _RULES:
            match = pattern.match(clause)
            if match:
                found.extend(f for f in build(match) if f.value)
                break
    return found
