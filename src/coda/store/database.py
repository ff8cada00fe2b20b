"""One SQLite connection on its own thread: how every store here talks to SQLite.

All SQL runs on the database's worker thread, never on the event loop. The
file is opened in WAL mode, so several stores (conversations, memories, traits,
text conversations) can share one file, each through its own connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from coda.worker import WorkerThread

P = ParamSpec("P")
T = TypeVar("T")
MEMORY = ":memory:"


class SQLiteDatabase:
    """A lazily opened SQLite connection with its schema and its worker thread.

    Args:
        path: The file (created with its folder), or ``":memory:"``.
        schema: SQL run at every opening (``CREATE ... IF NOT EXISTS``).
        name: Names the worker thread.
        closed: Builds the error raised when the database is used while closed.
    """

    def __init__(
        self,
        path: Path | str,
        schema: str,
        name: str,
        closed: Callable[[], Exception] = lambda: RuntimeError("the database is closed"),
    ) -> None:
        self.path = path
        self._schema = schema
        self._name = name
        self._closed = closed
        self._db: sqlite3.Connection | None = None
        self._worker: WorkerThread | None = None

    @property
    def is_open(self) -> bool:
        """True between ``open`` and ``close``."""
        return self._db is not None

    async def open(self) -> None:
        """Open (and create if needed) the database; a no-op when already open."""
        if self._db is None:
            self._worker = self._worker or WorkerThread(self._name)
            self._db = await self._worker.run(self._connect)

    def _connect(self) -> sqlite3.Connection:
        target = str(self.path)
        if target != MEMORY:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(target, check_same_thread=False, isolation_level=None, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(self._schema)
        return db

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection (only for code running on the worker thread)."""
        if self._db is None:
            raise self._closed()
        return self._db

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the database's thread."""
        if self._worker is None or self._db is None:
            raise self._closed()
        return await self._worker.run(fn, *args, **kwargs)

    async def close(self) -> None:
        """Close the connection and stop the thread; it can be opened again."""
        db, self._db = self._db, None
        worker, self._worker = self._worker, None
        if worker is not None:
            if db is not None:
                await worker.run(db.close)
            worker.shutdown()
