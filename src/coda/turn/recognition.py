"""Recognition: the user's words, typed, recognized, or recognized ahead of time."""

from __future__ import annotations

import numpy as np

from coda.core.errors import ValidationError
from coda.modes.clock import TurnClock
from coda.providers.base import SpeechToText
from coda.turn.events import Transcribed


class Recognizer:
    """Recognizes a turn's speech with one speech-to-text provider."""

    def __init__(self, stt: SpeechToText) -> None:
        self.stt = stt

    @property
    def sample_rate(self) -> int:
        """The rate recognition hears, in Hz."""
        return self.stt.sample_rate

    async def words(
        self, audio: np.ndarray | None, text: str | None, clock: TurnClock
    ) -> Transcribed:
        """``text`` if given, else the words recognized in ``audio`` (at ``sample_rate``).

        Raises:
            ValidationError: If there is nothing to recognize, or no words in it.
        """
        if text is not None and text.strip():
            return Transcribed(text.strip(), 1.0, "provided")
        if audio is None:
            raise ValidationError("a turn needs audio or text")
        started = clock.since()
        result = await self.stt.transcribe(audio)
        clock.add("asr", clock.stop(started))
        if not result.text.strip():
            raise ValidationError("no words were recognized in the audio")
        return Transcribed(result.text.strip(), result.confidence, "asr")
