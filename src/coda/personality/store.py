"""Where personality traits persist: the protocol, and the SQLite default.

What Coda learned about how a speaker likes to be answered survives a restart;
PostgreSQL (``coda.store.postgres.traits``) shares it between instances.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Protocol

from coda.personality.traits import Traits
from coda.store.database import SQLiteDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS personality (
    scope TEXT PRIMARY KEY,
    traits TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""


class TraitStore(Protocol):
    """Traits per scope (a speaker)."""

    async def open(self) -> None:
        """Open (and create) the store."""

    async def load(self, scope: str) -> Traits:
        """The traits of ``scope`` (the defaults if none were learned)."""
        ...

    async def save(self, scope: str, traits: Traits) -> None:
        """Store the traits of ``scope``, atomically."""

    async def close(self) -> None:
        """Close the store."""


def traits_from(stored: dict[str, object]) -> Traits:
    """Traits from their stored form; names this version does not know are ignored."""
    known = Traits().as_dict()
    return Traits(**{k: float(v) for k, v in stored.items() if k in known})  # type: ignore[arg-type]


class SQLiteTraitStore:
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
            return Traits() if row is None else traits_from(json.loads(row[0]))

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
