"""Piper neural TTS, by default the en_US joe voice from a wheel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coda.assets.embedded import piper_joe_voice
from coda.core.config import TTSConfig
from coda.core.errors import AudioProcessingError, VoiceInitializationError
from coda.providers.base import SpeechAudio
from coda.providers.scheduler import CPU, ComputeScheduler, Ticket, current_ticket
from coda.worker import WorkerThread


class PiperTTS:
    """Speech synthesis with Piper (ONNX) on the CPU."""

    name = "piper"

    def __init__(self, config: TTSConfig, scheduler: ComputeScheduler = CPU) -> None:
        self._config = config
        self._scheduler = scheduler
        self._voice: Any = None
        self._worker = WorkerThread(self.name)

    @property
    def voice_path(self) -> Path:
        """The ONNX voice in use."""
        return Path(self._config.voice_path) if self._config.voice_path else piper_joe_voice()

    @property
    def sample_rate(self) -> int:
        """The voice's native rate in Hz."""
        if self._voice is None:
            raise AudioProcessingError("the voice is not loaded")
        return int(self._voice.config.sample_rate)

    async def load(self) -> None:
        """Load the voice on the worker thread."""
        if self._voice is None:
            self._voice = await self._worker.run(self._load)

    def _load(self) -> Any:
        from piper import PiperVoice

        try:
            return PiperVoice.load(self.voice_path)
        except (OSError, ValueError, RuntimeError) as exc:
            raise VoiceInitializationError(f"Piper voice failed to load: {exc}") from exc

    async def synthesize(self, text: str, speaking_rate: float = 1.0) -> SpeechAudio:
        """Speak ``text``, ``speaking_rate`` times the configured rate.

        Raises:
            AudioProcessingError: If ``text`` holds nothing to say.
        """
        if self._voice is None:
            raise AudioProcessingError("speech synthesis is not loaded: call initialize()")
        return await self._worker.run(self._synthesize, text, speaking_rate, current_ticket.get())

    def _synthesize(self, text: str, speaking_rate: float, ticket: Ticket | None) -> SpeechAudio:
        with self._scheduler.slice(ticket, "tts"):  # one clause is one slice
            return self._speak(text, speaking_rate)

    def _speak(self, text: str, speaking_rate: float) -> SpeechAudio:
        from piper import SynthesisConfig

        settings = self._config
        config = SynthesisConfig(
            length_scale=1.0 / (settings.speaking_rate * speaking_rate),
            noise_scale=settings.noise_scale,
            noise_w_scale=settings.noise_w_scale,
            volume=settings.volume,
        )
        pieces = [chunk.audio_float_array for chunk in self._voice.synthesize(text, config)]
        if not pieces:
            raise AudioProcessingError(f"nothing to speak in {text!r}")
        return SpeechAudio(np.concatenate(pieces).astype(np.float32), self.sample_rate)

    async def close(self) -> None:
        """Drop the voice and stop the worker."""
        self._voice = None
        self._worker.shutdown()
