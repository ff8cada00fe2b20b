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

MAX_WINDOW_SECONDS = 30.0
FRAMES_PER_SECOND = 100
MAX_TOKENS_PER_SECOND = 12
MAX_WORDS_PER_SECOND = 4.5
"""Fast speech is ~3 words (~5 tokens) a second; more than this is a decoding loop."""


def _implausible(text: str, seconds: float) -> bool:
    """Whisper's loop: too many words, a word thrice in a row, or a 4-word phrase twice."""
    words = [w.strip(".,!?") for w in text.lower().split()]
    if len(words) > seconds * MAX_WORDS_PER_SECOND + 2:
        return True
    if any(a == b == c for a, b, c in zip(words, words[1:], words[2:], strict=False)):
        return True
    grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    return len(set(grams)) < len(grams)


class FasterWhisperSTT:
    """Speech recognition with faster-whisper on the CPU."""

    name = "faster_whisper"
    sample_rate = 16000

    def __init__(self, config: STTConfig, model_dir: Path | None = None) -> None:
        self._config = config
        self._model_dir = model_dir or default_cache_dir() / "models"
        self._model: Any = None
        self._worker = WorkerThread(self.name)
        self.fallbacks = 0
        """Fitted-window results discarded for the full window."""

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
        if self._config.fitted_window:
            fitted = self._transcribe_fitted(samples)
            if fitted is not None:
                return fitted
            self.fallbacks += 1
        return self._transcribe_full(samples)

    def _transcribe_fitted(self, samples: np.ndarray) -> Transcript | None:
        """One greedy pass over a window fitted to the audio; None if it looks wrong."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self._model
        seconds = len(samples) / self.sample_rate
        window = max(self._config.min_window_seconds, seconds + 1.0)
        if window > MAX_WINDOW_SECONDS:
            return None
        padded = np.zeros(int(window * self.sample_rate), np.float32)
        padded[: len(samples)] = samples
        features = model.feature_extractor(padded, padding=0)
        features = features[:, : int(window * FRAMES_PER_SECOND)]
        tokenizer = Tokenizer(
            model.hf_tokenizer,
            model.model.is_multilingual,
            task="transcribe",
            language=self._config.language,
        )
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        max_length = len(prompt) + int(seconds * MAX_TOKENS_PER_SECOND) + 8
        result = model.model.generate(
            model.encode(features),
            [prompt],
            beam_size=self._config.beam_size,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, (-1,)),
        )[0]
        tokens = result.sequences_ids[0]
        text = tokenizer.decode(tokens).strip()
        if len(prompt) + len(tokens) >= max_length or _implausible(text, seconds):
            return None
        average = result.scores[0] * len(tokens) / (len(tokens) + 1)
        confidence = math.exp(min(0.0, average)) * (1.0 - result.no_speech_prob)
        return Transcript(text, confidence, self._config.language, seconds)

    def _transcribe_full(self, samples: np.ndarray) -> Transcript:
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
