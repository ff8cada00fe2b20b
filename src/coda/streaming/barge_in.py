"""When speech heard over Coda's reply interrupts it.

Speech must last ``barge_in_min_speech_ms``, and is checked again at most every
``RECHECK_SECONDS`` of speech. Words that are a backchannel ("mm-hm", "yeah"), or
Coda's own reply coming back as echo, do not interrupt.
"""

from __future__ import annotations

import contextlib

import numpy as np

from coda.audio.frames import FRONT_END_RATE
from coda.core.errors import VoiceProcessingError
from coda.core.streaming_config import StreamingConfig
from coda.modes.clock import TurnClock
from coda.streaming.reply import Reply, is_backchannel, normalize
from coda.turn.recognition import Recognizer

RECHECK_SECONDS = 0.2


class BargeIn:
    """The barge-in rules of one live session.

    Args:
        recognizer: Hears the words spoken over the reply.
        streaming: The speech threshold, backchannels and echo share.
    """

    def __init__(self, recognizer: Recognizer, streaming: StreamingConfig) -> None:
        self.recognizer = recognizer
        self.streaming = streaming
        self._backchannels = {normalize(b) for b in streaming.backchannels}
        self._checked_at = 0.0

    def new_utterance(self) -> None:
        """Each utterance gets its own checks."""
        self._checked_at = 0.0

    def due(self, speech_seconds: float) -> bool:
        """Whether this much speech over the reply is worth a check now (and note it)."""
        if speech_seconds * 1000 < self.streaming.barge_in_min_speech_ms:
            return False
        if speech_seconds - self._checked_at < RECHECK_SECONDS:
            return False
        self._checked_at = speech_seconds
        return True

    async def words(self, audio: np.ndarray) -> str:
        """What was said in ``audio`` (at the front end's rate; "" if nothing is heard)."""
        if len(audio) < FRONT_END_RATE // 10:
            return ""
        with contextlib.suppress(VoiceProcessingError):
            return (await self.recognizer.words(audio, None, TurnClock())).text
        return ""

    def is_backchannel(self, words: str, reply: Reply | None) -> bool:
        """No words, a backchannel ("okay"), or the reply's own words coming back as echo."""
        return is_backchannel(words, reply, self._backchannels, self.streaming.self_echo_overlap)
