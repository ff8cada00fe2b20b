"""Reply audio taken as played at real-time pace from when it was sent.

A client that plays Coda's audio as it arrives, and does not say so, is heard
this way: the live session gets the samples as played (its echo reference, and
what a barge-in keeps) 20 ms at a time, as a loudspeaker would play them. A
client that reports its playback itself stops the clock (``stop``) and reports
from the same queue.
"""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np

from coda.audio.frames import SampleQueue
from coda.streaming.duplex import DuplexSession

STEP_SECONDS = 0.02


class Playout:
    """The reply audio a session has sent, played out on the clock.

    Args:
        session: Gets the samples as they are (taken as) played.
        rate: The audio's rate, in Hz.
        queued: What was sent and not yet played (shared with a reporting client).
    """

    def __init__(self, session: DuplexSession, rate: int, queued: SampleQueue) -> None:
        self.session = session
        self.rate = rate
        self.queued = queued
        self.stopped = False
        self._task: asyncio.Task[None] | None = None

    def push(self, samples: np.ndarray) -> None:
        """Audio just sent to the client."""
        self.queued.push(samples)
        if not self.stopped and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._play())

    async def _play(self) -> None:
        step = int(self.rate * STEP_SECONDS)
        while len(self.queued) and not self.stopped:
            self.session.played(self.queued.take(step))
            await asyncio.sleep(STEP_SECONDS)

    def clear(self) -> None:
        """The client stops playing (an interruption)."""
        self.queued.clear()

    def stop(self) -> None:
        """The client reports its playback itself from now on."""
        self.stopped = True

    async def close(self) -> None:
        """Stop."""
        self.stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
