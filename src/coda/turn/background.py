"""After-commit work (learning, sync) on a bounded queue, off the turn's path.

One worker runs the jobs in order, so what a turn learned is stored before a
later turn's jobs run. A full queue drops the new job (logged and counted): the
next turn is never delayed by learning. A job that fails is logged and counted.
``settled(key)`` waits for the jobs queued so far under ``key`` (a speaker), so a
turn can read what that speaker's previous turn taught (bounded by a timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


@dataclass
class _Queued:
    key: str
    name: str
    job: Job


class BackgroundQueue:
    """A bounded FIFO of jobs and the one task that runs them.

    Args:
        max_size: Jobs waiting at most; past it new jobs are dropped.
    """

    def __init__(self, max_size: int) -> None:
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue(max_size)
        self._worker: asyncio.Task[None] | None = None
        self._pending: Counter[str] = Counter()
        self._changed: asyncio.Condition | None = None
        self.stats = {"queued": 0, "done": 0, "failed": 0, "dropped": 0}
        self.failures: Counter[str] = Counter()

    def submit(self, key: str, name: str, job: Job) -> bool:
        """Queue ``job`` (named for the logs) under ``key``; False if it was dropped."""
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name="coda-background")
        try:
            self._queue.put_nowait(_Queued(key, name, job))
        except asyncio.QueueFull:
            self.stats["dropped"] += 1
            log.warning("background queue full: dropped %s", name)
            return False
        self._pending[key] += 1
        self.stats["queued"] += 1
        return True

    async def settled(self, key: str, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until no job of ``key`` is waiting or running."""
        if not self._pending[key]:
            return True
        changed = self._condition()
        with contextlib.suppress(asyncio.TimeoutError):
            async with asyncio.timeout(timeout), changed:
                await changed.wait_for(lambda: not self._pending[key])
        return not self._pending[key]

    async def drain(self) -> None:
        """Wait until every queued job has run."""
        await self._queue.join()

    def snapshot(self) -> dict[str, object]:
        """Counters, waiting jobs, and failures by job name."""
        return {**self.stats, "waiting": self._queue.qsize(), "failures": dict(self.failures)}

    async def close(self) -> None:
        """Stop the worker (jobs still waiting are dropped)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await item.job()
                self.stats["done"] += 1
            except Exception:  # noqa: BLE001 - one failing job must not stop the others
                self.stats["failed"] += 1
                self.failures[item.name] += 1
                log.exception("background job %s failed", item.name)
            finally:
                self._queue.task_done()
                self._pending[item.key] -= 1
                if not self._pending[item.key]:
                    del self._pending[item.key]
                changed = self._condition()
                async with changed:
                    changed.notify_all()
