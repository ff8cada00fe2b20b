"""Sample conversions and fixed-size framing of a stream."""

from __future__ import annotations

import numpy as np

FRONT_END_RATE = 16000
"""The front end (AEC, noise suppression, VAD) and recognition run at 16 kHz."""
FRAME_SAMPLES = FRONT_END_RATE // 100
"""One 10 ms frame at 16 kHz: the unit of noise suppression and echo cancellation."""


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as 16-bit PCM."""
    return np.clip(np.round(samples * 32767.0), -32768, 32767).astype(np.int16)


def to_float(samples: np.ndarray) -> np.ndarray:
    """16-bit PCM as float32 in [-1, 1]."""
    return samples.astype(np.float32) / 32768.0


class FrameChunker:
    """Re-cuts a stream of arbitrary-length pieces into frames of ``size`` samples."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pending = np.zeros(0, np.float32)

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        """Add samples; return every complete frame."""
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        count = len(self._pending) // self.size
        frames = [self._pending[i * self.size : (i + 1) * self.size] for i in range(count)]
        self._pending = self._pending[count * self.size :]
        return frames

    def reset(self) -> None:
        """Drop any partial frame."""
        self._pending = np.zeros(0, np.float32)
