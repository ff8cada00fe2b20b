"""Hybrid: two responders answer at once; the better answer within the budget wins.

Each candidate is buffered. At ``max_latency_ms`` after the turn started, the
finished candidates are scored (relevance, coherence, audio quality) and the
best is played; if none has finished, the first to finish wins. A candidate
that fails is dropped; if both fail, the first error is raised. The metadata
records both candidates, their scores and latencies, and why one won.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coda.core.models import VoiceProcessingMode
from coda.modes import quality
from coda.modes.clock import TurnClock
from coda.modes.events import SpokenPiece, TurnEvent, TurnFinished
from coda.modes.responder import Responder, TurnRequest


@dataclass
class Candidate:
    """One responder's buffered answer."""

    responder: Responder
    clock: TurnClock
    events: list[TurnEvent] = field(default_factory=list)
    finished: TurnFinished | None = None
    error: BaseException | None = None
    latency_ms: float | None = None
    score: float | None = None

    def summary(self) -> dict[str, Any]:
        """For response metadata."""
        return {
            "responder": self.responder.name,
            "mode": self.responder.mode.value,
            "score": None if self.score is None else round(self.score, 3),
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "reply": self.finished.reply_text if self.finished else None,
            "error": f"{type(self.error).__name__}: {self.error}" if self.error else None,
        }


def score(question: str, candidate: Candidate) -> float:
    """Mean of relevance, coherence and audio quality of a finished candidate."""
    assert candidate.finished is not None
    audio = [e.audio for e in candidate.events if isinstance(e, SpokenPiece)]
    samples = np.concatenate([a.samples for a in audio]) if audio else np.zeros(0, np.float32)
    rate = audio[0].sample_rate if audio else 24000
    text = candidate.finished.reply_text
    return float(
        np.mean(
            [
                quality.relevance(question, text),
                quality.coherence(text, candidate.finished.finish_reason),
                quality.audio_quality(samples, rate),
            ]
        )
    )


class HybridResponder:
    """Races responders and plays the best answer that is ready in time."""

    mode = VoiceProcessingMode.HYBRID

    def __init__(self, responders: Sequence[Responder], max_latency_ms: float) -> None:
        if len(responders) < 2:
            raise ValueError("hybrid needs at least two responders")
        self.responders = list(responders)
        self.max_latency_ms = max_latency_ms
        self.name = "hybrid(" + ", ".join(r.name for r in responders) + ")"

    async def respond(self, request: TurnRequest, clock: TurnClock) -> AsyncIterator[TurnEvent]:
        """Race the responders, then replay the winner's events.

        Raises:
            The first candidate's error, if every candidate fails.
        """
        candidates = [Candidate(r, clock.child()) for r in self.responders]
        tasks = [asyncio.create_task(self._run(c, request)) for c in candidates]
        try:
            budget = max(0.0, (self.max_latency_ms - clock.elapsed_ms()) / 1000)
            await asyncio.wait(tasks, timeout=budget)
            finished = [c for c in candidates if c.finished is not None]
            if not finished and not all(t.done() for t in tasks):
                reason = f"none finished within {self.max_latency_ms:.0f} ms; first to finish"
                pending = [t for t in tasks if not t.done()]
                while pending and not finished:
                    _, pending_set = await asyncio.wait(
                        pending, return_when=asyncio.FIRST_COMPLETED
                    )
                    pending = list(pending_set)
                    finished = [c for c in candidates if c.finished is not None]
            else:
                reason = f"best score among answers ready within {self.max_latency_ms:.0f} ms"
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if not finished:
            raise next(c.error for c in candidates if c.error is not None)
        for candidate in finished:
            candidate.score = score(request.text, candidate)
        winner = max(finished, key=lambda c: c.score or 0.0)
        failed = [c for c in candidates if c.error is not None]
        late = [c for c in candidates if c.finished is None and c.error is None]
        if failed:
            reason += "; " + ", ".join(f"{c.responder.name} failed" for c in failed)
        if late:
            reason += "; " + ", ".join(f"{c.responder.name} was too slow" for c in late)
        for event in winner.events:
            yield event
        assert winner.finished is not None
        clock.marks.update(winner.clock.marks)
        details = {
            **winner.finished.details,
            "hybrid": {
                "chosen": winner.responder.name,
                "reason": reason,
                "candidates": [c.summary() for c in candidates],
            },
        }
        yield TurnFinished(
            winner.finished.reply_text, winner.finished.finish_reason, dict(clock.marks), details
        )

    @staticmethod
    async def _run(candidate: Candidate, request: TurnRequest) -> None:
        try:
            async for event in candidate.responder.respond(request, candidate.clock):
                if isinstance(event, TurnFinished):
                    candidate.finished = event
                    candidate.latency_ms = candidate.clock.elapsed_ms()
                else:
                    candidate.events.append(event)
        except Exception as exc:  # noqa: BLE001 - recorded; the other candidate may answer
            candidate.error = exc
