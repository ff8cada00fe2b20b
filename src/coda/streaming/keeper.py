"""Storing a live session's turns: with what was heard of the reply, in the background.

A live turn is stored once its reply has played (or was cut off), then the
session announces it (``TurnStored``). A session that ends waits for the turns
still being stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

import numpy as np

from coda.core.errors import VoiceProcessingError
from coda.streaming.reply import Reply
from coda.turn.events import TurnEvent, TurnStored
from coda.turn.outcome import partial_outcome
from coda.turn.pipeline import TurnPipeline

log = logging.getLogger(__name__)


class TurnKeeper:
    """Stores the turns of one live session.

    Args:
        pipeline: Commits each turn (and learns from it).
        events: The session's events, where ``TurnStored`` goes.
        output_rate: The rate of the reply's audio, in Hz.
    """

    def __init__(
        self, pipeline: TurnPipeline, events: asyncio.Queue[TurnEvent], output_rate: int
    ) -> None:
        self.pipeline = pipeline
        self.events = events
        self.output_rate = output_rate
        self._storing: set[asyncio.Task[None]] = set()

    def soon(self, reply: Reply, spoken: str) -> None:
        """Store the turn in the background."""
        task = asyncio.create_task(self.store(reply, spoken))
        self._storing.add(task)
        task.add_done_callback(self._storing.discard)
        task.add_done_callback(_log_failure)

    async def store(self, reply: Reply, spoken: str) -> None:
        """Store the turn with ``spoken``, the part of the reply that was heard."""
        outcome = reply.outcome
        if outcome is None:
            outcome = partial_outcome(
                reply.turn, reply.user_text, spoken, reply.mode, self.output_rate
            )
        else:  # a copy: the event already sent must not change under the transport
            cut = spoken != outcome.reply_text
            outcome = replace(outcome, reply_text=spoken, interrupted=cut)
        await self.pipeline.commit(outcome)
        turn = outcome.turn
        self.events.put_nowait(TurnStored(turn.message_id or "", outcome.user_text, spoken))

    async def cut_short(self, reply: Reply, hear: Callable[[np.ndarray], Awaitable[str]]) -> None:
        """A reply the session's end cut: stored with what was played of it.

        If its words were not recognized yet, ``hear`` recognizes them now.
        """
        await reply.cancel()
        if not reply.user_text and reply.audio is not None:
            reply.user_text = await hear(reply.audio)
        if not reply.user_text:
            return  # nothing was said that could be kept
        heard = reply.outcome is not None and reply.played >= reply.queued
        spoken = reply.outcome.reply_text if heard and reply.outcome else reply.spoken_text()
        try:
            await self.store(reply, spoken)
        except VoiceProcessingError as exc:
            log.warning("the last turn of %s was not stored: %s", reply.turn.conversation_id, exc)

    async def drain(self) -> None:
        """Wait for the turns being stored."""
        if self._storing:
            await asyncio.wait(set(self._storing))


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("storing a turn failed: %s", task.exception())
