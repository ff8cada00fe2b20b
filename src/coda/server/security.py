"""API keys (kept only as SHA-256 digests) and per-key rate limits of one instance.

Instances that share a PostgreSQL store share their buckets instead
(``coda.store.postgres.server_state``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def digest(key: str) -> str:
    """SHA-256 hex digest of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    """Checks presented keys against stored digests, in constant time."""

    def __init__(self, keys: list[str], digests: list[str]) -> None:
        self._digests = {digest(k) for k in keys} | {d.lower() for d in digests}

    def __bool__(self) -> bool:
        return bool(self._digests)

    def identify(self, presented: str | None) -> str | None:
        """The digest of ``presented`` if it is a valid key, else None."""
        if not presented:
            return None
        candidate = digest(presented)
        found = None
        for known in self._digests:  # every digest is compared: no early exit to time
            if hmac.compare_digest(candidate, known):
                found = known
        return found


@dataclass
class RateLimiter:
    """A token bucket per key: ``per_minute`` requests, refilled continuously.

    Args:
        per_minute: Requests allowed per key per minute (also the burst size).
        now: A monotonic clock in seconds.
    """

    per_minute: int
    now: Callable[[], float] = field(default=time.monotonic)
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def allow(self, key: str) -> bool:
        """Take one token for ``key``; False if it has none left."""
        now = self.now()
        tokens, last = self._buckets.get(key, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - last) * self.per_minute / 60.0)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True

    async def take(self, key: str) -> float:
        """Take a token for ``key``: 0 when it had one, else the seconds until it has."""
        return 0.0 if self.allow(key) else self.retry_after(key)

    def blocked(self, key: str) -> float:
        """Seconds until ``key`` has a token (0: it has one now); nothing is taken."""
        tokens, last = self._buckets.get(key, (float(self.per_minute), self.now()))
        tokens = min(float(self.per_minute), tokens + (self.now() - last) * self.per_minute / 60)
        return max(0.0, (1.0 - tokens) * 60.0 / self.per_minute)

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` has a token again."""
        tokens, _ = self._buckets.get(key, (1.0, 0.0))
        return max(0.0, (1.0 - tokens) * 60.0 / self.per_minute)
