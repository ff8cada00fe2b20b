"""Adaptive mode: pick the responder for each turn from what can be measured.

Features of the turn (length, kind of utterance, whether it needs tools or
memory) say what the turn needs: small talk wants the fastest answer, a question
that needs reasoning, tools or memory wants the strongest. Each responder's
measured latency, recent quality and health say what it can give. A responder
that is unavailable or failing is never chosen; one whose measured latency
exceeds ``max_latency_ms`` is chosen only if nothing else can answer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from coda.core.enums import VoiceProcessingMode
from coda.core.errors import ConfigurationError

GREETINGS = frozenset(
    [
        "hi",
        "hello",
        "hey",
        "hiya",
        "howdy",
        "morning",
        "evening",
        "afternoon",
        "thanks",
        "thank",
        "bye",
        "goodbye",
        "cheers",
    ]
)
_TOOL_PATTERNS = re.compile(
    r"\b(\d+\s*(times|plus|minus|divided|x|\*|/|\+|-)\s*\d+|times|plus|minus|divided by|"
    r"percent|square root|calculate|convert|how many (inches|feet|miles|km|kilometers|pounds|"
    r"grams|ounces)|what time|what day|what date|today|tomorrow|timer|remind)\b",
    re.IGNORECASE,
)
_MEMORY_PATTERNS = re.compile(
    r"\b(remember|my name|i told you|last time|earlier|do you know my|what did i)\b", re.IGNORECASE
)
_QUESTION_WORDS = ("what", "who", "when", "where", "why", "how", "which", "can", "could", "is")


@dataclass(frozen=True)
class TurnFeatures:
    """What the policy knows about a turn before answering it."""

    words: int
    kind: str  # "greeting", "question", "statement"
    needs_tools: bool
    needs_memory: bool

    @classmethod
    def of(cls, text: str) -> TurnFeatures:
        """Measure the features of the user's words."""
        words = re.findall(r"[a-z0-9']+", text.lower())
        if words and len(words) <= 4 and words[0] in GREETINGS:
            kind = "greeting"
        elif text.rstrip().endswith("?") or (words and words[0] in _QUESTION_WORDS):
            kind = "question"
        else:
            kind = "statement"
        return cls(
            words=len(words),
            kind=kind,
            needs_tools=bool(_TOOL_PATTERNS.search(text)),
            needs_memory=bool(_MEMORY_PATTERNS.search(text)),
        )

    @property
    def demanding(self) -> bool:
        """Needs the strongest answer rather than the fastest."""
        return self.needs_tools or self.needs_memory or (self.kind == "question" and self.words > 6)


@dataclass
class BackendStats:
    """Running figures of one mode within a conversation (exponential averages)."""

    latency_ms: float | None = None
    quality: float | None = None
    failures: int = 0
    turns: int = 0
    failed_at: float | None = None

    def record(self, latency_ms: float, quality: float, smoothing: float) -> None:
        """Fold in a finished turn."""
        self.turns += 1
        self.failures = 0
        self.latency_ms = (
            latency_ms
            if self.latency_ms is None
            else ((1 - smoothing) * self.latency_ms + smoothing * latency_ms)
        )
        self.quality = (
            quality
            if self.quality is None
            else ((1 - smoothing) * self.quality + smoothing * quality)
        )

    def as_dict(self) -> dict[str, Any]:
        """For response metadata."""
        return {
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "quality": None if self.quality is None else round(self.quality, 3),
            "failures": self.failures,
            "turns": self.turns,
        }


@dataclass
class AdaptivePolicy:
    """Chooses a mode per turn and learns from each outcome, per conversation.

    Attributes:
        max_latency_ms: A mode measured slower than this is avoided.
        smoothing: Weight of the newest outcome in the running averages.
        max_failures: Consecutive failures after which a mode is treated as down.
        retry_after_seconds: How long a mode that is down is left alone before one
            turn tries it again (a restarted Moshi server comes back into use).
        now: A monotonic clock in seconds.
    """

    max_latency_ms: float = 1000.0
    smoothing: float = 0.3
    max_failures: int = 2
    retry_after_seconds: float = 30.0
    now: Callable[[], float] = time.monotonic
    stats: dict[tuple[str, VoiceProcessingMode], BackendStats] = field(default_factory=dict)

    def _stats(self, conversation_id: str, mode: VoiceProcessingMode) -> BackendStats:
        return self.stats.setdefault((conversation_id, mode), BackendStats())

    def choose(
        self,
        conversation_id: str,
        features: TurnFeatures,
        available: dict[VoiceProcessingMode, str | None],
    ) -> tuple[VoiceProcessingMode, dict[str, Any]]:
        """The mode for this turn, with the explanation recorded in metadata.

        Args:
            conversation_id: Whose outcomes to learn from.
            features: The turn's features.
            available: Each known mode, with None if available or the reason it is not.

        When every available mode is resting after failures, the one that failed
        longest ago is tried again: a turn is answered if anything can answer it.

        Raises:
            ConfigurationError: If no mode is available at all.
        """
        usable = []
        resting = []
        excluded = {}
        for mode, why_not in available.items():
            stats = self._stats(conversation_id, mode)
            if why_not is not None:
                excluded[mode.value] = why_not
            elif stats.failures >= self.max_failures and not self._due_for_retry(stats):
                excluded[mode.value] = f"failed {stats.failures} times in a row"
                resting.append(mode)
            else:
                usable.append(mode)
        if not usable and resting:
            usable = [min(resting, key=lambda m: self._stats(conversation_id, m).failed_at or 0.0)]
            excluded.pop(usable[0].value)
        if not usable:
            raise ConfigurationError(f"no responder is available: {excluded}")
        within = [m for m in usable if self._fast_enough(conversation_id, m)]
        pool = within or usable
        ranked = sorted(pool, key=lambda m: self._rank(conversation_id, m, features), reverse=True)
        chosen = ranked[0]
        need = "strongest" if features.demanding else "fastest"
        explanation = {
            "features": features.__dict__,
            "wanted": need,
            "candidates": {m.value: self._stats(conversation_id, m).as_dict() for m in usable},
            "excluded": excluded,
            "reason": f"{chosen.value}: the {need} available mode for a {features.kind}"
            + ("" if within else f" (none measured within {self.max_latency_ms:.0f} ms)"),
        }
        return chosen, explanation

    def _due_for_retry(self, stats: BackendStats) -> bool:
        return (
            stats.failed_at is not None and self.now() - stats.failed_at >= self.retry_after_seconds
        )

    def _fast_enough(self, conversation_id: str, mode: VoiceProcessingMode) -> bool:
        latency = self._stats(conversation_id, mode).latency_ms
        return latency is None or latency <= self.max_latency_ms

    def _rank(
        self, conversation_id: str, mode: VoiceProcessingMode, features: TurnFeatures
    ) -> float:
        # Prior strength and speed of each mode, corrected by what was measured.
        strength = {VoiceProcessingMode.HYBRID: 1.0, VoiceProcessingMode.LLM_ENHANCED: 0.8}
        speed = {VoiceProcessingMode.MOSHI_ONLY: 1.0, VoiceProcessingMode.LLM_ENHANCED: 0.7}
        stats = self._stats(conversation_id, mode)
        quality = stats.quality if stats.quality is not None else strength.get(mode, 0.5)
        if features.demanding:
            return strength.get(mode, 0.3) + quality
        fast = speed.get(mode, 0.4)
        if stats.latency_ms is not None:
            fast = max(0.0, 1.0 - stats.latency_ms / (2 * self.max_latency_ms))
        return fast + 0.5 * quality

    def record_success(
        self, conversation_id: str, mode: VoiceProcessingMode, latency_ms: float, quality: float
    ) -> None:
        """Learn from a finished turn."""
        self._stats(conversation_id, mode).record(latency_ms, quality, self.smoothing)

    def forget(self, conversation_id: str) -> None:
        """Drop what was learned in a conversation that has ended."""
        for key in [k for k in self.stats if k[0] == conversation_id]:
            del self.stats[key]

    def record_failure(self, conversation_id: str, mode: VoiceProcessingMode) -> None:
        """Learn from a failed turn."""
        stats = self._stats(conversation_id, mode)
        stats.failures += 1
        stats.failed_at = self.now()
