"""Intake: a whole message's audio, validated, decoded, cleaned and resampled.

Everything runs on the front end's own thread, never on the event loop: decoding,
the front end (noise suppression, VAD, trimming) and resampling to the
recognizer's rate.
"""

from __future__ import annotations

import numpy as np

from coda.audio.decode import decode_audio, resample
from coda.audio.frames import FRONT_END_RATE
from coda.audio.frontend import clean_message
from coda.audio.vad import VoiceActivityDetector
from coda.core.config import AudioConfig
from coda.core.models import VoiceMessage
from coda.modes.clock import TurnClock
from coda.worker import WorkerThread


def _prepare(
    data: bytes,
    message: VoiceMessage,
    config: AudioConfig,
    vad: VoiceActivityDetector | None,
    rate: int,
) -> np.ndarray:
    decoded = decode_audio(data, FRONT_END_RATE, config, message.raw_format())
    cleaned = clean_message(decoded.samples, config, vad)
    return resample(cleaned, FRONT_END_RATE, rate)


class Intake:
    """Turns a message's bytes into clean speech at the recognizer's rate.

    Args:
        config: The audio settings (input policy and front end).
    """

    def __init__(self, config: AudioConfig) -> None:
        self.config = config
        self._worker = WorkerThread("intake")
        self._vad: VoiceActivityDetector | None = None

    async def open(self) -> None:
        """Load the voice activity detector (reused by every message, one at a time)."""
        if self.config.enable_vad and self._vad is None:
            self._vad = await self._worker.run(VoiceActivityDetector)

    async def take(self, message: VoiceMessage, rate: int, clock: TurnClock) -> np.ndarray | None:
        """The message's speech as float32 at ``rate`` (None for a typed message).

        Raises:
            ValidationError: If the audio cannot be decoded or holds no speech.
        """
        message.validate(self.config)
        if not message.audio_data:
            return None
        started = clock.since()
        audio = await self._worker.run(
            _prepare, bytes(message.audio_data), message, self.config, self._vad, rate
        )
        clock.add("frontend", clock.stop(started))
        return audio

    def close(self) -> None:
        """Stop the thread and drop the detector."""
        self._worker.shutdown()
        self._worker = WorkerThread("intake")
        self._vad = None
