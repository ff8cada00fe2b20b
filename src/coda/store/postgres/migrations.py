"""Versioned SQL migrations, applied in order at start-up and recorded in ``coda_schema``.

Each ``migrations/NNNN_name.sql`` runs once, in its own transaction with its
record, so a failed migration leaves the database at the version before it.
Instances starting together take turns through an advisory lock: the first
migrates, the others find the work done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from psycopg import AsyncConnection

from coda.core.errors import ConfigurationError

_LOCK = 0x636F_6461  # "coda": one advisory lock id for the migration step
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The package's migrations, in version order."""
    found = []
    for entry in resources.files("coda.store.postgres").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


LATEST = migrations()[-1].version
"""The schema version this code reads and writes."""


async def schema_version(conn: AsyncConnection) -> int:
    """The version recorded in the database (0 for an empty one)."""
    cursor = await conn.execute("SELECT to_regclass('coda_schema') IS NOT NULL")
    row = await cursor.fetchone()
    if not row or not row[0]:
        return 0
    cursor = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM coda_schema")
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def migrate(conn: AsyncConnection, target: int | None = None) -> list[int]:
    """Bring the database up to ``target`` (default: the latest); the versions applied.

    Raises:
        ConfigurationError: If the database is newer than this code (downgrades
            are not supported: run the newer Coda, or restore a backup).
    """
    target = LATEST if target is None else target
    await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK,))
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS coda_schema (version integer PRIMARY KEY, "
            "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await schema_version(conn)
        if current > LATEST:
            raise ConfigurationError(
                f"the database's schema is at version {current}, newer than this Coda's "
                f"{LATEST}: upgrade Coda"
            )
        applied = []
        for migration in migrations():
            if current < migration.version <= target:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO coda_schema (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                applied.append(migration.version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK,))
