"""Reply audio on its way to the speakers, filled from PortAudio's thread."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

import numpy as np

Played = Callable[[np.ndarray, float], object]
"""Told, from PortAudio's thread, each run of reply samples the card took, and the
seconds until it is heard."""


class Player:
    """A queue of reply samples that the output callback drains.

    Args:
        on_played: Told what each block played (the echo canceller's reference,
            and what the user heard at a barge-in).
    """

    def __init__(self, on_played: Played) -> None:
        self._on_played = on_played
        self._lock = threading.Lock()
        self._chunks: deque[np.ndarray] = deque()
        self._offset = 0  # samples of the first chunk already played

    def push(self, samples: np.ndarray) -> None:
        """Queue reply samples (float32, mono, at the stream's rate)."""
        with self._lock:
            self._chunks.append(samples.astype(np.float32, copy=False))

    def clear(self) -> None:
        """Drop everything not yet played (barge-in): silence from the next block."""
        with self._lock:
            self._chunks.clear()
            self._offset = 0

    def fill(self, block: np.ndarray, delay: float = 0.0) -> None:
        """Fill one output block, heard in ``delay`` s: queued reply audio, then silence."""
        done = 0
        pieces: list[np.ndarray] = []
        with self._lock:
            while done < block.size and self._chunks:
                chunk = self._chunks[0]
                take = min(block.size - done, chunk.size - self._offset)
                piece = chunk[self._offset : self._offset + take]
                block[done : done + take] = piece
                pieces.append(piece)
                done += take
                self._offset += take
                if self._offset == chunk.size:
                    self._chunks.popleft()
                    self._offset = 0
        block[done:] = 0.0
        if pieces:
            self._on_played(np.concatenate(pieces), delay)
