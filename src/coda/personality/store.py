"""Personality traits in SQLite, so what Coda learned survives a restart."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from coda.personality.traits import Traits
from coda.worker import WorkerThread

_SCHEMA = """
CREATE TABLE IF NOT EXISTS personality (
    scope TEXT PRIMARY KEY,
    traits TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""


class PersonalityStore:
    """Traits per scope (a speaker), in a SQLite file.

    Args:
        path: The SQLite file (it may be the conversation store's file).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._worker = WorkerThread("personality")

    async def open(self) -> None:
        """Open (and create) the database."""
        if self._db is None:
            self._db = await self._worker.run(self._open)

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        return db

    async def load(self, scope: str) -> Traits:
        """The traits of ``scope`` (the defaults if none were learned)."""
        await self.open()

        def read() -> Traits:
            assert self._db is not None
            row = self._db.execute(
                "SELECT traits FROM personality WHERE scope = ?", (scope,)
            ).fetchone()
            if row is None:
                return Traits()
            known = Traits().as_dict()
            return Traits(**{k: float(v) for k, v in json.loads(row[0]).items() if k in known})

        return await self._worker.run(read)

    async def save(self, scope: str, traits: Traits) -> None:
        """Store the traits of ``scope`` (one statement: atomic)."""
        await self.open()

        def write() -> None:
            assert self._db is not None
            self._db.execute(
                "INSERT INTO personality (scope, traits, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(scope) DO UPDATE SET traits = excluded.traits, "
                "updated_at = excluded.updated_at",
                (scope, json.dumps(traits.as_dict()), time.time()),
            )

        await self._worker.run(write)

    async def close(self) -> None:
        """Close the database."""
        db, self._db = self._db, None
        if db is not None:
            await self._worker.run(db.close)
        self._worker.shutdown()
        self._worker = WorkerThread("personality")
