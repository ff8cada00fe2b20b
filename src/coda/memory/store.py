"""The memory store: a protocol, and the SQLite default with an in-memory vector index.

Each memory has a scope ("user:<speaker>" or "conversation:<id>"), a kind, its
sentence, its embedding, and an importance in [0, 1] that grows each time it is
mentioned again or used. Search is exact cosine over the scope's vectors, held
in memory as one float32 matrix (100k memories ≈ 150 MB), which ``coda bench
memory`` measures. All SQL and search run on the store's own thread.

A PostgreSQL (pgvector) store implements the same ``MemoryStore`` protocol.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from coda.memory.embedder import DIMENSIONS
from coda.store.database import SQLiteDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS memories (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    embedding BLOB NOT NULL,
    importance REAL NOT NULL,
    mentions INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS memories_by_scope ON memories(scope);
"""


@dataclass(frozen=True)
class Memory:
    """One remembered fact or preference."""

    id: int
    scope: str
    kind: str
    text: str
    importance: float
    mentions: int
    updated_at: float


@dataclass(frozen=True)
class Found:
    """A memory and its cosine similarity to the query."""

    memory: Memory
    cosine: float


class MemoryStore(Protocol):
    """Where memories live."""

    async def open(self) -> None:
        """Open (and create) the store."""

    async def close(self) -> None:
        """Close the store."""

    async def remember(
        self,
        scope: str,
        kind: str,
        text: str,
        embedding: np.ndarray,
        merge_above: float,
        learning_rate: float,
    ) -> tuple[Memory, bool]:
        """Store a memory, or merge it into a near-duplicate; True if merged."""
        ...

    async def search(self, scope: str, query: np.ndarray, limit: int) -> list[Found]:
        """The ``limit`` most similar memories of ``scope``, most similar first."""
        ...

    async def reinforce(self, ids: list[int], learning_rate: float) -> None:
        """Raise the importance of memories that were used."""

    async def count(self, scope: str | None = None) -> int:
        """How many memories (in ``scope``, or in all)."""
        ...


@dataclass
class _Index:
    ids: np.ndarray
    vectors: np.ndarray


class SQLiteMemoryStore:
    """Memories in SQLite, searched by exact cosine over an in-memory matrix.

    Args:
        path: The SQLite file (it may be the conversation store's file).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._database = SQLiteDatabase(
            path, _SCHEMA, "memory", lambda: RuntimeError("the memory store is closed")
        )
        self._indexes: dict[str, _Index] = {}

    async def open(self) -> None:
        """Open (and create if needed) the database."""
        await self._database.open()

    async def close(self) -> None:
        """Close the database and drop the indexes."""
        await self._database.close()
        self._indexes.clear()

    @property
    def _conn(self) -> sqlite3.Connection:
        return self._database.connection

    def _index(self, scope: str) -> _Index:
        index = self._indexes.get(scope)
        if index is None:
            rows = self._conn.execute(
                "SELECT id, embedding FROM memories WHERE scope = ? ORDER BY id", (scope,)
            ).fetchall()
            ids = np.array([r[0] for r in rows], np.int64)
            vectors = (
                np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(-1, DIMENSIONS)
                if rows
                else np.zeros((0, DIMENSIONS), np.float32)
            )
            index = self._indexes[scope] = _Index(ids, vectors.copy())
        return index

    def _row(self, memory_id: int) -> Memory:
        row = self._conn.execute(
            "SELECT id, scope, kind, text, importance, mentions, updated_at FROM memories "
            "WHERE id = ?",
            (memory_id,),
        ).fetchone()
        return Memory(*row)

    async def remember(
        self,
        scope: str,
        kind: str,
        text: str,
        embedding: np.ndarray,
        merge_above: float = 0.9,
        learning_rate: float = 0.1,
    ) -> tuple[Memory, bool]:
        """Store ``text``; a near-duplicate (cosine ≥ ``merge_above``) is merged instead.

        Merging keeps the newer wording, counts the mention, and moves importance
        towards 1 by ``learning_rate``.
        """
        vector = np.asarray(embedding, np.float32).reshape(DIMENSIONS)
        return await self._database.run(
            self._remember, scope, kind, text, vector, merge_above, learning_rate
        )

    def _remember(
        self,
        scope: str,
        kind: str,
        text: str,
        vector: np.ndarray,
        merge_above: float,
        learning_rate: float,
    ) -> tuple[Memory, bool]:
        index = self._index(scope)
        now = time.time()
        db = self._conn
        if len(index.ids):
            cosines = index.vectors @ vector
            best = int(np.argmax(cosines))
            if cosines[best] >= merge_above:
                memory_id = int(index.ids[best])
                with db:
                    db.execute("BEGIN")
                    db.execute(
                        "UPDATE memories SET text = ?, kind = ?, embedding = ?, mentions = "
                        "mentions + 1, importance = importance + ? * (1 - importance), "
                        "updated_at = ? WHERE id = ?",
                        (text, kind, vector.tobytes(), learning_rate, now, memory_id),
                    )
                index.vectors[best] = vector
                return self._row(memory_id), True
        with db:
            db.execute("BEGIN")
            cursor = db.execute(
                "INSERT INTO memories (scope, kind, text, embedding, importance, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (scope, kind, text, vector.tobytes(), 0.5, now, now),
            )
        memory_id = int(cursor.lastrowid or 0)
        index.ids = np.append(index.ids, memory_id)
        index.vectors = np.vstack([index.vectors, vector[None, :]])
        return self._row(memory_id), False

    async def add_many(self, scope: str, kind: str, texts: list[str], vectors: np.ndarray) -> None:
        """Bulk insert without duplicate checks (imports and benchmarks)."""
        await self._database.run(self._add_many, scope, kind, texts, vectors)

    def _add_many(self, scope: str, kind: str, texts: list[str], vectors: np.ndarray) -> None:
        now = time.time()
        vectors = np.asarray(vectors, np.float32)
        with self._conn as db:
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO memories (scope, kind, text, embedding, importance, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, 0.5, ?, ?)",
                (
                    (scope, kind, t, v.tobytes(), now, now)
                    for t, v in zip(texts, vectors, strict=True)
                ),
            )
        self._indexes.pop(scope, None)

    async def search(self, scope: str, query: np.ndarray, limit: int) -> list[Found]:
        """The ``limit`` most similar memories of ``scope``, most similar first."""
        vector = np.asarray(query, np.float32).reshape(DIMENSIONS)
        return await self._database.run(self._search, scope, vector, limit)

    def _search(self, scope: str, vector: np.ndarray, limit: int) -> list[Found]:
        index = self._index(scope)
        if not len(index.ids) or limit <= 0:
            return []
        cosines = index.vectors @ vector
        top = min(limit, len(cosines))
        best = np.argpartition(-cosines, top - 1)[:top]
        best = best[np.argsort(-cosines[best])]
        return [Found(self._row(int(index.ids[i])), float(cosines[i])) for i in best]

    async def reinforce(self, ids: list[int], learning_rate: float) -> None:
        """Move the importance of used memories towards 1 by ``learning_rate``."""

        def update() -> None:
            self._conn.executemany(
                "UPDATE memories SET importance = importance + ? * (1 - importance) WHERE id = ?",
                [(learning_rate, i) for i in ids],
            )

        if ids:
            await self._database.run(update)

    async def count(self, scope: str | None = None) -> int:
        """How many memories (in ``scope``, or in all)."""

        def count() -> int:
            if scope is None:
                row = self._conn.execute("SELECT COUNT(*) FROM memories").fetchone()
            else:
                row = self._conn.execute(
                    "SELECT COUNT(*) FROM memories WHERE scope = ?", (scope,)
                ).fetchone()
            return int(row[0])

        return await self._database.run(count)
