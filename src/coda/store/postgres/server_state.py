"""The server's limits shared by every instance on one PostgreSQL database.

- Rate limits: one token bucket per key in ``rate_buckets``, taken atomically by
  ``coda_take_token`` (migration 2), on the database's clock by default: every
  instance agrees on it, whatever its own clock says.
- Live sessions: a row per open websocket in ``live_sessions``, tied to its
  instance. Sessions of an instance whose heartbeat stopped (killed, or cut off)
  no longer count, and go with it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from coda.store.postgres.database import GONE_SECONDS, PostgresStore


class PostgresRateLimits(PostgresStore):
    """Token buckets per key, shared by every instance.

    Args:
        url: The database's URL.
        per_minute: Requests allowed per key per minute (also the burst size).
        now: A clock in epoch seconds (None: the database's).
    """

    def __init__(self, url: str, per_minute: int, now: Callable[[], float] | None = None) -> None:
        super().__init__(url)
        self.per_minute = per_minute
        self.now = now

    async def take(self, key: str) -> float:
        """Take a token for ``key``: 0 when it had one, else the seconds until it has."""
        at = None if self.now is None else self.now()
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                "SELECT coda_take_token(%s, %s, %s)", (key, float(self.per_minute), at)
            )
            row = await cursor.fetchone()
        left = float(row[0]) if row else 0.0
        return 0.0 if left >= 0 else -left


class PostgresSessions(PostgresStore):
    """Live sessions per key, counted across every live instance.

    Args:
        url: The database's URL.
        per_key: Most sessions one key may hold open, on all instances together.
    """

    def __init__(self, url: str, per_key: int) -> None:
        super().__init__(url)
        self.per_key = per_key

    async def begin(self, key: str, conversation_id: str) -> str | None:
        """Register a session: its id, or None if the key has ``per_key`` open."""
        database = self.database
        session = secrets.token_hex(8)
        async with database.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('sessions:' || %s, 0))", (key,)
            )
            cursor = await conn.execute(
                "SELECT COUNT(*) FROM live_sessions s JOIN instances i ON i.id = s.instance_id "
                "WHERE s.key_digest = %s AND i.heartbeat_at > now() - make_interval(secs => %s)",
                (key, GONE_SECONDS),
            )
            row = await cursor.fetchone()
            if row is not None and row[0] >= self.per_key:
                return None
            await conn.execute(
                "INSERT INTO live_sessions (id, instance_id, key_digest, conversation_id) "
                "VALUES (%s, %s, %s, %s)",
                (session, database.instance_id, key, conversation_id),
            )
        return session

    async def end(self, session_id: str) -> None:
        """Unregister a session."""
        async with self.database.connection() as conn:
            await conn.execute("DELETE FROM live_sessions WHERE id = %s", (session_id,))
