"""The server's limits per API key: requests per minute, and live sessions at once.

With an SQLite store, one instance serves everything and counts in memory. With
a PostgreSQL store, instances behind one load balancer count together in the
database, so a key gets its limits once, not once per instance.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from coda.server.security import RateLimiter
from coda.server.settings import ServerSettings


class RateLimits(Protocol):
    """Token buckets per key."""

    async def open(self) -> None:
        """Connect, where the buckets are shared."""

    async def close(self) -> None:
        """Disconnect."""

    async def take(self, key: str) -> float:
        """Take a token for ``key``: 0 when it had one, else the seconds until it has."""
        ...


class SessionRegistry(Protocol):
    """Live sessions per key."""

    async def open(self) -> None:
        """Connect, where the sessions are shared."""

    async def close(self) -> None:
        """Disconnect."""

    async def begin(self, key: str, conversation_id: str) -> str | None:
        """Register a session: its id, or None if the key has its maximum open."""
        ...

    async def end(self, session_id: str) -> None:
        """Unregister a session."""


class LocalRateLimits(RateLimiter):
    """This instance's buckets."""

    async def open(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to disconnect."""


class LocalSessions:
    """This instance's sessions per key.

    Args:
        per_key: Most sessions one key may hold open.
    """

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._keys: dict[str, str] = {}
        self._open = Counter[str]()

    async def open(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to disconnect."""

    async def begin(self, key: str, conversation_id: str) -> str | None:
        """Register a session: its id, or None if the key has ``per_key`` open."""
        if self._open[key] >= self.per_key:
            return None
        session = secrets.token_hex(8)
        self._keys[session] = key
        self._open[key] += 1
        return session

    async def end(self, session_id: str) -> None:
        """Unregister a session."""
        key = self._keys.pop(session_id, None)
        if key is not None:
            self._open[key] -= 1


def build_limits(
    settings: ServerSettings, now: Callable[[], float] | None = None
) -> tuple[RateLimits, SessionRegistry]:
    """The limits for the store ``settings`` name: shared over PostgreSQL, else local.

    Args:
        settings: The limits and the store.
        now: The rate limits' clock in seconds (None: a monotonic clock here, the
            database's when shared).
    """
    location = settings.voice_config().store_location()
    if location.kind == "postgresql":
        from coda.store.postgres.server_state import PostgresRateLimits, PostgresSessions

        return (
            PostgresRateLimits(location.target, settings.rate_limit_per_minute, now),
            PostgresSessions(location.target, settings.max_sessions_per_key),
        )
    return (
        LocalRateLimits(settings.rate_limit_per_minute, now=now or time.monotonic),
        LocalSessions(settings.max_sessions_per_key),
    )
