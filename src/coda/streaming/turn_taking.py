"""The end-of-turn decision: how long a pause must last before the user's turn is over.

A pause after a surely complete turn ("What time is it?") ends it almost at
once; a pause after an unfinished shape waits long enough for the speaker to go
on: counting or a list ("1, 2,"), a trailing "and", "um", a preposition or an
unanswered "because". The words come from the speculative transcript made at
the first pause; the audio's own verdict (Smart Turn, ``coda.audio.smart_turn``)
can move a turn between the two. The silence budgets are in
``StreamingConfig``; the policy returns one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from coda.core.config import StreamingConfig

_WORD = re.compile(r"[a-z0-9']+")
_NUMBER_WORDS = frozenset((
    "zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy",
    "eighty", "ninety", "hundred", "thousand",
))  # fmt: skip


class TurnShape(str, Enum):
    """What the words so far say about the turn."""

    COMPLETE = "complete"
    UNSURE = "unsure"
    UNFINISHED = "unfinished"


@dataclass(frozen=True)
class TurnVerdict:
    """The decision for one pause: the shape, why, and the silence it needs (ms)."""

    shape: TurnShape
    reason: str
    silence_ms: int


def _is_number(word: str) -> bool:
    return word.isdigit() or word in _NUMBER_WORDS


def text_shape(text: str, unfinished_words: frozenset[str]) -> tuple[TurnShape, str]:
    """The shape of a transcript, from its words and punctuation alone."""
    stripped = text.strip()
    words = _WORD.findall(stripped.lower())
    if not words:
        return TurnShape.UNSURE, "no words"
    if all(_is_number(w) for w in words):
        return TurnShape.UNFINISHED, "numbers only (counting, a number being dictated)"
    if stripped.endswith((",", "...", "…", "-", ":", ";")):
        return TurnShape.UNFINISHED, "trails off"
    if stripped.endswith("?"):  # "Where are you from?" is over, though it ends in "from"
        return TurnShape.COMPLETE, "a question"
    if words[-1] in unfinished_words:
        return TurnShape.UNFINISHED, f"ends in {words[-1]!r}"
    if len(words) >= 2 and _is_number(words[-1]) and _is_number(words[-2]):
        return TurnShape.UNFINISHED, "ends in a run of numbers (a list, digits)"
    if stripped.endswith((".", "!")):
        return TurnShape.COMPLETE, "a complete sentence"
    return TurnShape.UNSURE, "no closing punctuation"


class TurnEndPolicy:
    """Chooses the silence that ends a turn, from its words and (optionally) its audio."""

    def __init__(self, config: StreamingConfig) -> None:
        self._config = config
        self._unfinished = frozenset(config.unfinished_words)
        self._budgets = {
            TurnShape.COMPLETE: config.end_silence_complete_ms,
            TurnShape.UNSURE: config.end_silence_unsure_ms,
            TurnShape.UNFINISHED: config.end_silence_unfinished_ms,
        }

    def decide(self, text: str, audio_complete: float | None = None) -> TurnVerdict:
        """The verdict for a pause after ``text``.

        Args:
            text: The speculative transcript of the utterance so far.
            audio_complete: Smart Turn's probability that the turn is complete
                (None: not available). The words decide an unfinished shape; the
                audio can demote a complete-looking sentence said with a rising,
                going-on intonation, and promote an unpunctuated one.
        """
        shape, reason = text_shape(text, self._unfinished)
        if audio_complete is not None:
            sure = self._config.smart_turn_threshold
            if shape is TurnShape.COMPLETE and audio_complete < 1 - sure:
                shape, reason = TurnShape.UNSURE, f"{reason}, but the voice goes on"
            elif shape is TurnShape.UNSURE and audio_complete >= sure:
                shape, reason = TurnShape.COMPLETE, f"{reason}, but the voice ends"
        return TurnVerdict(shape, reason, self._budgets[shape])
