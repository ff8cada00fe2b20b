"""The memory store: a protocol, and the SQLite default with an in-memory vector index.

Each memory has a scope ("user:<speaker>" or "conversation:<id>"), a kind, its
sentence, its embedding, the questions it answers with theirs, the key of its
fact, a status ("current", or "superseded" history), and an importance in
[0, 1] that grows each time it is mentioned again or used. Search is exact
cosine over the scope's current vectors, held in memory as one float32 matrix
(100k memories ≈ 150 MB, plus their questions), which ``coda bench memory``
measures. All SQL and search run on the store's own thread.

The PostgreSQL store (``coda.store.postgres.memories``) implements the same
``MemoryStore`` protocol for several instances.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from coda.memory.embedder import DIMENSIONS
from coda.memory.index import MemoryIndex, blob_of
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
# Added with facts (a store from before them gains the columns when it opens).
_COLUMNS = {
    "fact_key": "TEXT",
    "subject": "TEXT NOT NULL DEFAULT ''",
    "status": "TEXT NOT NULL DEFAULT 'current'",
    "questions": "TEXT NOT NULL DEFAULT ''",
    "question_embeddings": "BLOB",
    "superseded_at": "REAL",
}
MEMORY_FIELDS = (
    "id, scope, kind, text, importance, mentions, updated_at, fact_key, subject, status, questions"
)


@dataclass(frozen=True)
class NewMemory:
    """What to remember: a sentence and how to find it.

    Attributes:
        kind: "fact" or "preference".
        text: The sentence, in the user's first person.
        embedding: Its unit vector.
        key: What a later fact must share to supersede it (None: merge by meaning).
        subject: Who or what it is about ("i", "my sister"), for matching questions.
        questions: Questions it answers, and their unit vectors (one row each).
    """

    kind: str
    text: str
    embedding: np.ndarray
    key: str | None = None
    subject: str = ""
    questions: str = ""
    question_vectors: np.ndarray | None = None


@dataclass(frozen=True)
class Memory:
    """One remembered fact or preference ("current", or "superseded" history)."""

    id: int
    scope: str
    kind: str
    text: str
    importance: float
    mentions: int
    updated_at: float
    key: str | None = None
    subject: str = ""
    status: str = "current"
    questions: str = ""

    @property
    def relation(self) -> str:
        """The relation of its fact ("live in"), from the key; "" for a sentence kept whole."""
        return self.key.split("|")[1] if self.key else ""


@dataclass(frozen=True)
class Found:
    """A memory and its cosine similarity to the query (the best of its sentence and questions)."""

    memory: Memory
    cosine: float


class MemoryStore(Protocol):
    """Where memories live."""

    async def open(self) -> None:
        """Open (and create) the store."""

    async def close(self) -> None:
        """Close the store."""

    async def remember(
        self, scope: str, new: NewMemory, merge_above: float, learning_rate: float
    ) -> tuple[Memory, str]:
        """Store a memory: "new", "merged" into a repeat, or "updated" (superseding one)."""
        ...

    async def search(self, scope: str, query: np.ndarray, limit: int) -> list[Found]:
        """The ``limit`` current memories of ``scope`` most similar to ``query``, best first."""
        ...

    async def forget(self, scope: str, ids: list[int]) -> int:
        """Delete memories and the history of their facts; how many rows went."""
        ...

    async def history(self, scope: str) -> list[Memory]:
        """The superseded memories of ``scope``, oldest first."""
        ...

    async def reinforce(self, ids: list[int], learning_rate: float) -> None:
        """Raise the importance of memories that were used."""

    async def count(self, scope: str | None = None) -> int:
        """How many current memories (in ``scope``, or in all)."""
        ...

    async def add_many(self, scope: str, kind: str, texts: list[str], vectors: np.ndarray) -> None:
        """Bulk insert without duplicate checks (imports and benchmarks)."""


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
        self._indexes: dict[str, MemoryIndex] = {}

    async def open(self) -> None:
        """Open (and create, or bring up to date) the database."""
        await self._database.open()
        await self._database.run(self._migrate)

    def _migrate(self) -> None:
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(memories)")}
        for name, kind in _COLUMNS.items():
            if name not in have:
                self._conn.execute(f"ALTER TABLE memories ADD COLUMN {name} {kind}")
        self._conn.execute(
            "CREATE INDEX IF NOT EXISTS memories_by_key ON memories(scope, fact_key, status)"
        )

    async def close(self) -> None:
        """Close the database and drop the indexes."""
        await self._database.close()
        self._indexes.clear()

    @property
    def _conn(self) -> sqlite3.Connection:
        return self._database.connection

    def _index(self, scope: str) -> MemoryIndex:
        index = self._indexes.get(scope)
        if index is None:
            rows = self._conn.execute(
                "SELECT id, embedding, question_embeddings FROM memories "
                "WHERE scope = ? AND status = 'current' ORDER BY id",
                (scope,),
            )
            index = self._indexes[scope] = MemoryIndex.from_rows(rows)
        return index

    def _row(self, memory_id: int) -> Memory:
        row = self._conn.execute(f"SELECT {MEMORY_FIELDS} FROM memories WHERE id = ?", (memory_id,))
        return Memory(*row.fetchone())

    async def remember(
        self, scope: str, new: NewMemory, merge_above: float = 0.9, learning_rate: float = 0.1
    ) -> tuple[Memory, str]:
        """Store ``new``: "new", "merged" or "updated".

        A fact with the key of a current one either repeats it (merged: the
        mention is counted and importance moves towards 1 by ``learning_rate``)
        or supersedes it ("updated": the old one is kept as history, no longer
        found). Without a key, a near-duplicate (cosine ≥ ``merge_above``) is
        merged, keeping the newer wording.
        """
        return await self._database.run(self._remember, scope, new, merge_above, learning_rate)

    def _remember(
        self, scope: str, new: NewMemory, merge_above: float, learning_rate: float
    ) -> tuple[Memory, str]:
        index = self._index(scope)
        vector = np.asarray(new.embedding, np.float32).reshape(DIMENSIONS)
        same: int | None = None
        if new.key is not None:
            row = self._conn.execute(
                "SELECT id, text FROM memories WHERE scope = ? AND fact_key = ? "
                "AND status = 'current'",
                (scope, new.key),
            ).fetchone()
            if row is not None and row[1].lower() != new.text.lower():
                self._supersede(index, int(row[0]))
                return self._insert(index, scope, new, vector), "updated"
            same = None if row is None else int(row[0])
        nearest = index.nearest(vector) if same is None else None
        if (
            nearest is not None
            and nearest[1] >= merge_above
            and self._row(nearest[0]).key in (None, new.key)
        ):
            same = nearest[0]
        if same is not None:
            return self._merge(index, same, new, vector, learning_rate), "merged"
        return self._insert(index, scope, new, vector), "new"

    def _supersede(self, index: MemoryIndex, memory_id: int) -> None:
        self._conn.execute(
            "UPDATE memories SET status = 'superseded', superseded_at = ? WHERE id = ?",
            (time.time(), memory_id),
        )
        index.drop([memory_id])

    def _merge(
        self, index: MemoryIndex, memory_id: int, new: NewMemory, vector: np.ndarray, rate: float
    ) -> Memory:
        self._conn.execute(
            "UPDATE memories SET text = ?, kind = ?, embedding = ?, questions = ?, "
            "question_embeddings = ?, fact_key = ?, subject = ?, mentions = mentions + 1, "
            "importance = importance + ? * (1 - importance), updated_at = ? WHERE id = ?",
            (new.text, new.kind, vector.tobytes(), new.questions, blob_of(new.question_vectors),
             new.key, new.subject, rate, time.time(), memory_id),
        )  # fmt: skip
        index.drop([memory_id])
        index.add(memory_id, vector, new.question_vectors)
        return self._row(memory_id)

    def _insert(self, index: MemoryIndex, scope: str, new: NewMemory, vector: np.ndarray) -> Memory:
        now = time.time()
        cursor = self._conn.execute(
            "INSERT INTO memories (scope, kind, text, embedding, importance, created_at, "
            "updated_at, fact_key, subject, questions, question_embeddings) "
            "VALUES (?, ?, ?, ?, 0.5, ?, ?, ?, ?, ?, ?)",
            (scope, new.kind, new.text, vector.tobytes(), now, now, new.key, new.subject,
             new.questions, blob_of(new.question_vectors)),
        )  # fmt: skip
        memory_id = int(cursor.lastrowid or 0)
        index.add(memory_id, vector, new.question_vectors)
        return self._row(memory_id)

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
        """The ``limit`` current memories most similar to ``query``, most similar first."""
        vector = np.asarray(query, np.float32).reshape(DIMENSIONS)
        return await self._database.run(self._search, scope, vector, limit)

    def _search(self, scope: str, vector: np.ndarray, limit: int) -> list[Found]:
        best = self._index(scope).top(vector, limit)
        return [Found(self._row(i), cosine) for i, cosine in best.items()]

    async def forget(self, scope: str, ids: list[int]) -> int:
        """Delete the memories ``ids`` of ``scope`` and the history of their facts."""

        def forget() -> int:
            marks = ",".join("?" * len(ids))
            keys = [
                r[0]
                for r in self._conn.execute(
                    f"SELECT fact_key FROM memories WHERE id IN ({marks}) AND fact_key IS NOT NULL",
                    ids,
                )
            ]
            key_marks = ",".join("?" * len(keys)) or "NULL"
            cursor = self._conn.execute(
                f"DELETE FROM memories WHERE scope = ? AND (id IN ({marks}) "
                f"OR fact_key IN ({key_marks}))",
                [scope, *ids, *keys],
            )
            self._indexes.pop(scope, None)
            return int(cursor.rowcount)

        return await self._database.run(forget) if ids else 0

    async def history(self, scope: str) -> list[Memory]:
        """The superseded memories of ``scope``, oldest first."""

        def history() -> list[Memory]:
            rows = self._conn.execute(
                f"SELECT {MEMORY_FIELDS} FROM memories WHERE scope = ? AND status = 'superseded' "
                "ORDER BY superseded_at, id",
                (scope,),
            )
            return [Memory(*r) for r in rows]

        return await self._database.run(history)

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
        """How many current memories (in ``scope``, or in all)."""

        def count() -> int:
            sql = "SELECT COUNT(*) FROM memories WHERE status = 'current'"
            if scope is None:
                return int(self._conn.execute(sql).fetchone()[0])
            return int(self._conn.execute(sql + " AND scope = ?", (scope,)).fetchone()[0])

        return await self._database.run(count)
