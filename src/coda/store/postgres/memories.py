"""Memories in PostgreSQL, searched exactly per scope in an index each instance keeps fresh.

Debian's PostgreSQL has no pgvector, so embeddings are ``bytea`` (float32) and
search runs here: each instance holds a scope's current vectors as one matrix
(``MemoryIndex``), as the SQLite store does. Every write to a scope takes the
scope's advisory lock and a new version from ``memory_versions``, so within a
scope versions commit in order, and an index brought up to version *v* needs only
the rows (and tombstones of forgotten rows) above *v*. Before each search and
each write the index catches up with one query; a NOTIFY from the instance that
wrote lets the others catch up at once, in the background.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from psycopg import AsyncConnection

from coda.memory.embedder import DIMENSIONS
from coda.memory.index import MemoryIndex, blob_of
from coda.memory.store import MEMORY_FIELDS, Found, Memory, NewMemory
from coda.store.postgres.database import PostgresStore

_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('memory:' || %s, 0))"
MAX_SCOPES = 512
"""Scopes (speakers) whose index an instance keeps; the least recently searched go
first (reloaded from the database when they speak again)."""


@dataclass
class _Cached:
    index: MemoryIndex
    version: int


class PostgresMemoryStore(PostgresStore):
    """Memories shared by every instance, each holding the indexes of the scopes it serves.

    Args:
        url: The database's URL.
    """

    def __init__(self, url: str) -> None:
        super().__init__(url, lambda: RuntimeError("the memory store is closed"))
        self._indexes: OrderedDict[str, _Cached] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._unsubscribe: list[Any] = []

    async def open(self) -> None:
        """Connect, and follow other instances' changes to the scopes held here."""
        if self._database is None:
            await super().open()
            self._unsubscribe = [
                self.database.subscribe("memory", self._changed),
                self.database.subscribe("resync", lambda _: self._indexes.clear()),
            ]

    async def close(self) -> None:
        """Drop the indexes and release the connection."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        self._indexes.clear()
        await super().close()

    async def _changed(self, message: dict[str, Any]) -> None:
        scope = str(message.get("scope"))
        if scope in self._indexes:
            async with self.database.connection() as conn:
                await self._caught_up(conn, scope)

    def _lock(self, scope: str) -> asyncio.Lock:
        return self._locks.setdefault(scope, asyncio.Lock())

    async def _caught_up(self, conn: AsyncConnection, scope: str) -> MemoryIndex:
        """The scope's index, up to date with what ``conn`` sees."""
        async with self._lock(scope):
            cached = self._indexes.get(scope)
            if cached is None:
                cached = self._indexes[scope] = await self._load(conn, scope)
                while len(self._indexes) > MAX_SCOPES:
                    gone, _ = self._indexes.popitem(last=False)
                    lock = self._locks.get(gone)
                    if lock is not None and not lock.locked():
                        del self._locks[gone]
                return cached.index
            self._indexes.move_to_end(scope)
            cursor = conn.cursor(binary=True)
            await cursor.execute(
                "SELECT id, status, embedding, question_embeddings, version FROM memories "
                "WHERE scope = %s AND version > %s UNION ALL "
                "SELECT id, 'forgotten', NULL, NULL, version FROM memory_tombstones "
                "WHERE scope = %s AND version > %s",
                (scope, cached.version, scope, cached.version),
            )
            changed = await cursor.fetchall()
            if changed:
                cached.index.drop([row[0] for row in changed])
                for memory_id, status, sentence, questions, _ in changed:
                    if status == "current":
                        cached.index.add(memory_id, _vectors(sentence)[0], _questions(questions))
                cached.version = max(cached.version, *(row[4] for row in changed))
            return cached.index

    async def _load(self, conn: AsyncConnection, scope: str) -> _Cached:
        # The version first: a change committed between the two reads is in the rows
        # and above the version, so the next catch-up applies it again (harmlessly).
        cursor = await conn.execute(
            "SELECT GREATEST((SELECT MAX(version) FROM memories WHERE scope = %s), "
            "(SELECT MAX(version) FROM memory_tombstones WHERE scope = %s), 0)",
            (scope, scope),
        )
        version = int((await _one(cursor))[0])
        rows = conn.cursor(binary=True)
        await rows.execute(
            "SELECT id, embedding, question_embeddings FROM memories "
            "WHERE scope = %s AND status = 'current' ORDER BY id",
            (scope,),
        )
        fetched = await rows.fetchall()
        return _Cached(await asyncio.to_thread(MemoryIndex.from_rows, fetched), version)

    async def remember(
        self, scope: str, new: NewMemory, merge_above: float = 0.9, learning_rate: float = 0.1
    ) -> tuple[Memory, str]:
        """Store ``new``: "new", "merged" or "updated" (as ``SQLiteMemoryStore.remember``)."""
        vector = np.asarray(new.embedding, np.float32).reshape(DIMENSIONS)
        async with self.database.connection() as conn, conn.transaction():
            await conn.execute(_LOCK, (scope,))
            index = await self._caught_up(conn, scope)
            same: int | None = None
            if new.key is not None:
                cursor = await conn.execute(
                    "SELECT id, text FROM memories WHERE scope = %s AND fact_key = %s "
                    "AND status = 'current'",
                    (scope, new.key),
                )
                row = await cursor.fetchone()
                if row is not None and row[1].lower() != new.text.lower():
                    await conn.execute(
                        "UPDATE memories SET status = 'superseded', superseded_at = %s, "
                        "version = nextval('memory_versions') WHERE id = %s",
                        (time.time(), row[0]),
                    )
                    memory, outcome = await self._insert(conn, scope, new, vector), "updated"
                    await self.database.notify(conn, "memory", scope=scope)
                    return memory, outcome
                same = None if row is None else int(row[0])
            nearest = index.nearest(vector) if same is None else None
            if nearest is not None and nearest[1] >= merge_above:
                cursor = await conn.execute(
                    "SELECT fact_key FROM memories WHERE id = %s", (nearest[0],)
                )
                found = await cursor.fetchone()
                if found is not None and found[0] in (None, new.key):
                    same = nearest[0]
            if same is None:
                memory, outcome = await self._insert(conn, scope, new, vector), "new"
            else:
                memory, outcome = (
                    await self._merge(conn, same, new, vector, learning_rate),
                    "merged",
                )
            await self.database.notify(conn, "memory", scope=scope)
        return memory, outcome

    async def _insert(
        self, conn: AsyncConnection, scope: str, new: NewMemory, vector: np.ndarray
    ) -> Memory:
        now = time.time()
        cursor = await conn.execute(
            "INSERT INTO memories (scope, kind, text, embedding, importance, created_at, "
            "updated_at, fact_key, subject, questions, question_embeddings) "
            f"VALUES (%s, %s, %s, %s, 0.5, %s, %s, %s, %s, %s, %s) RETURNING {MEMORY_FIELDS}",
            (scope, new.kind, new.text, vector.tobytes(), now, now, new.key, new.subject,
             new.questions, blob_of(new.question_vectors)),
        )  # fmt: skip
        return Memory(*await _one(cursor))

    async def _merge(
        self, conn: AsyncConnection, memory_id: int, new: NewMemory, vector: np.ndarray, rate: float
    ) -> Memory:
        cursor = await conn.execute(
            "UPDATE memories SET text = %s, kind = %s, embedding = %s, questions = %s, "
            "question_embeddings = %s, fact_key = %s, subject = %s, mentions = mentions + 1, "
            "importance = importance + %s * (1 - importance), updated_at = %s, "
            f"version = nextval('memory_versions') WHERE id = %s RETURNING {MEMORY_FIELDS}",
            (new.text, new.kind, vector.tobytes(), new.questions, blob_of(new.question_vectors),
             new.key, new.subject, rate, time.time(), memory_id),
        )  # fmt: skip
        return Memory(*await _one(cursor))

    async def add_many(self, scope: str, kind: str, texts: list[str], vectors: np.ndarray) -> None:
        """Bulk insert without duplicate checks (imports and benchmarks), through COPY."""
        now = time.time()
        vectors = np.asarray(vectors, np.float32)
        async with self.database.connection() as conn, conn.transaction():
            await conn.execute(_LOCK, (scope,))
            cursor = conn.cursor()
            async with cursor.copy(
                "COPY memories (scope, kind, text, embedding, importance, created_at, updated_at)"
                " FROM STDIN"
            ) as copy:
                for text, vector in zip(texts, vectors, strict=True):
                    await copy.write_row((scope, kind, text, vector.tobytes(), 0.5, now, now))
            await self.database.notify(conn, "memory", scope=scope)

    async def search(self, scope: str, query: np.ndarray, limit: int) -> list[Found]:
        """The ``limit`` current memories most similar to ``query``, most similar first."""
        vector = np.asarray(query, np.float32).reshape(DIMENSIONS)
        async with self.database.connection() as conn:
            index = await self._caught_up(conn, scope)
            best = await asyncio.to_thread(index.top, vector, limit)
            if not best:
                return []
            cursor = await conn.execute(
                f"SELECT {MEMORY_FIELDS} FROM memories WHERE id = ANY(%s)", (list(best),)
            )
            rows = {row[0]: Memory(*row) for row in await cursor.fetchall()}
        return [Found(rows[i], cosine) for i, cosine in best.items() if i in rows]

    async def forget(self, scope: str, ids: list[int]) -> int:
        """Delete the memories ``ids`` of ``scope`` and the history of their facts."""
        if not ids:
            return 0
        async with self.database.connection() as conn, conn.transaction():
            await conn.execute(_LOCK, (scope,))
            cursor = await conn.execute(
                "DELETE FROM memories WHERE scope = %s AND (id = ANY(%s) OR fact_key IN "
                "(SELECT fact_key FROM memories WHERE id = ANY(%s) AND fact_key IS NOT NULL)) "
                "RETURNING id",
                (scope, ids, ids),
            )
            gone = [row[0] for row in await cursor.fetchall()]
            if gone:
                await conn.execute(
                    "INSERT INTO memory_tombstones (scope, id) SELECT %s, unnest(%s::bigint[])",
                    (scope, gone),
                )
                await self.database.notify(conn, "memory", scope=scope)
        return len(gone)

    async def history(self, scope: str) -> list[Memory]:
        """The superseded memories of ``scope``, oldest first."""
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                f"SELECT {MEMORY_FIELDS} FROM memories WHERE scope = %s "
                "AND status = 'superseded' ORDER BY superseded_at, id",
                (scope,),
            )
            return [Memory(*row) for row in await cursor.fetchall()]

    async def reinforce(self, ids: list[int], learning_rate: float) -> None:
        """Move the importance of used memories towards 1 by ``learning_rate``."""
        if ids:
            async with self.database.connection() as conn:
                await conn.execute(
                    "UPDATE memories SET importance = importance + %s * (1 - importance) "
                    "WHERE id = ANY(%s)",
                    (learning_rate, ids),
                )

    async def count(self, scope: str | None = None) -> int:
        """How many current memories (in ``scope``, or in all)."""
        sql = "SELECT COUNT(*) FROM memories WHERE status = 'current'"
        async with self.database.connection() as conn:
            if scope is None:
                cursor = await conn.execute(sql)
            else:
                cursor = await conn.execute(sql + " AND scope = %s", (scope,))
            return int((await _one(cursor))[0])


async def _one(cursor: Any) -> tuple[Any, ...]:
    row = await cursor.fetchone()
    assert row is not None
    return tuple(row)


def _vectors(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, np.float32).reshape(-1, DIMENSIONS)


def _questions(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else _vectors(blob)
