"""What crosses the live websocket: PCM16 frames, JSON control messages, closing."""

from __future__ import annotations

import numpy as np

from coda.audio.frames import to_int16


class Closed(Exception):
    """Close the socket with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def pcm16(samples: np.ndarray) -> bytes:
    """Float audio as mono PCM16 little-endian."""
    return to_int16(samples).astype("<i2").tobytes()
