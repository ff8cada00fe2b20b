"""Clocks for timeouts, and bounding an async stream in time.

Every timeout Coda waits on goes through a ``Clock``: the event loop's own in
production, a ``ManualClock`` where time must move only when told to (tests and
simulations), so that a timeout fires on cue however fast or loaded the machine is.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from coda.core.errors import TimeoutError

T = TypeVar("T")


class Clock(Protocol):
    """A monotonic clock that timeouts are measured on."""

    def time(self) -> float:
        """Now, in seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` have passed on this clock."""
        ...


class LoopClock:
    """The running event loop's clock: the one asyncio's own timeouts use."""

    def time(self) -> float:
        """The loop's monotonic time, in seconds."""
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(seconds)


LOOP_CLOCK = LoopClock()
"""The default clock of every timeout."""


@dataclass(eq=False)
class _Sleeper:
    deadline: float
    seconds: float
    wake: asyncio.Future[None]


@dataclass
class ManualClock:
    """A clock that moves only on ``advance``: its sleeps end then, never on their own.

    Attributes:
        now: The current time, in seconds.
    """

    now: float = 0.0
    _sleepers: list[_Sleeper] = field(default_factory=list, init=False, repr=False)
    _changed: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    def time(self) -> float:
        """The current time, in seconds."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has been advanced by ``seconds``."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        sleeper = _Sleeper(self.now + seconds, seconds, asyncio.get_running_loop().create_future())
        self._sleepers.append(sleeper)
        self._notify()
        try:
            await sleeper.wake
        finally:
            with contextlib.suppress(ValueError):  # already woken by advance
                self._sleepers.remove(sleeper)
            self._notify()

    def pending(self) -> list[float]:
        """The duration each current sleeper asked for, oldest first."""
        return [s.seconds for s in self._sleepers]

    def advance(self, seconds: float) -> int:
        """Move the clock on and wake every sleeper now due; return how many woke."""
        self.now += seconds
        due = [s for s in self._sleepers if s.deadline <= self.now + 1e-9]
        for sleeper in due:
            self._sleepers.remove(sleeper)
            if not sleeper.wake.done():
                sleeper.wake.set_result(None)
        return len(due)

    async def sleeping(self, seconds: float) -> float:
        """Wait until something sleeps for ``seconds`` on this clock (a timeout is armed).

        Returns:
            When that sleep ends, on this clock.
        """
        while True:
            for sleeper in self._sleepers:
                if math.isclose(sleeper.seconds, seconds):
                    return sleeper.deadline
            self._changed.clear()
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()


async def within(
    awaitable: Awaitable[T],
    seconds: float,
    clock: Clock = LOOP_CLOCK,
    discard: Callable[[T], Awaitable[object]] | None = None,
) -> T:
    """``awaitable``'s result if it comes within ``seconds`` on ``clock``.

    Args:
        awaitable: What to wait for.
        seconds: How long to wait for it.
        clock: What ``seconds`` are measured on.
        discard: Given a result that came but that no one will receive (this call
            was cancelled, or timed out, as it arrived), so that what it holds, such
            as an open connection, is released rather than left to the collector.

    Raises:
        builtins.TimeoutError: If the time runs out first; ``awaitable`` is then
            cancelled and awaited, so its cleanup has run.
    """
    task = asyncio.ensure_future(awaitable)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    timed_out = delivered = False
    try:
        await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
        timed_out = not task.done()
        delivered = not timed_out
    finally:
        # Also when this call is cancelled: neither may outlive it. ``asyncio.wait``
        # never raises their outcome, so a second cancellation of ours still propagates.
        timer.cancel()
        task.cancel()
        await asyncio.wait({task, timer})
        came = task.done() and not task.cancelled() and task.exception() is None
        if came and not delivered and discard is not None:
            await discard(task.result())
    if timed_out:
        raise builtins.TimeoutError(f"no result within {seconds:g} s")
    return task.result()


async def with_deadline(
    events: AsyncIterator[T], seconds: float, clock: Clock = LOOP_CLOCK
) -> AsyncIterator[T]:
    """Re-yield ``events`` until ``seconds`` have passed on ``clock``, then raise.

    On timeout the source generator is cancelled where it waits, so its own
    cleanup (cancelling the LLM and TTS tasks) runs before the error surfaces.

    Raises:
        TimeoutError: Once the time is up (``StreamingConfig.turn_timeout_seconds``).
    """
    deadline = clock.time() + seconds
    iterator = aiter(events)
    try:
        while True:
            try:
                item = await within(anext(iterator), deadline - clock.time(), clock)
            except StopAsyncIteration:
                return
            except builtins.TimeoutError as exc:
                raise TimeoutError(
                    f"the turn took longer than {seconds:.1f} s "
                    "(StreamingConfig.turn_timeout_seconds); it was cancelled"
                ) from exc
            yield item
    finally:
        await iterator.aclose()  # type: ignore[attr-defined]
