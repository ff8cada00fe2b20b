"""A scope's current memories as one float32 matrix: a row per sentence and per likely question."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from coda.memory.embedder import DIMENSIONS


@dataclass
class MemoryIndex:
    """A scope's current memories: one row per sentence and per likely question."""

    ids: np.ndarray
    vectors: np.ndarray
    primary: np.ndarray  # True for a memory's own sentence

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[int, bytes, bytes | None]]) -> MemoryIndex:
        """The index of stored rows: (id, sentence vector, question vectors)."""
        ids: list[int] = []
        primary: list[bool] = []
        blocks: list[np.ndarray] = []
        for memory_id, sentence, questions in rows:
            block = np.frombuffer(sentence + (questions or b""), np.float32)
            count = block.size // DIMENSIONS
            ids += [memory_id] * count
            primary += [True] + [False] * (count - 1)
            blocks.append(block)
        vectors = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
        return cls(
            np.array(ids, np.int64), vectors.reshape(-1, DIMENSIONS).copy(), np.array(primary, bool)
        )

    def add(self, memory_id: int, sentence: np.ndarray, questions: np.ndarray | None) -> None:
        """Index a memory's sentence and its questions."""
        rows = [sentence[None, :]] + ([questions] if questions is not None else [])
        stacked = np.vstack(rows).astype(np.float32)
        self.ids = np.append(self.ids, np.full(len(stacked), memory_id, np.int64))
        self.vectors = np.vstack([self.vectors, stacked])
        self.primary = np.append(self.primary, [True] + [False] * (len(stacked) - 1))

    def drop(self, ids: list[int]) -> None:
        """Forget the rows of these memories."""
        keep = ~np.isin(self.ids, ids)
        self.ids, self.vectors, self.primary = (
            self.ids[keep],
            self.vectors[keep],
            self.primary[keep],
        )


def blob_of(vectors: np.ndarray | None) -> bytes | None:
    """Question vectors as stored bytes."""
    return None if vectors is None else np.asarray(vectors, np.float32).tobytes()
