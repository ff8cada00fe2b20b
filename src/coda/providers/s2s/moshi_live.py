"""A live, full-duplex bridge to Moshi: microphone audio in, Moshi's voice and text out.

Unlike a whole-message reply, a live call streams both ways for as long as it
lasts. If the connection drops, the bridge reconnects with exponential backoff
(``reconnect_attempts``, from ``reconnect_backoff_seconds``) and tells the listener
with a ``Reconnected`` event; audio captured while it was down is dropped, not
queued, because Moshi's answer to stale audio would come too late to be useful.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import soxr

from coda.core.errors import MoshiConnectionError
from coda.core.provider_config import MoshiConfig
from coda.providers.s2s import moshi_protocol as protocol
from coda.providers.s2s.moshi_pool import MoshiPool
from coda.providers.s2s.moshi_session import MoshiOutput, MoshiSession

log = logging.getLogger(__name__)
MAX_QUEUED = 256
"""Moshi outputs (80 ms each) held for a caller that is slow to read them."""


@dataclass(frozen=True)
class Reconnected:
    """The bridge lost Moshi and is connected again (a new session: Moshi's context is gone)."""

    attempts: int
    error: str


LiveEvent = MoshiOutput | Reconnected


class MoshiLiveBridge:
    """Bridges a live call to a Moshi server.

    Use ``async with MoshiLiveBridge(config, rate) as bridge``, then ``send`` audio
    as it is captured and iterate ``events()`` for what Moshi says.

    Args:
        config: The Moshi servers and reconnection settings.
        input_rate: Sample rate of the audio given to ``send``, in Hz.
        pool: The servers' pool (default: one of ``config``'s own); a reconnection
            may land on another server of it.
    """

    def __init__(self, config: MoshiConfig, input_rate: int, pool: MoshiPool | None = None) -> None:
        self.config = config
        self.pool = pool or MoshiPool(config)
        self._resampler = soxr.ResampleStream(input_rate, protocol.SAMPLE_RATE, 1, dtype="float32")
        # Bounded: a caller that stops reading stops this reader, then Moshi's socket.
        self._events: asyncio.Queue[LiveEvent | BaseException | None] = asyncio.Queue(MAX_QUEUED)
        self._session: MoshiSession | None = None
        self._receiver: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._generation = 0
        self._closed = False
        self.reconnects = 0
        self.dropped_samples = 0
        """Input samples (at 24 kHz) dropped while disconnected."""

    async def __aenter__(self) -> MoshiLiveBridge:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect (no retries: a server that is down at the start is an error).

        Raises:
            MoshiConnectionError: If the server cannot be reached.
        """
        self._attach(await self.pool.session())

    def _attach(self, session: MoshiSession) -> None:
        self._session = session
        self._generation += 1
        self._receiver = asyncio.create_task(self._receive(session, self._generation))

    async def send(self, samples: np.ndarray) -> None:
        """Send captured audio (float, at ``input_rate``); dropped while reconnecting.

        Raises:
            MoshiConnectionError: If the bridge has given up or is closed.
        """
        if self._closed:
            raise MoshiConnectionError("the Moshi bridge is closed")
        audio = self._resampler.resample_chunk(np.asarray(samples, np.float32))
        session, generation = self._session, self._generation
        if session is None or self._lock.locked():
            self.dropped_samples += len(audio)
            return
        try:
            await session.send(audio)
        except MoshiConnectionError as exc:
            self.dropped_samples += len(audio)
            await self._recover(generation, exc)

    async def events(self) -> AsyncIterator[LiveEvent]:
        """Moshi's audio and text, and reconnections, until the bridge closes.

        Raises:
            MoshiConnectionError: If reconnection failed every attempt.
        """
        while True:
            item = await self._events.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def _receive(self, session: MoshiSession, generation: int) -> None:
        # Moshi answers every 80 ms of audio sent: a server silent for the receive
        # timeout is hung (or cut off), and the call moves on to a new session.
        timeout = self.config.receive_timeout_seconds
        try:
            while True:
                async with asyncio.timeout(timeout):  # not wait_for: it may swallow a cancel
                    output = await session.receive()
                if output is None:
                    break
                await self._events.put(output)
            error = MoshiConnectionError("the Moshi server ended the session")
        except TimeoutError:
            error = MoshiConnectionError(f"Moshi sent nothing for {timeout:g} s")
        except MoshiConnectionError as exc:
            error = exc
        if not self._closed:
            await self._recover(generation, error)

    async def _recover(self, generation: int, error: MoshiConnectionError) -> None:
        """Reconnect once per lost session, however many tasks noticed the loss."""
        async with self._lock:
            if generation != self._generation or self._closed:
                return  # someone else already reconnected (or we are closing)
            log.warning("Moshi connection lost (%s); reconnecting", error)
            old = self._session
            self._session = None
            if old is not None:
                await old.close()
            delay = self.config.reconnect_backoff_seconds
            for attempt in range(1, self.config.reconnect_attempts + 1):
                await asyncio.sleep(delay)
                try:
                    session = await self.pool.session()
                except MoshiConnectionError as exc:
                    log.info("reconnect attempt %d failed: %s", attempt, exc)
                    delay *= 2
                    continue
                self.reconnects += 1
                self._attach(session)
                await self._events.put(Reconnected(attempt, str(error)))
                return
            self._closed = True
            await self._events.put(
                MoshiConnectionError(
                    f"Moshi connection lost and {self.config.reconnect_attempts} reconnection "
                    f"attempts failed: {error}"
                )
            )

    async def close(self) -> None:
        """End the call: close the socket and stop the receiver. Idempotent."""
        self._closed = True
        receiver, self._receiver = self._receiver, None
        if receiver is not None and receiver is not asyncio.current_task():
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver
        if self._session is not None:
            await self._session.close()
            self._session = None
        with contextlib.suppress(asyncio.QueueFull):  # full: nobody is reading any more
            self._events.put_nowait(None)
