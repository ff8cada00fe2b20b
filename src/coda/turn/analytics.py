"""Counters and mean stage timings of every turn, and per-conversation analytics.

Everything is a running sum, so the figures stay bounded however long the engine
runs; a conversation's analytics are dropped when it ends.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from coda.turn.events import TurnOutcome


@dataclass
class ConversationFigures:
    """One conversation's running figures."""

    turns: int = 0
    interrupted: int = 0
    modes: Counter[str] = field(default_factory=Counter)
    first_audio_ms_sum: float = 0.0
    first_audio_count: int = 0
    memories_recalled: int = 0
    tool_calls: int = 0

    def as_dict(self) -> dict[str, Any]:
        """For ``get_stats()``."""
        mean = self.first_audio_ms_sum / self.first_audio_count if self.first_audio_count else None
        return {
            "turns": self.turns,
            "interrupted": self.interrupted,
            "modes": dict(self.modes),
            "mean_first_audio_ms": None if mean is None else round(mean, 1),
            "memories_recalled": self.memories_recalled,
            "tool_calls": self.tool_calls,
        }


class TurnStats:
    """What the engine reports in ``get_stats()``.

    Args:
        analytics: Keep per-conversation figures (``VoiceConfig.enable_analytics``).
    """

    def __init__(self, analytics: bool) -> None:
        self.analytics = analytics
        self.turns = 0
        self.errors: Counter[str] = Counter()
        self.hook_failures: Counter[str] = Counter()
        self._timings: dict[str, tuple[int, float]] = {}
        self._conversations: dict[str, ConversationFigures] = {}

    def record(self, outcome: TurnOutcome) -> None:
        """Fold in a stored turn."""
        self.turns += 1
        timings = outcome.metadata.get("timings_ms", {})
        for key, value in timings.items():
            count, total = self._timings.get(key, (0, 0.0))
            self._timings[key] = (count + 1, total + value)
        if not self.analytics:
            return
        figures = self._conversations.setdefault(outcome.conversation_id, ConversationFigures())
        figures.turns += 1
        figures.interrupted += outcome.interrupted
        figures.modes[outcome.mode.value] += 1
        if "first_audio" in timings:
            figures.first_audio_ms_sum += timings["first_audio"]
            figures.first_audio_count += 1
        figures.memories_recalled += len(outcome.metadata.get("memories", []))
        figures.tool_calls += len(outcome.metadata.get("tool_results", []))

    def record_error(self, error: BaseException) -> None:
        """Count a failed turn by its error type."""
        self.errors[type(error).__name__] += 1

    def forget(self, conversation_id: str) -> None:
        """Drop an ended conversation's figures."""
        self._conversations.pop(conversation_id, None)

    def snapshot(self) -> dict[str, Any]:
        """Turns, errors, mean timings, and (with analytics) each conversation's figures."""
        means = {k: round(total / count, 1) for k, (count, total) in self._timings.items()}
        return {
            "turns": self.turns,
            "errors": sum(self.errors.values()),
            "errors_by_type": dict(self.errors),
            "hook_failures": dict(self.hook_failures),
            "mean_timings_ms": means,
            "analytics": {cid: f.as_dict() for cid, f in self._conversations.items()}
            if self.analytics
            else None,
        }
