"""Per-turn stopwatch: marks are milliseconds since the turn started."""

from __future__ import annotations

import time
from collections.abc import Callable


class TurnClock:
    """Measures stage durations and offsets within one turn.

    Args:
        now: A monotonic clock in seconds (injectable for deterministic tests).
    """

    def __init__(
        self, now: Callable[[], float] = time.perf_counter, start: float | None = None
    ) -> None:
        self._now = now
        self._start = now() if start is None else start
        self.marks: dict[str, float] = {}

    def child(self) -> TurnClock:
        """A clock with the same start and its own marks (for a racing candidate)."""
        return TurnClock(self._now, self._start)

    def elapsed_ms(self) -> float:
        """Milliseconds since the turn started."""
        return (self._now() - self._start) * 1000.0

    def mark(self, name: str) -> float:
        """Record ``name`` at the current offset, once; return the offset."""
        return self.marks.setdefault(name, self.elapsed_ms())

    def add(self, name: str, duration_ms: float) -> None:
        """Accumulate a duration under ``name``."""
        self.marks[name] = self.marks.get(name, 0.0) + duration_ms

    def since(self) -> float:
        """A start point for ``stop``."""
        return self._now()

    def stop(self, started: float) -> float:
        """Milliseconds since ``started`` (from ``since``)."""
        return (self._now() - started) * 1000.0
