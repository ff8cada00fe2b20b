"""A full-duplex voice session: audio in continuously, the reply out as it is made.

The transport (a websocket, a sound card) calls ``feed`` with each captured
frame and ``played`` with the reply audio as it actually plays; it reads the
turn's events (``coda.turn.events``) from ``events``. The reply streams out
clause by clause through the same turn pipeline as every other entry point.

Turn-taking: at the first pause (``tentative_end_ms`` of silence) the words so
far are recognized and the audio scored (Smart Turn); the turn-taking policy
(``coda.streaming.turn_taking``) turns both into the silence that ends the
turn, short after a complete sentence, long after "and", "um" or counting.
Meanwhile the reply is already being made from those words (preemptive reply):
its events are held back and released the moment the end is confirmed, or
discarded if the user goes on.

Barge-in: speech that lasts ``barge_in_min_speech_ms`` while a reply is being
made or played interrupts it, unless its words are a backchannel ("mm-hm",
"yeah"). The reply's generation is cancelled at once and an ``Interrupted``
event tells the transport to stop playing; the conversation keeps only the part
of the reply that was actually played. Recognition for these checks runs in
tasks, so ``feed`` never waits for it and the transport keeps reading frames;
a driver that wants decisions to depend on the audio alone awaits ``settle()``
after each frame. Time is counted in samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

import numpy as np

from coda.audio import endpointing
from coda.audio.frontend import StreamingFrontEnd
from coda.core.config import AudioConfig, StreamingConfig
from coda.core.enums import VoiceProcessingMode
from coda.core.errors import VoiceProcessingError, client_message
from coda.core.models import new_id
from coda.modes.clock import TurnClock
from coda.streaming.barge_in import BargeIn
from coda.streaming.keeper import TurnKeeper
from coda.streaming.pause import Guess, PauseReader
from coda.streaming.reply import Reply
from coda.streaming.turn_taking import TurnEndPolicy
from coda.turn.context import TurnContext, TurnOptions
from coda.turn.events import (
    Interrupted,
    ReplyDiscarded,
    SpeechEnded,
    SpeechStarted,
    SpokenPiece,
    Transcribed,
    TurnEvent,
    TurnFailed,
    TurnOutcome,
)
from coda.voice.engine import VoiceEngine
from coda.worker import WorkerThread

log = logging.getLogger(__name__)
CLOSE_WAIT_SECONDS = 5.0
"""At close, the longest wait for the end of a turn already heard to start its reply."""


class DuplexSession:
    """One live conversation over a full-duplex audio link.

    Args:
        engine: An initialized engine.
        conversation_id: The conversation the turns belong to.
        input_rate: Rate of captured frames, in Hz.
        mode: Processing mode for the turns (None: the config's default).
        speaker: Who is speaking (whose memories and personality apply).
        options: How each turn is answered (e.g. which integrations take part).
        audio: This session's front-end settings (None: the engine's).
        streaming: This session's turn-taking settings (None: the engine's).
    """

    def __init__(
        self,
        engine: VoiceEngine,
        conversation_id: str,
        input_rate: int,
        mode: VoiceProcessingMode | None = None,
        *,
        speaker: str = "user",
        options: TurnOptions | None = None,
        audio: AudioConfig | None = None,
        streaming: StreamingConfig | None = None,
    ) -> None:
        self.pipeline = engine.require_ready()
        self.conversation_id = conversation_id
        self.speaker = speaker
        self.options = options or TurnOptions()
        self.mode = mode or engine.config.default_mode
        self._streaming = streaming or engine.config.streaming
        self._output_rate = engine.config.audio.sample_rate
        # The endpointer waits out the longest pause; the policy ends most turns sooner.
        audio = replace(
            audio or engine.config.audio, vad_hangover_ms=self._streaming.end_silence_unfinished_ms
        )
        self.frontend = StreamingFrontEnd(
            audio,
            input_rate,
            playback_rate=self._output_rate,
            tentative_end_ms=self._streaming.tentative_end_ms,
        )
        self.events: asyncio.Queue[TurnEvent] = asyncio.Queue()
        self._worker = WorkerThread("session")
        self._reply: Reply | None = None  # being made or played
        self._held: Reply | None = None  # made during a pause, not yet released
        smart_turn = engine.smart_turn if self._streaming.smart_turn else None
        policy = TurnEndPolicy(self._streaming)
        self._pause = PauseReader(self.pipeline.recognizer, policy, smart_turn, self._on_guess)
        self._checks: set[asyncio.Task[None]] = set()  # barge-in checks, ends of utterances
        self._keeper = TurnKeeper(self.pipeline, self.events, self._output_rate)
        self._ending: asyncio.Task[None] | None = None
        self._barge_in = BargeIn(self.pipeline.recognizer, self._streaming)
        self.interruptions = 0
        self.discarded = 0  # preemptive replies thrown away because the user went on
        self.answers = True
        """Answer each turn (False: its words go out as ``Transcribed``, unanswered)."""
        self.interruptible = True
        """Speech over a reply stops it (False: the reply is kept whole; the turn waits)."""

    @property
    def replying(self) -> bool:
        """True while a reply is being made or is still playing (a held one is not)."""
        reply = self._reply
        return reply is not None and (reply.generating or reply.played < reply.queued)

    @property
    def now_seconds(self) -> float:
        """Session time: captured audio so far."""
        return self.frontend.endpointer.position_seconds

    async def feed(self, frame: np.ndarray) -> None:
        """Process one captured frame (float32 mono at ``input_rate``); never waits on ASR."""
        for event in await self._worker.run(self.frontend.process, frame):
            if isinstance(event, endpointing.SpeechStarted):
                self._barge_in.new_utterance()
                self.events.put_nowait(SpeechStarted(event.at_seconds))
            elif isinstance(event, endpointing.SpeechPaused):
                self._pause.read(self.frontend.endpointer)
            elif isinstance(event, endpointing.SpeechEnded):
                self._on_speech_ended(event.utterance, "the longest pause")
        endpointer = self.frontend.endpointer
        held = self._held
        if held is not None and endpointer.utterance_samples != held.utterance_samples:
            self._discard(held)  # the user went on: that reply answered half a sentence
        if self.replying and endpointer.in_speech:
            self._maybe_barge_in()
        guess = self._pause.current(endpointer)
        if guess is not None and endpointer.silence_seconds * 1000 >= guess.verdict.silence_ms:
            ended = endpointer.end_now()
            if ended is not None:
                self._on_speech_ended(ended.utterance, guess.verdict.reason)

    async def settle(self) -> None:
        """Wait for the recognition this session started (speculation, checks, turn ends).

        A live transport never needs this; a test driver calls it after each frame
        so that decisions depend on the audio fed, not on this machine's speed.
        """
        while True:
            pending: list[asyncio.Future[Any]] = [t for t in self._checks if not t.done()]
            if self._pause.task is not None and not self._pause.task.done():
                pending.append(self._pause.task)
            if not pending:
                return
            await asyncio.wait(pending)

    def played(self, samples: np.ndarray) -> None:
        """The transport played these reply samples (float32 at the output rate)."""
        self.frontend.add_playback(samples)
        reply = self._reply
        if reply is None:
            return
        reply.played = min(reply.queued, reply.played + len(samples))
        if reply.outcome is not None and reply.played >= reply.queued:
            self._finish_reply(reply, reply.outcome.reply_text)

    async def close(self) -> None:
        """Cancel anything in flight, keep what was said, and free the front end.

        A turn whose end was heard is answered far enough to be stored: a reply
        still playing (or still being made) is stored with the part that was
        played, and a reply cut before the words were recognized has them
        recognized now, so the user's words are not lost.
        """
        ending = self._ending
        if ending is not None and not ending.done():  # the turn's reply is being started
            # asyncio.wait neither raises the turn's own failure (reported with the
            # turn) nor, unlike wait_for on Python 3.11, swallows a cancel of close().
            await asyncio.wait({ending}, timeout=CLOSE_WAIT_SECONDS)
        tasks: list[asyncio.Future[Any]] = [t for t in (*self._checks, self._ending) if t]
        if self._pause.task is not None:
            tasks.append(self._pause.task)
        held, self._held = self._held, None
        if held is not None and held.task is not None:
            tasks.append(held.task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        reply, self._reply = self._reply, None
        if reply is not None:
            await self._keeper.cut_short(reply, self._barge_in.words)
        await self._keeper.drain()  # turns that played to the end are stored first
        self.frontend.close()
        self._worker.shutdown()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)
        return task

    # -- the end of the user's turn -------------------------------------------------------

    def _on_guess(self, guess: Guess, audio: np.ndarray, speech_end: float) -> None:
        if self._may_preempt(guess):
            self._held = self._start(guess.transcript, audio, speech_end, held=True)

    def _may_preempt(self, guess: Guess) -> bool:
        endpointer = self.frontend.endpointer
        return (
            self._streaming.preemptive_reply
            and self._held is None
            and not self.replying
            and (self._ending is None or self._ending.done())
            and endpointer.in_speech
            and endpointer.utterance_samples == guess.samples
        )

    def _on_speech_ended(self, utterance: endpointing.Utterance, reason: str) -> None:
        # How long after the true end of speech the turn was known to be over.
        waited_ms = max(0.0, (self.now_seconds - utterance.end_seconds) * 1000)
        self.events.put_nowait(SpeechEnded(utterance.end_seconds, waited_ms, reason))
        speculation = self._pause.take(len(utterance.samples))
        held, self._held = self._held, None
        if held is not None and held.utterance_samples == len(utterance.samples):
            self._release(held)
            return
        if held is not None:
            self._discard(held)
        previous = self._ending
        self._ending = self._spawn(self._end_of_utterance(utterance, speculation, previous))

    def _release(self, reply: Reply) -> None:
        """The end is confirmed: the preemptive reply becomes the reply, its events go out."""
        reply.held = False
        self._reply = reply
        for event in reply.buffer:
            self.events.put_nowait(event)
        reply.buffer.clear()
        if not reply.generating:
            self._after_turn(reply)

    def _discard(self, reply: Reply) -> None:
        """Throw away a preemptive reply (nothing of it was sent or stored)."""
        if self._held is reply:
            self._held = None
        self.discarded += 1
        wasted_ms = (self.now_seconds - reply.started_at) * 1000
        self.events.put_nowait(ReplyDiscarded(reply.user_text, wasted_ms))
        self._spawn(reply.cancel())

    async def _end_of_utterance(
        self,
        utterance: endpointing.Utterance,
        speculation: asyncio.Task[Guess] | None,
        previous: asyncio.Task[None] | None,
    ) -> None:
        """A new turn, unless it was a backchannel while Coda talks."""
        if previous is not None:
            with contextlib.suppress(BaseException):
                await previous  # utterances are handled in the order they ended
        transcript = None
        if speculation is not None:
            with contextlib.suppress(VoiceProcessingError):
                transcript = (await speculation).transcript
        if self.replying:
            words = transcript.text if transcript else await self._barge_in.words(utterance.samples)
            if self._barge_in.is_backchannel(words, self._reply):
                return  # "mm-hm" while Coda talks: keep talking, no new turn
            await (self._interrupt("speech") if self.interruptible else self._let_finish())
        if not self.answers:  # the transport asks for the answer when it chooses
            heard = transcript or Transcribed(
                await self._barge_in.words(utterance.samples), 1, "asr"
            )
            if heard.text:
                self.events.put_nowait(heard)
            return
        self._reply = self._start(transcript, utterance.samples, utterance.end_seconds)

    async def _let_finish(self) -> None:
        """Without barge-in, the reply being made is finished first, and kept whole."""
        reply = self._reply
        if reply is not None and reply.task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(reply.task)
        if reply is not None and reply.outcome is not None:
            self._finish_reply(reply, reply.outcome.reply_text)

    def _start(
        self,
        transcript: Transcribed | None,
        audio: np.ndarray,
        speech_end: float,
        *,
        held: bool = False,
    ) -> Reply:
        turn = TurnContext(
            self.conversation_id, self.speaker, new_id("msg"), self.options, streamed=True
        )
        reply = Reply(
            turn, held=held, utterance_samples=len(audio), started_at=self.now_seconds, audio=audio
        )
        if transcript is not None:
            reply.user_text = transcript.text
        started_after_ms = max(0.0, (self.now_seconds - speech_end) * 1000)
        reply.task = asyncio.create_task(self._run_turn(reply, audio, transcript, started_after_ms))
        return reply

    async def _run_turn(
        self,
        reply: Reply,
        audio: np.ndarray,
        transcript: Transcribed | None,
        started_after_ms: float,
    ) -> None:
        preemptive = reply.held
        try:
            async for event in self.pipeline.run(
                reply.turn,
                audio=audio,
                text=None,
                requested=self.mode,
                clock=TurnClock(),
                commit=False,
                transcript=transcript,
            ):
                if isinstance(event, Transcribed):
                    reply.user_text = event.text
                elif isinstance(event, SpokenPiece):
                    reply.pieces.append((event.text, len(event.audio.samples)))
                elif isinstance(event, TurnOutcome):
                    reply.outcome, reply.mode = event, event.mode
                    timings = event.metadata["timings_ms"]
                    timings["started_after_speech_ms"] = started_after_ms
                    if transcript is not None:
                        timings["asr"] = 0.0  # done before the turn ended
                    if preemptive:
                        event.metadata["preemptive"] = True
                self._emit(reply, event)
        except VoiceProcessingError as exc:
            # The client is told only the kind of a server-side failure: its cause is here.
            log.warning("turn failed: %s: %s", type(exc).__name__, exc)
            self._emit(reply, TurnFailed(type(exc).__name__, client_message(exc)))
        if not reply.held:
            self._after_turn(reply)

    def _emit(self, reply: Reply, event: TurnEvent) -> None:
        if reply.held:
            reply.buffer.append(event)
        else:
            self.events.put_nowait(event)

    def _after_turn(self, reply: Reply) -> None:
        """The turn is made: forget a failed one; store one whose audio was all played."""
        if reply is not self._reply:
            return
        if reply.outcome is None:
            self._reply = None
        elif reply.played >= reply.queued:
            self._finish_reply(reply, reply.outcome.reply_text)

    def _finish_reply(self, reply: Reply, spoken: str) -> None:
        """The reply played to its end: store it (in the background) and forget it."""
        if reply is not self._reply:
            return
        self._reply = None
        self._keeper.soon(reply, spoken)

    # -- barge-in -------------------------------------------------------------------------

    def _maybe_barge_in(self) -> None:
        if not self.interruptible or any(not t.done() for t in self._checks):
            return  # one check (or turn end) at a time; the next frame tries again
        speech = self.frontend.endpointer.speech_seconds
        if self._barge_in.due(speech):
            audio = self.frontend.endpointer.current_utterance()
            self._spawn(self._check_barge_in(audio, speech, self._reply))

    async def _check_barge_in(self, audio: np.ndarray, speech: float, over: Reply | None) -> None:
        words = await self._barge_in.words(audio)
        log.debug("barge-in check after %.2f s of speech: %r", speech, words)
        # Only the reply the speech was heard over is interrupted, not a newer one.
        if self._reply is over and self.replying and not self._barge_in.is_backchannel(words, over):
            await self._interrupt(words)

    async def cancel_reply(self) -> bool:
        """Stop the reply being made or played, as a barge-in would; False if none was."""
        if self._reply is None:
            return False
        await self._interrupt("")
        return True

    async def _interrupt(self, heard: str) -> None:
        reply, self._reply = self._reply, None  # at once: a concurrent check sees no reply
        if reply is None:
            return
        await reply.cancel()
        self.interruptions += 1
        spoken = reply.spoken_text()
        self.events.put_nowait(Interrupted(spoken, heard, reply.played / self._output_rate))
        if reply.user_text:
            await self._keeper.store(reply, spoken)
