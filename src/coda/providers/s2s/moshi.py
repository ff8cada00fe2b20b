"""Moshi as a speech-to-speech provider: one utterance in, Moshi's spoken reply out.

The user's audio is streamed in 80 ms frames, then silence, for as long as Moshi
answers (its output is paced by its input). Input runs at most
``flow_window_frames`` ahead of the output received, so a slow server is never
flooded and a fast one is never waited on. Output produced while the user's audio
was still going in is Moshi listening, not replying, and is dropped. The reply
ends after ``reply_silence_seconds`` of silence once Moshi has spoken, or at
``max_response_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from coda.audio.decode import resample
from coda.core.errors import MoshiConnectionError
from coda.core.provider_config import MoshiConfig
from coda.deadline import LOOP_CLOCK, Clock
from coda.providers.base import SpeechAudio
from coda.providers.s2s import moshi_protocol as protocol
from coda.providers.s2s.moshi_pool import MoshiPool
from coda.providers.s2s.moshi_session import MoshiAudio, MoshiOutput, MoshiSession, MoshiText

FRAME = protocol.FRAME_SAMPLES


@dataclass
class ReplyState:
    """Where a reply stands: what was received, and whether it has ended."""

    listen_samples: int
    """Output samples that overlap the user's audio (dropped)."""
    received: int = 0
    reply_samples: int = 0
    spoken: bool = False
    silent_samples: int = 0
    finish_reason: str | None = None


class MoshiSpeechToSpeech:
    """Talks to Moshi servers over their websocket protocol.

    Args:
        config: Servers, timeouts, sampling and reply-end settings.
        pool: The servers' pool (default: one of ``config``'s own); share one
            with live calls, so that each server serves one session at a time.
        clock: What the receive timeout (and a default pool's timeouts) is measured on.
    """

    name = "moshi"

    def __init__(
        self, config: MoshiConfig, pool: MoshiPool | None = None, clock: Clock = LOOP_CLOCK
    ) -> None:
        self.config = config
        self.clock = clock
        self.pool = pool or MoshiPool(config, clock=clock)
        self.finish_reason: str | None = None
        """Why the last reply ended: "silence", "length" or "closed"."""

    async def load(self) -> None:
        """Nothing to load: a session is opened per reply."""

    async def close(self) -> None:
        """Nothing held between replies."""

    async def respond(
        self, samples: np.ndarray, sample_rate: int
    ) -> AsyncIterator[SpeechAudio | str]:
        """Stream Moshi's reply to one utterance: 24 kHz audio pieces and text pieces.

        Raises:
            MoshiConnectionError: If the server cannot be reached, is busy, drops the
                connection, reports an error, or stops answering.
        """
        audio = resample(np.asarray(samples, np.float32), sample_rate, protocol.SAMPLE_RATE)
        frames = -(-len(audio) // FRAME)
        user = np.zeros(frames * FRAME, np.float32)
        user[: len(audio)] = audio
        reply = ReplyState(listen_samples=len(user))
        session = await self.pool.session()
        progress = asyncio.Event()
        sender = asyncio.create_task(self._feed(session, user, reply, progress))
        try:
            async for item in self._collect(session, reply, progress, sender):
                yield item
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, MoshiConnectionError):
                await sender
            await session.close()
        self.finish_reason = reply.finish_reason

    async def _feed(
        self, session: MoshiSession, user: np.ndarray, reply: ReplyState, progress: asyncio.Event
    ) -> None:
        window = self.config.flow_window_frames
        reply_frames = int(self.config.max_response_seconds * protocol.SAMPLE_RATE) // FRAME
        limit = len(user) // FRAME + reply_frames + window + 2
        silence = np.zeros(FRAME, np.float32)
        for index in range(limit):
            while index - reply.received // FRAME >= window:
                progress.clear()
                await progress.wait()
            frame = (
                user[index * FRAME : (index + 1) * FRAME] if index * FRAME < len(user) else silence
            )
            await session.send(frame)

    async def _collect(
        self,
        session: MoshiSession,
        reply: ReplyState,
        progress: asyncio.Event,
        sender: asyncio.Task[None],
    ) -> AsyncIterator[SpeechAudio | str]:
        config = self.config
        max_samples = int(config.max_response_seconds * protocol.SAMPLE_RATE)
        end_silence = int(config.reply_silence_seconds * protocol.SAMPLE_RATE)
        threshold = 10 ** (config.silence_dbfs / 20)
        while reply.finish_reason is None:
            output = await self._next_output(session, sender)
            if output is None:
                reply.finish_reason = "closed"
            elif isinstance(output, MoshiText):
                if reply.received >= reply.listen_samples:
                    yield output.text
            elif isinstance(output, MoshiAudio):
                pcm = self._reply_part(output.pcm, reply)
                reply.received += len(output.pcm)
                progress.set()
                if pcm.size and self._advance(reply, pcm, threshold, end_silence, max_samples):
                    yield SpeechAudio(pcm, protocol.SAMPLE_RATE)

    async def _next_output(
        self, session: MoshiSession, sender: asyncio.Task[None]
    ) -> MoshiOutput | None:
        """Moshi's next output, failing early if the sender failed.

        Raises:
            MoshiConnectionError: If sending failed, or nothing came in time.
        """
        timeout = self.config.receive_timeout_seconds
        receive = asyncio.ensure_future(session.receive())
        timer = asyncio.ensure_future(self.clock.sleep(timeout))
        try:
            while not receive.done():
                # A sender that has sent all its frames is no reason to stop waiting.
                watched = {receive, timer} if sender.done() else {receive, sender, timer}
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                if receive.done():
                    break
                if timer.done():
                    raise MoshiConnectionError(f"Moshi sent nothing for {timeout:g} s")
                if sender.done() and (error := sender.exception()) is not None:
                    raise error
        finally:
            timer.cancel()
            if not receive.done():
                receive.cancel()
            await asyncio.wait({receive, timer})
        return receive.result()

    @staticmethod
    def _reply_part(pcm: np.ndarray, reply: ReplyState) -> np.ndarray:
        skip = max(0, reply.listen_samples - reply.received)
        return pcm[skip:]

    @staticmethod
    def _advance(
        reply: ReplyState, pcm: np.ndarray, threshold: float, end_silence: int, max_samples: int
    ) -> bool:
        """Account for reply audio; True once Moshi has started speaking.

        Leading silence (Moshi still listening) is dropped by the caller.
        """
        reply.reply_samples += len(pcm)
        if float(np.sqrt(np.mean(np.square(pcm)))) >= threshold:
            reply.spoken = True
            reply.silent_samples = 0
        else:
            reply.silent_samples += len(pcm)
        if reply.spoken and reply.silent_samples >= end_silence:
            reply.finish_reason = "silence"
        elif reply.reply_samples >= max_samples:
            reply.finish_reason = "length"
        return reply.spoken
