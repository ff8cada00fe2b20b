"""Personality traits, what they do to a reply, and how feedback moves them.

Each trait is in [0, 1]. Verbosity sets the reply's length (an instruction, a
token cap and a sentence budget that ``adapt_voice_response`` enforces);
formality, warmth and humour set its tone; pace sets the speaking rate.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

DEFAULTS = {"verbosity": 0.5, "formality": 0.4, "warmth": 0.6, "humour": 0.3, "pace": 0.5}

EXPLICIT_STEPS = 4.0
"""Explicit feedback moves a trait by this many ``adjustment_sensitivity`` steps."""
IMPLICIT_STEPS = 2.0
"""A request in the user's own words ("shorter please") moves it by this many."""
INTERRUPTION_STEPS = 1.0
"""Being interrupted (barge-in) shortens replies by this many."""

_SIGNALS: tuple[tuple[re.Pattern[str], str, float], ...] = (
    (
        re.compile(r"\b(too long|shorter|be brief|briefly|less detail|get to the point)\b", re.I),
        "verbosity",
        -1.0,
    ),
    (
        re.compile(r"\b(more detail|tell me more|elaborate|longer answers?)\b", re.I),
        "verbosity",
        1.0,
    ),
    (re.compile(r"\b(slow down|speak slower|too fast|more slowly)\b", re.I), "pace", -1.0),
    (re.compile(r"\b(speak faster|too slow|speed up|more quickly)\b", re.I), "pace", 1.0),
    (re.compile(r"\b(be more formal|too casual)\b", re.I), "formality", 1.0),
    (re.compile(r"\b(be more casual|too formal|relax)\b", re.I), "formality", -1.0),
    (re.compile(r"\b(that's funny|ha ?ha|you're funny|lol)\b", re.I), "humour", 1.0),
)


@dataclass
class Traits:
    """One personality."""

    verbosity: float = DEFAULTS["verbosity"]
    formality: float = DEFAULTS["formality"]
    warmth: float = DEFAULTS["warmth"]
    humour: float = DEFAULTS["humour"]
    pace: float = DEFAULTS["pace"]

    def as_dict(self) -> dict[str, float]:
        """Rounded, for metadata and storage."""
        return {k: round(v, 3) for k, v in asdict(self).items()}

    def nudge(self, trait: str, direction: float, step: float) -> None:
        """Move ``trait`` by ``direction × step``, kept within [0, 1]."""
        value = getattr(self, trait) + direction * step
        setattr(self, trait, min(1.0, max(0.0, value)))

    @property
    def max_sentences(self) -> int:
        """Sentence budget of a reply: 1 (terse) to 4 (expansive)."""
        return 1 + min(3, int(self.verbosity * 4))

    @property
    def max_tokens(self) -> int:
        """Token cap of a reply: 40 (terse) to 200 (expansive)."""
        return round(40 + 160 * self.verbosity)

    def instructions(self) -> str:
        """The traits as instructions for the system prompt."""
        sentences = self.max_sentences
        length = (
            "Answer in one short sentence."
            if sentences == 1
            else f"Answer in at most {sentences} short sentences."
        )
        tone = [
            "formal and polite" if self.formality >= 0.65 else None,
            "relaxed and casual" if self.formality <= 0.3 else None,
            "warm" if self.warmth >= 0.6 else None,
            "with a light touch of humour" if self.humour >= 0.6 else None,
        ]
        chosen = [t for t in tone if t]
        return length + (f" Be {', '.join(chosen)}." if chosen else "")


def signals_in(user_text: str) -> list[tuple[str, float]]:
    """Trait changes the user asked for in their own words: (trait, direction)."""
    return [(trait, sign) for pattern, trait, sign in _SIGNALS if pattern.search(user_text)]


def explicit_changes(feedback: dict[str, object]) -> list[tuple[str, float]]:
    """Trait changes from explicit feedback.

    Understood keys: ``too_long`` / ``too_short`` (bool), ``<trait>``: "more" /
    "less" (or "shorter"/"longer"/"faster"/"slower"), or a signed number of steps.
    """
    changes: list[tuple[str, float]] = []
    if feedback.get("too_long"):
        changes.append(("verbosity", -1.0))
    if feedback.get("too_short"):
        changes.append(("verbosity", 1.0))
    words = {"more": 1.0, "less": -1.0, "longer": 1.0, "shorter": -1.0}
    words |= {"faster": 1.0, "slower": -1.0, "higher": 1.0, "lower": -1.0}
    for trait in DEFAULTS:
        value = feedback.get(trait)
        if isinstance(value, str) and value.lower() in words:
            changes.append((trait, words[value.lower()]))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            changes.append((trait, float(value)))
    return changes
