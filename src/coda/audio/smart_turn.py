"""Smart Turn v3.2: the probability, from the voice alone, that a speaker has finished.

The model (BSD-2, Daily) reads the last 8 s of 16 kHz speech as Whisper
log-mel features and scores the intonation and rhythm of the ending. Its CPU
ONNX ships in the ``pipecat-ai`` wheel, read here as a file; the features come
from faster-whisper's numpy extractor, which matches Whisper's to 1e-6.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coda.assets.embedded import smart_turn_onnx
from coda.audio.frames import FRONT_END_RATE
from coda.worker import WorkerThread

WINDOW_SECONDS = 8
"""The model sees this much audio, the latest part of the utterance."""


class SmartTurn:
    """The audio end-of-turn model, on its own worker thread."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._session: Any = None
        self._features: Any = None
        self._worker = WorkerThread("smart-turn")

    @classmethod
    def installed(cls) -> SmartTurn | None:
        """The model from the installed ``pipecat-ai`` wheel, or None without it."""
        path = smart_turn_onnx()
        return None if path is None else cls(path)

    async def load(self) -> None:
        """Load the ONNX session (idempotent)."""
        if self._session is None:
            await self._worker.run(self._load)

    def _load(self) -> None:
        import onnxruntime
        from faster_whisper.feature_extractor import FeatureExtractor

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # it runs beside recognition: one core is enough
        options.inter_op_num_threads = 1
        self._features = FeatureExtractor(feature_size=80, chunk_length=WINDOW_SECONDS)
        self._session = onnxruntime.InferenceSession(
            str(self._path), options, providers=["CPUExecutionProvider"]
        )

    async def complete(self, audio: np.ndarray) -> float:
        """P(the turn is complete) for an utterance (float32 at 16 kHz) up to its pause."""
        await self.load()
        return await self._worker.run(self.complete_now, audio)

    def complete_now(self, audio: np.ndarray) -> float:
        """The blocking scoring call."""
        size = WINDOW_SECONDS * FRONT_END_RATE
        clip = np.asarray(audio, np.float32)[-size:]
        clip = np.pad(clip, (size - len(clip), 0))
        # Whisper's do_normalize: zero mean, unit variance, before the log-mel.
        clip = (clip - clip.mean()) / np.sqrt(clip.var() + 1e-7)
        features = self._features(clip, padding=0)[None, :, : size // 160]
        logits = self._session.run(None, {"input_features": features.astype(np.float32)})
        return float(np.asarray(logits[0]).reshape(-1)[0])

    async def close(self) -> None:
        """Free the session and stop the worker."""
        self._session = None
        self._worker.shutdown()
