"""One process's link to a PostgreSQL database, shared by every store that uses it.

- a psycopg connection pool (autocommit; stores open transactions explicitly);
- the schema brought up to date at the first opening (``migrations``);
- this instance's row in ``instances``, refreshed by a heartbeat, so what it
  holds (live sessions) stops counting once it is gone, even after ``kill -9``;
- one ``LISTEN`` connection: notifications from other instances (memory changed,
  a sync event, ...) are handed to the subscribers of their ``kind``, in order.
  After a lost connection, subscribers get a ``resync`` notice, since what was
  sent meanwhile is gone.

Every store asks ``PostgresDatabase.shared(url)`` and opens and closes it; the
last close releases the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from coda.core.errors import StoreUnavailableError, VoiceInitializationError
from coda.store.location import StoreLocation
from coda.store.postgres.migrations import migrate

log = logging.getLogger(__name__)

CHANNEL = "coda_events"
MAX_CONNECTIONS = 10
"""Connections one instance's pool may open (turns, learning and limits share them)."""
CONNECT_TIMEOUT_SECONDS = 10.0
POOL_WAIT_SECONDS = 5.0
"""Longest wait for a pooled connection: past it (the database down, or every
connection busy) the caller gets an error instead of hanging."""
HEARTBEAT_SECONDS = 5.0
GONE_SECONDS = 20.0
"""An instance silent this long is taken as gone: its live sessions no longer count."""
EVENT_RETENTION_SECONDS = 3600
"""Sync events are kept this long for other instances to read."""

Subscriber = Callable[[dict[str, Any]], Awaitable[None] | None]


class PostgresDatabase:
    """A pool, the schema, this instance's heartbeat and its notifications, for one URL.

    Args:
        url: ``postgresql://user:password@host:port/database``.
    """

    _shared: ClassVar[dict[tuple[str, int], PostgresDatabase]] = {}

    def __init__(self, url: str) -> None:
        self.url = url
        self.instance_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._redacted = StoreLocation("postgresql", url).redacted()
        self._pool: AsyncConnectionPool | None = None
        self._users = 0
        self._opening = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._listening = asyncio.Event()

    @classmethod
    def shared(cls, url: str) -> PostgresDatabase:
        """This process's database for ``url`` (one per event loop)."""
        key = (url, id(asyncio.get_running_loop()))
        if key not in cls._shared:
            cls._shared[key] = cls(url)
        return cls._shared[key]

    @property
    def pool(self) -> AsyncConnectionPool:
        """The connection pool.

        Raises:
            RuntimeError: If the database is not open.
        """
        if self._pool is None:
            raise RuntimeError(f"the PostgreSQL store at {self._redacted} is closed")
        return self._pool

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection (autocommit: use ``conn.transaction()`` for several writes).

        Raises:
            StoreUnavailableError: If the database cannot be reached (down, or every
                connection busy past ``POOL_WAIT_SECONDS``); a transaction under
                way is rolled back.
        """
        try:
            async with self.pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailableError(
                f"the PostgreSQL store at {self._redacted} cannot be reached: {exc}"
            ) from exc

    async def open(self) -> None:
        """Open for one more user: the first connects, migrates and starts listening.

        Raises:
            VoiceInitializationError: If the database cannot be reached or migrated.
        """
        async with self._opening:
            self._users += 1
            if self._users > 1:
                return
            try:
                await self._start()
            except BaseException:
                self._users = 0
                await self._stop()
                raise

    async def _start(self) -> None:
        try:  # one plain connection first: its error says what is wrong, the pool's would not
            probe = await AsyncConnection.connect(
                self.url, connect_timeout=int(CONNECT_TIMEOUT_SECONDS)
            )
        except psycopg.Error as exc:
            raise VoiceInitializationError(
                f"cannot reach the PostgreSQL store at {self._redacted}: {exc}"
            ) from exc
        await probe.close()
        pool = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=MAX_CONNECTIONS,
            open=False,
            kwargs={"autocommit": True},
            check=AsyncConnectionPool.check_connection,
            timeout=POOL_WAIT_SECONDS,
            name="coda",
        )
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS)
        except Exception as exc:
            await pool.close()
            raise VoiceInitializationError(
                f"cannot reach the PostgreSQL store at {self._redacted}: {exc}"
            ) from exc
        self._pool = pool
        async with pool.connection() as conn:
            applied = await migrate(conn)
            if applied:
                log.info("PostgreSQL store migrated to version %d", applied[-1])
            await conn.execute(
                "INSERT INTO instances (id, host) VALUES (%s, %s)",
                (self.instance_id, socket.gethostname()),
            )
        self._tasks = [
            asyncio.create_task(self._listen(), name="coda-pg-listen"),
            asyncio.create_task(self._heartbeat(), name="coda-pg-heartbeat"),
        ]
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                await self._listening.wait()
        except TimeoutError as exc:
            raise VoiceInitializationError(
                f"could not LISTEN on the PostgreSQL store at {self._redacted}"
            ) from exc

    async def close(self) -> None:
        """Close for one user; the last one stops listening and closes the pool."""
        async with self._opening:
            if self._users == 0:
                return
            self._users -= 1
            if self._users == 0:
                await self._stop()

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks = []
        self._listening.clear()
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(Exception):
                async with pool.connection(timeout=2) as conn:
                    await conn.execute("DELETE FROM instances WHERE id = %s", (self.instance_id,))
            await pool.close()
        for key, database in list(self._shared.items()):
            if database is self:
                del self._shared[key]

    # -- notifications --------------------------------------------------------------------

    def subscribe(self, kind: str, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber`` with each notification of ``kind`` from other instances.

        ``kind`` "resync" is sent after the listening connection was lost and
        restored. Returns the function that unsubscribes.
        """
        self._subscribers.setdefault(kind, []).append(subscriber)
        return lambda: self._subscribers.get(kind, []).remove(subscriber)

    async def notify(self, conn: AsyncConnection, kind: str, **payload: Any) -> None:
        """Tell the other instances (on commit, when ``conn`` is in a transaction)."""
        message = json.dumps({**payload, "kind": kind, "origin": self.instance_id})
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, message))

    async def _listen(self) -> None:
        backoff, listened = 0.5, False
        while True:
            try:
                async with await AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT_SECONDS)
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if listened:
                        await self._deliver({"kind": "resync", "origin": ""})
                    listened, backoff = True, 0.5
                    self._listening.set()
                    async for note in conn.notifies():
                        await self._deliver(json.loads(note.payload))
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError, ValueError) as exc:
                log.warning("PostgreSQL notifications lost (%s); reconnecting", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _deliver(self, message: dict[str, Any]) -> None:
        if message.get("origin") == self.instance_id:
            return  # this instance acted on its own change already
        for subscriber in list(self._subscribers.get(str(message.get("kind")), ())):
            try:
                result = subscriber(message)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - one subscriber never stops the others
                log.exception("a %s notification subscriber failed", message.get("kind"))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                async with self.connection() as conn:
                    await self.beat(conn)
            except (StoreUnavailableError, psycopg.Error, OSError) as exc:
                log.warning("PostgreSQL heartbeat failed: %s", exc)

    async def beat(self, conn: AsyncConnection) -> None:
        """Say this instance is alive; forget gone instances and old sync events."""
        cursor = await conn.execute(
            "UPDATE instances SET heartbeat_at = now() WHERE id = %s", (self.instance_id,)
        )
        if cursor.rowcount == 0:  # taken for gone after a long stall: come back
            await conn.execute(
                "INSERT INTO instances (id, host) VALUES (%s, %s)",
                (self.instance_id, socket.gethostname()),
            )
        await conn.execute(
            "DELETE FROM instances WHERE heartbeat_at < now() - make_interval(secs => %s)",
            (GONE_SECONDS * 3,),
        )
        await conn.execute(
            "DELETE FROM sync_events WHERE created_at < now() - make_interval(secs => %s)",
            (EVENT_RETENTION_SECONDS,),
        )


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[PostgresDatabase]:
    """The shared database for ``url``, open for the block."""
    database = PostgresDatabase.shared(url)
    await database.open()
    try:
        yield database
    finally:
        await database.close()


def jsonable(value: dict[str, Any]) -> dict[str, Any]:
    """A JSON-safe copy for a ``jsonb`` column (anything not JSON becomes its text)."""
    return dict(json.loads(json.dumps(value, default=str)))


class PostgresStore:
    """A store over the shared database: opening and closing it, and reaching it.

    Args:
        url: The database's URL.
        closed: Builds the error raised when the store is used while closed.
    """

    def __init__(
        self,
        url: str,
        closed: Callable[[], Exception] = lambda: RuntimeError("the store is closed"),
    ) -> None:
        self.url = url
        self._closed = closed
        self._database: PostgresDatabase | None = None

    @property
    def database(self) -> PostgresDatabase:
        """The shared database, between ``open`` and ``close``."""
        if self._database is None:
            raise self._closed()
        return self._database

    async def open(self) -> None:
        """Connect (the first store in the process also migrates); a no-op when open."""
        if self._database is None:
            database = PostgresDatabase.shared(self.url)
            await database.open()
            self._database = database

    async def close(self) -> None:
        """Release the connection."""
        database, self._database = self._database, None
        if database is not None:
            await database.close()
