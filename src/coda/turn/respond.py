"""Responders and selection: choose the mode, stream its reply, fall back if it fails.

The fallback rules: when Moshi fails mid-turn, the cascade answers, unless
``moshi_only`` was asked for explicitly without ``allow_mode_fallback``; when
the cascade's LLM fails in a turn ``adaptive`` gave it, Moshi answers the
speech, if it is there and nothing was said yet (an explicit ``llm_enhanced``
turn fails with the LLM's error instead).
Moshi listens to the audio itself, so when it answers, recognition (for the
stored turn) runs beside it instead of before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field, replace

import numpy as np

from coda.core.enums import VoiceProcessingMode
from coda.core.errors import (
    LLMIntegrationError,
    MoshiConnectionError,
    TimeoutError,
    VoiceProcessingError,
)
from coda.modes.adaptive import AdaptivePolicy
from coda.modes.clock import TurnClock
from coda.modes.moshi import SPEECH_NEEDED
from coda.modes.responder import Responder, TurnRequest
from coda.modes.selection import ModeDecision, decide
from coda.turn.events import SpokenPiece, Transcribed, TurnEvent, TurnFinished

log = logging.getLogger(__name__)


@dataclass
class Answer:
    """What the responder stage leaves for the finish stage."""

    decision: ModeDecision
    transcript: Transcribed | None = None
    finished: TurnFinished | None = None
    pieces: list[np.ndarray] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)


class Responders:
    """The responders by mode, what is unavailable and why, and the adaptive policy.

    Args:
        responders: The responder of each available mode.
        unavailable: Each unavailable mode with the reason.
        policy: The adaptive policy (learns from every turn).
        allow_fallback: An explicitly requested mode that fails may fall back.
    """

    def __init__(
        self,
        responders: dict[VoiceProcessingMode, Responder],
        unavailable: dict[VoiceProcessingMode, str],
        policy: AdaptivePolicy,
        allow_fallback: bool,
    ) -> None:
        self.by_mode = responders
        self.unavailable = unavailable
        self.policy = policy
        self.allow_fallback = allow_fallback

    def listens_first(self, requested: VoiceProcessingMode, audio: np.ndarray | None) -> bool:
        """Moshi was asked for and can hear the audio: it starts before recognition ends."""
        return (
            audio is not None
            and requested is VoiceProcessingMode.MOSHI_ONLY
            and VoiceProcessingMode.MOSHI_ONLY not in self.unavailable
        )

    def decide(
        self,
        requested: VoiceProcessingMode,
        conversation_id: str,
        words: str,
        has_audio: bool,
        known_reply: bool = False,
    ) -> ModeDecision:
        """The mode that answers, and why (``known_reply``: a hook already has the reply).

        Raises:
            ConfigurationError: If an explicit mode cannot answer and may not fall back.
        """
        available: dict[VoiceProcessingMode, str | None] = {
            m: self.unavailable.get(m) for m in VoiceProcessingMode if m is not m.ADAPTIVE
        }
        if not has_audio and available[VoiceProcessingMode.MOSHI_ONLY] is None:
            available[VoiceProcessingMode.MOSHI_ONLY] = SPEECH_NEEDED
        return decide(
            requested,
            available,
            self.policy,
            conversation_id,
            words,
            self.allow_fallback,
            known_reply,
        )

    async def answer(
        self,
        request: TurnRequest,
        answer: Answer,
        clock: TurnClock,
        conversation_id: str,
        recognizing: Awaitable[Transcribed] | None = None,
    ) -> AsyncIterator[TurnEvent]:
        """Stream the chosen responder's reply, falling back (once) to another if allowed.

        ``recognizing`` is the recognition running beside Moshi; its transcript is
        yielded once known (before the fallback, which needs the words).
        """
        task = asyncio.ensure_future(recognizing) if recognizing is not None else None
        fell_back = False  # once per turn: with both down, each would hand over to the other
        try:
            while True:
                answer.pieces.clear()
                attempt = clock.child()
                try:
                    async for event in self.by_mode[answer.decision.chosen].respond(
                        request, attempt
                    ):
                        if isinstance(event, TurnFinished):
                            answer.finished = event
                            continue
                        if isinstance(event, SpokenPiece):
                            answer.pieces.append(event.audio.samples)
                        yield event
                    break
                except VoiceProcessingError as exc:
                    self.policy.record_failure(conversation_id, answer.decision.chosen)
                    to = None if fell_back else self._fallback(answer, request, exc)
                    if to is None:
                        raise
                    fell_back = True
                    log.warning(
                        "%s failed, %s answers: %s", answer.decision.chosen.value, to.value, exc
                    )
                    answer.decision = answer.decision.fallen_back(
                        f"{answer.decision.chosen.value} failed: {exc}", to
                    )
                    if to is VoiceProcessingMode.MOSHI_ONLY:
                        continue
                    if task is not None:  # the cascade needs the words
                        answer.transcript, task = await task, None
                        yield answer.transcript
                        request = replace(request, text=answer.transcript.text)
            if task is not None:
                answer.transcript, task = await task, None
                yield answer.transcript
            answer.marks = attempt.marks
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, VoiceProcessingError):
                    await task

    def _fallback(
        self, answer: Answer, request: TurnRequest, error: VoiceProcessingError
    ) -> VoiceProcessingMode | None:
        """Who answers instead of the mode that failed, if anyone may."""
        decision = answer.decision
        if (
            isinstance(error, MoshiConnectionError)
            and decision.chosen is VoiceProcessingMode.MOSHI_ONLY
            and (decision.requested is not VoiceProcessingMode.MOSHI_ONLY or self.allow_fallback)
        ):
            return VoiceProcessingMode.LLM_ENHANCED
        if (
            isinstance(error, (LLMIntegrationError, TimeoutError))
            and decision.chosen is VoiceProcessingMode.LLM_ENHANCED
            and decision.requested is VoiceProcessingMode.ADAPTIVE
            and VoiceProcessingMode.MOSHI_ONLY in self.by_mode
            and VoiceProcessingMode.MOSHI_ONLY not in self.unavailable
            and request.audio is not None
            and request.audio.size
            and not answer.pieces
        ):
            return VoiceProcessingMode.MOSHI_ONLY
        return None
