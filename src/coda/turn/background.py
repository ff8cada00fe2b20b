"""After-commit work (learning, sync) on a bounded queue, off the turn's path.

Each key (a speaker) has its own chain: its jobs run one after another, so what
a turn learned is stored before that speaker's later jobs run, while one
speaker's slow learning never holds up another's. A full queue drops the new
job (logged and counted): the next turn is never delayed by learning. A job
that fails is logged and counted. ``settled(key)`` waits for the jobs queued so
far under ``key``, so a turn can read what that speaker's previous turn taught
(bounded by a timeout); while it waits, those jobs' model work goes first on
the compute scheduler. Once a job marks the rest of its work optional (a model
reading what the rules could not), it goes on detached: the speaker's next
jobs run, and no turn waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from coda.providers.scheduler import Ticket, current_ticket

log = logging.getLogger(__name__)

Job = Callable[[], Coroutine[Any, Any, None]]
POLL_SECONDS = 0.05
"""How often a job is checked for turning optional (which notifies nobody)."""


@dataclass
class _Queued:
    key: str
    name: str
    job: Job


class BackgroundQueue:
    """Bounded chains of jobs, one task per key with work to do.

    Args:
        max_size: Jobs waiting at most (all keys together); past it new jobs are dropped.
    """

    def __init__(self, max_size: int) -> None:
        self._max = max_size
        self._chains: dict[str, deque[_Queued]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._running: dict[str, Ticket] = {}  # each key's job in progress, for the scheduler
        self._awaited: set[str] = set()  # keys a turn is waiting for
        self._pending: Counter[str] = Counter()  # waiting or running, per key
        self._detached: dict[asyncio.Task[None], str] = {}  # optional rests of jobs → key
        self._notes: set[asyncio.Task[None]] = set()
        self._changed: asyncio.Condition | None = None
        self.stats = {"queued": 0, "done": 0, "failed": 0, "dropped": 0}
        self.failures: Counter[str] = Counter()

    @property
    def pending(self) -> int:
        """Jobs waiting or running, with the optional rests of jobs still running."""
        return sum(self._pending.values()) + len(self._detached)

    def submit(self, key: str, name: str, job: Job) -> bool:
        """Queue ``job`` (named for the logs) under ``key``; False if it was dropped."""
        if sum(len(chain) for chain in self._chains.values()) >= self._max:
            self.stats["dropped"] += 1
            log.warning("background queue full: dropped %s", name)
            return False
        self._chains.setdefault(key, deque()).append(_Queued(key, name, job))
        self._pending[key] += 1
        self.stats["queued"] += 1
        if key not in self._workers:
            self._workers[key] = asyncio.create_task(self._run(key), name=f"coda-learn-{key}")
        return True

    async def settled(self, key: str, timeout: float, *, optional: bool = True) -> bool:
        """Wait (at most ``timeout`` seconds) until no job of ``key`` is waiting or running.

        Args:
            key: Whose jobs.
            timeout: The longest wait, in seconds.
            optional: Also wait for the optional rests of jobs (False: a turn that
                needs only what the rules learned).
        """
        if self._settled(key, optional):
            return True
        self._urgent(key, True)
        changed = self._condition()
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                async with asyncio.timeout(timeout), changed:
                    await changed.wait_for(lambda: self._settled(key, optional))
        finally:
            self._urgent(key, False)
        return self._settled(key, optional)

    def _settled(self, key: str, optional: bool) -> bool:
        detached = optional and key in self._detached.values()
        return not self._pending[key] and not detached

    def _urgent(self, key: str, urgent: bool) -> None:
        if urgent:
            self._awaited.add(key)
        else:
            self._awaited.discard(key)
        if key in self._running:
            self._running[key].awaited = urgent

    async def drain(self) -> None:
        """Wait until every queued job has run."""
        changed = self._condition()
        async with changed:
            await changed.wait_for(lambda: not self._pending and not self._detached)

    def snapshot(self) -> dict[str, object]:
        """Counters, waiting jobs, and failures by job name."""
        waiting = sum(len(chain) for chain in self._chains.values())
        return {**self.stats, "waiting": waiting, "failures": dict(self.failures)}

    async def close(self) -> None:
        """Stop the workers (jobs still waiting are dropped)."""
        workers, self._workers = [*self._workers.values(), *self._detached], {}
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._chains.clear()

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _run(self, key: str) -> None:
        chain = self._chains[key]
        try:
            while chain:
                item = chain.popleft()
                ticket = Ticket(key, background=True, awaited=key in self._awaited)
                context = contextvars.copy_context()
                context.run(current_ticket.set, ticket)
                self._running[key] = ticket
                task = asyncio.create_task(item.job(), context=context)
                task.add_done_callback(functools.partial(self._finished, name=item.name))
                try:
                    while not task.done() and not ticket.optional:
                        await asyncio.wait({task}, timeout=POLL_SECONDS)
                    if not task.done():  # the rest is best effort: let it finish on its own
                        self._detached[task] = key
                except asyncio.CancelledError:
                    task.cancel()
                    raise
                finally:
                    del self._running[key]
                    self._pending[key] -= 1
                    if not self._pending[key]:
                        del self._pending[key]
                    await self._notify()
        finally:
            if self._workers.get(key) is asyncio.current_task():
                del self._workers[key]
            if not chain:
                self._chains.pop(key, None)

    def _finished(self, task: asyncio.Task[None], name: str) -> None:
        if not task.cancelled() and task.exception() is None:
            self.stats["done"] += 1
        elif not task.cancelled():  # one failing job must not stop the others
            self.stats["failed"] += 1
            self.failures[name] += 1
            log.error("background job %s failed", name, exc_info=task.exception())
        if self._detached.pop(task, None) is not None:
            note = asyncio.get_running_loop().create_task(self._notify())
            self._notes.add(note)
            note.add_done_callback(self._notes.discard)

    async def _notify(self) -> None:
        changed = self._condition()
        async with changed:
            changed.notify_all()
