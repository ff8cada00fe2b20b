"""Sample conversions and fixed-size framing of a stream."""

from __future__ import annotations

from collections import deque

import numpy as np

FRONT_END_RATE = 16000
"""The front end (AEC, noise suppression, VAD) and recognition run at 16 kHz."""
FRAME_SAMPLES = FRONT_END_RATE // 100
"""One 10 ms frame at 16 kHz: the unit of noise suppression and echo cancellation."""


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as 16-bit PCM."""
    return np.clip(np.round(samples * 32767.0), -32768, 32767).astype(np.int16)


def pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as mono PCM16 little-endian bytes (the wire format)."""
    return to_int16(samples).astype("<i2").tobytes()


def apply_gain(samples: np.ndarray, gain: float, ceiling: float = 0.98) -> np.ndarray:
    """``samples`` scaled by ``gain``, but never past ``ceiling`` of full scale (no clipping)."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    return (samples * min(gain, ceiling / (peak or 1.0))).astype(np.float32)


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


class SampleQueue:
    """A first-in, first-out queue of samples, pushed and taken in any amounts.

    Args:
        dtype: The samples' type (what ``take`` returns when it is empty).
    """

    def __init__(self, dtype: type[np.generic] = np.float32) -> None:
        self._dtype = dtype
        self._chunks: deque[np.ndarray] = deque()
        self._length = 0

    def __len__(self) -> int:
        return self._length

    def push(self, samples: np.ndarray) -> None:
        """Append samples."""
        if samples.size:
            self._chunks.append(samples)
            self._length += len(samples)

    def take(self, count: int) -> np.ndarray:
        """The next ``count`` samples (fewer if fewer are queued)."""
        taken: list[np.ndarray] = []
        while count > 0 and self._chunks:
            head = self._chunks[0]
            if len(head) <= count:
                taken.append(self._chunks.popleft())
            else:
                taken.append(head[:count])
                self._chunks[0] = head[count:]
            count -= len(taken[-1])
            self._length -= len(taken[-1])
        return np.concatenate(taken) if taken else np.zeros(0, self._dtype)

    def clear(self) -> None:
        """Drop everything queued."""
        self._chunks.clear()
        self._length = 0
