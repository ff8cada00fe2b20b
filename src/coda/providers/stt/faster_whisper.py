"""Whisper through faster-whisper (CTranslate2), by default tiny.en from a wheel."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from coda.assets.embedded import whisper_base_dir, whisper_tiny_en_dir
from coda.core.config import STTConfig, default_cache_dir
from coda.core.errors import AudioProcessingError, ConfigurationError, VoiceInitializationError
from coda.providers.base import Transcript
from coda.worker import WorkerThread


class FasterWhisperSTT:
    """Speech recognition with faster-whisper on the CPU."""

    name = "faster_whisper"
    sample_rate = 16000

    def __init__(self, config: STTConfig, model_dir: Path | None = None) -> None:
        self._config = config
        self._model_dir = model_dir or default_cache_dir() / "models"
        self._model: Any = None
        self._worker = WorkerThread(self.name)

    def model_path(self) -> Path:
        """The CTranslate2 model folder to load (assembling Whisper base if asked for)."""
        if self._config.model_path:
            return Path(self._config.model_path)
        if self._config.model == "tiny.en":
            return whisper_tiny_en_dir()
        if self._config.model == "base":
            return whisper_base_dir(self._model_dir)
        raise ConfigurationError(
            f"STTConfig.model {self._config.model!r} is unknown; use 'tiny.en' or 'base', "
            "or set model_path"
        )

    async def load(self) -> None:
        """Load the model on the worker thread."""
        if self._model is not None:
            return
        self._model = await self._worker.run(self._load)

    def _load(self) -> Any:
        from faster_whisper import WhisperModel

        try:
            return WhisperModel(
                str(self.model_path()),
                device="cpu",
                compute_type=self._config.compute_type,
                cpu_threads=self._config.threads or os.cpu_count() or 1,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise VoiceInitializationError(f"Whisper failed to load: {exc}") from exc

    async def transcribe(self, samples: np.ndarray) -> Transcript:
        """Recognize ``samples`` (16 kHz mono float32)."""
        if self._model is None:
            raise AudioProcessingError("speech recognition is not loaded: call initialize()")
        return await self._worker.run(self._transcribe, samples)

    def _transcribe(self, samples: np.ndarray) -> Transcript:
        segments, info = self._model.transcribe(
            samples,
            language=self._config.language,
            beam_size=self._config.beam_size,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        texts, confidences = [], []
        for segment in segments:
            texts.append(segment.text.strip())
            token_probability = math.exp(min(0.0, segment.avg_logprob))
            confidences.append(token_probability * (1.0 - segment.no_speech_prob))
        text = " ".join(t for t in texts if t)
        confidence = float(np.mean(confidences)) if confidences else 0.0
        return Transcript(text, confidence, info.language, len(samples) / self.sample_rate)

    async def close(self) -> None:
        """Drop the model and stop the worker."""
        self._model = None
        self._worker.shutdown()
