"""Hybrid: two responders answer; the better answer within the budget wins.

With ``parallel`` (``VoiceConfig.enable_parallel_processing``) the candidates run
at once; without it they run one after another, and the next is tried only while
no answer has come within the budget (less CPU, more latency). Each candidate is
buffered. At ``max_latency_ms`` after the turn started, the
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

from coda.core.enums import VoiceProcessingMode
from coda.core.errors import ConfigurationError
from coda.modes import quality
from coda.modes.clock import TurnClock
from coda.modes.responder import Responder, TurnRequest
from coda.turn.events import SpokenPiece, TurnEvent, TurnFinished


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

    def __init__(
        self, responders: Sequence[Responder], max_latency_ms: float, parallel: bool = True
    ) -> None:
        if len(responders) < 2:
            raise ConfigurationError("hybrid needs at least two responders")
        self.responders = list(responders)
        self.max_latency_ms = max_latency_ms
        self.parallel = parallel
        self.name = "hybrid(" + ", ".join(r.name for r in responders) + ")"

    async def respond(self, request: TurnRequest, clock: TurnClock) -> AsyncIterator[TurnEvent]:
        """Race the responders, then replay the winner's events.

        Raises:
            The first candidate's error, if every candidate fails.
        """
        candidates = [Candidate(r, clock.child()) for r in self.responders]
        if self.parallel:
            finished, reason = await self._race(candidates, request, clock)
        else:
            finished, reason = await self._in_turn(candidates, request, clock)
        if not finished:
            raise next(c.error for c in candidates if c.error is not None)
        for candidate in finished:  # numpy over the audio: off the event loop
            candidate.score = await asyncio.to_thread(score, request.text, candidate)
        winner = max(finished, key=lambda c: c.score or 0.0)
        failed = [c for c in candidates if c.error is not None]
        late = [c for c in candidates if c.finished is None and c.error is None]
        if failed:
            reason += "; " + ", ".join(f"{c.responder.name} failed" for c in failed)
        if late:
            why = "was too slow" if self.parallel else "was not needed"
            reason += "; " + ", ".join(f"{c.responder.name} {why}" for c in late)
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

    async def _race(
        self, candidates: list[Candidate], request: TurnRequest, clock: TurnClock
    ) -> tuple[list[Candidate], str]:
        """Run every candidate at once; wait out the budget, or for the first answer."""
        tasks = [asyncio.create_task(self._run(c, request)) for c in candidates]
        try:
            budget = max(0.0, (self.max_latency_ms - clock.elapsed_ms()) / 1000)
            await asyncio.wait(tasks, timeout=budget)
            finished = [c for c in candidates if c.finished is not None]
            if finished or all(t.done() for t in tasks):
                return (
                    finished,
                    f"best score among answers ready within {self.max_latency_ms:.0f} ms",
                )
            pending = [t for t in tasks if not t.done()]
            while pending and not finished:
                _, still = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                pending = list(still)
                finished = [c for c in candidates if c.finished is not None]
            return finished, f"none finished within {self.max_latency_ms:.0f} ms; first to finish"
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _in_turn(
        self, candidates: list[Candidate], request: TurnRequest, clock: TurnClock
    ) -> tuple[list[Candidate], str]:
        """Run the candidates one after another until the budget is spent on an answer."""
        finished: list[Candidate] = []
        for candidate in candidates:
            if finished and clock.elapsed_ms() >= self.max_latency_ms:
                break
            await self._run(candidate, request)
            if candidate.finished is not None:
                finished.append(candidate)
        return finished, f"one after another (not parallel) within {self.max_latency_ms:.0f} ms"

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
