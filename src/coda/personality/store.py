"""Personality traits in SQLite, so what Coda learned survives a restart."""

from __future__ import annotations

import json
import time
from pathlib import Path

from coda.personality.traits import Traits
from coda.store.database import SQLiteDatabase

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
        self._database = SQLiteDatabase(path, _SCHEMA, "personality")

    async def open(self) -> None:
        """Open (and create) the database."""
        await self._database.open()

    async def load(self, scope: str) -> Traits:
        """The traits of ``scope`` (the defaults if none were learned)."""
        await self.open()

        def read() -> Traits:
            row = self._database.connection.execute(
                "SELECT traits FROM personality WHERE scope = ?", (scope,)
            ).fetchone()
            if row is None:
                return Traits()
            known = Traits().as_dict()
            return Traits(**{k: float(v) for k, v in json.loads(row[0]).items() if k in known})

        return await self._database.run(read)

    async def save(self, scope: str, traits: Traits) -> None:
        """Store the traits of ``scope`` (one statement: atomic)."""
        await self.open()

        def write() -> None:
            self._database.connection.execute(
                "INSERT INTO personality (scope, traits, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(scope) DO UPDATE SET traits = excluded.traits, "
                "updated_at = excluded.updated_at",
                (scope, json.dumps(traits.as_dict()), time.time()),
            )

        await self._database.run(write)

    async def close(self) -> None:
        """Close the database."""
        await self._database.close()
