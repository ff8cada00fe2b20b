"""Personality traits in PostgreSQL: every instance reads the speaker's current traits.

Traits are read at each turn, not cached, so a change made on one instance (a
"shorter please", feedback over REST) shapes the next reply on any other.
"""

from __future__ import annotations

import time

from psycopg.types.json import Jsonb

from coda.personality.store import traits_from
from coda.personality.traits import Traits
from coda.store.postgres.database import PostgresDatabase, PostgresStore


class PostgresTraitStore(PostgresStore):
    """Traits per scope (a speaker), shared by every instance.

    Args:
        url: The database's URL.
    """

    async def _opened(self) -> PostgresDatabase:
        await self.open()  # traits may be read before the engine opens its stores
        return self.database

    async def load(self, scope: str) -> Traits:
        """The traits of ``scope`` (the defaults if none were learned)."""
        database = await self._opened()
        async with database.connection() as conn:
            cursor = await conn.execute("SELECT traits FROM personality WHERE scope = %s", (scope,))
            row = await cursor.fetchone()
        return Traits() if row is None else traits_from(dict(row[0]))

    async def save(self, scope: str, traits: Traits) -> None:
        """Store the traits of ``scope`` (one statement: atomic)."""
        database = await self._opened()
        async with database.connection() as conn:
            await conn.execute(
                "INSERT INTO personality (scope, traits, updated_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (scope) DO UPDATE SET traits = excluded.traits, "
                "updated_at = excluded.updated_at",
                (scope, Jsonb(traits.as_dict()), time.time()),
            )
