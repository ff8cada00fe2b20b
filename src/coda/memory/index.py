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

    def nearest(self, vector: np.ndarray) -> tuple[int, float] | None:
        """The memory whose own sentence is most similar to ``vector``, and the cosine."""
        if not self.primary.any():
            return None
        cosines = np.where(self.primary, self.vectors @ vector, -1.0)
        best = int(np.argmax(cosines))
        return int(self.ids[best]), float(cosines[best])

    def top(self, vector: np.ndarray, limit: int) -> dict[int, float]:
        """The ``limit`` memories most similar to ``vector``, most similar first.

        Each counts once, at the best of its sentence and its questions: id → cosine.
        """
        if not len(self.ids) or limit <= 0:
            return {}
        cosines = self.vectors @ vector
        rows = min(len(cosines), limit * 8)  # enough rows for ``limit`` memories
        top = np.argpartition(-cosines, rows - 1)[:rows]
        best: dict[int, float] = {}
        for row in top[np.argsort(-cosines[top])]:  # a memory counts once, at its best row
            best.setdefault(int(self.ids[row]), float(cosines[row]))
            if len(best) == limit:
                break
        return best


def blob_of(vectors: np.ndarray | None) -> bytes | None:
    """Question vectors as stored bytes."""
    return None if vectors is None else np.asarray(vectors, np.float32).tobytes()
