"""A pool of Moshi servers: each serves one session at a time, so a session takes a free one.

A server is tried only when this instance holds no session on it. One that
refuses the connection is unhealthy, and one that sends no handshake in time is
busy (with another client, such as another Coda instance); either is skipped
for ``recheck_seconds`` while others are free, and tried again after that, or
sooner when no other is left (with one server, it is always tried). Free
servers are tried least recently used first, so sessions spread over the pool.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from coda.core.errors import MoshiConnectionError
from coda.core.provider_config import MoshiConfig
from coda.deadline import LOOP_CLOCK, Clock
from coda.providers.s2s.moshi_session import MoshiSession

STATES = ("free", "busy", "unhealthy")
"""What a server is to this instance: free, holding one of its sessions, or skipped."""


@dataclass
class MoshiServer:
    """One server of the pool, as this instance sees it."""

    url: str
    busy: bool = False
    skipped_until: float = 0.0
    last_used: float = 0.0
    sessions: int = 0
    failures: int = 0
    last_error: str | None = None

    def state(self, now: float) -> str:
        """One of ``STATES``: "free", "busy", or "unhealthy" (skipped after failing)."""
        if self.busy:
            return "busy"
        return "unhealthy" if now < self.skipped_until else "free"


class MoshiPool:
    """The Moshi servers of ``MoshiConfig.servers()``.

    Args:
        config: The servers, timeouts and ``recheck_seconds``.
        now: A monotonic clock in seconds.
        clock: What each session's connect and handshake timeouts are measured on.
    """

    def __init__(
        self,
        config: MoshiConfig,
        now: Callable[[], float] = time.monotonic,
        clock: Clock = LOOP_CLOCK,
    ) -> None:
        self.config = config
        self.now = now
        self.clock = clock
        self.servers = [MoshiServer(url) for url in config.servers()]
        self._choosing = asyncio.Lock()

    def occupancy(self) -> dict[str, int]:
        """How many servers are free, busy with this instance's sessions, or unhealthy."""
        now = self.now()
        counts = dict.fromkeys(STATES, 0)
        for server in self.servers:
            counts[server.state(now)] += 1
        return counts

    def snapshot(self) -> list[dict[str, object]]:
        """Each server's state and counters, for stats."""
        now = self.now()
        return [
            {"url": s.url, "state": s.state(now), "sessions": s.sessions,
             "failures": s.failures, "last_error": s.last_error}
            for s in self.servers
        ]  # fmt: skip

    async def session(self) -> MoshiSession:
        """A session on a free, healthy server; the server is free again when it closes.

        Raises:
            MoshiConnectionError: If no server is configured, or every one is busy
                or failed (each failure is named).
        """
        if not self.servers:
            raise MoshiConnectionError("no Moshi server is configured (MoshiConfig.server_url)")
        tried: dict[str, str] = {}
        while True:
            async with self._choosing:  # two sessions never pick the same server
                server = self._next(tried)
                if server is None:
                    break
                server.busy, server.last_used = True, self.now()
            tried[server.url] = ""
            try:
                session = await MoshiSession.open(self._settings(), server.url, self.clock)
            except MoshiConnectionError as exc:
                server.busy, server.last_error = False, str(exc)
                server.failures += 1
                server.skipped_until = self.now() + self.config.recheck_seconds
                tried[server.url] = str(exc)
                continue
            except BaseException:
                # Cancelled while connecting (a hybrid race lost, a turn cut short):
                # nothing holds the server, so it must not stay busy for good.
                server.busy = False
                raise
            server.sessions += 1
            session.on_close = functools.partial(self._free, server)
            return session
        busy = sum(s.busy for s in self.servers)
        failed = "; ".join(error for error in tried.values())
        raise MoshiConnectionError(
            f"no Moshi server is free: {busy} of {len(self.servers)} busy with this "
            f"instance's sessions" + (f", and the others failed: {failed}" if failed else "")
        )

    def _next(self, tried: dict[str, str]) -> MoshiServer | None:
        """A free server, least recently used; else the one skipped longest ago."""
        now = self.now()
        candidates = [s for s in self.servers if not s.busy and s.url not in tried]
        free = [s for s in candidates if s.state(now) == "free"]
        if free:
            return min(free, key=lambda s: s.last_used)
        return min(candidates, key=lambda s: s.skipped_until) if candidates else None

    def _settings(self) -> MoshiConfig:
        if len(self.servers) == 1:
            return self.config  # nowhere else to go: wait for it as long as configured
        return replace(self.config, handshake_timeout_seconds=self.config.pool_handshake_seconds)

    @staticmethod
    def _free(server: MoshiServer) -> None:
        server.busy = False
