"""A full-duplex voice session: audio in continuously, the reply out as it is made.

The transport (a websocket, a sound card) calls ``feed`` with each captured
frame and ``played`` with the reply audio as it actually plays; it reads the
turn's events (``coda.turn.events``) from ``events``. The front end's
endpointing ends the user's turn; recognition starts speculatively at the
tentative end of speech; the reply streams out clause by clause through the same
turn pipeline as every other entry point.

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
import re
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from coda.audio import endpointing
from coda.audio.frames import FRONT_END_RATE
from coda.audio.frontend import StreamingFrontEnd
from coda.core.enums import VoiceProcessingMode
from coda.core.errors import VoiceProcessingError
from coda.core.models import new_id
from coda.modes.clock import TurnClock
from coda.turn.context import TurnContext, TurnOptions
from coda.turn.events import (
    Interrupted,
    SpeechEnded,
    SpeechStarted,
    SpokenPiece,
    Transcribed,
    TurnEvent,
    TurnFailed,
    TurnOutcome,
)
from coda.turn.outcome import partial_outcome
from coda.voice.engine import VoiceEngine
from coda.worker import WorkerThread

log = logging.getLogger(__name__)


@dataclass
class _Reply:
    """The reply in flight: its pieces and how much of them has been played."""

    turn: TurnContext
    user_text: str = ""
    pieces: list[tuple[str, int]] = field(default_factory=list)  # (text, samples)
    played: int = 0
    outcome: TurnOutcome | None = None
    mode: VoiceProcessingMode = VoiceProcessingMode.LLM_ENHANCED

    @property
    def queued(self) -> int:
        return sum(n for _, n in self.pieces)

    def spoken_text(self) -> str:
        """The words played so far: whole pieces, then the played share of the next."""
        words: list[str] = []
        remaining = self.played
        for text, samples in self.pieces:
            if remaining >= samples:
                words.extend(text.split())
                remaining -= samples
                continue
            piece_words = text.split()
            words.extend(piece_words[: int(len(piece_words) * remaining / max(samples, 1))])
            break
        return " ".join(words)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("storing a turn failed: %s", task.exception())


def _normalize(text: str) -> str:
    return " ".join(re.findall(r"[a-z']+(?:-[a-z]+)?", text.lower()))


class DuplexSession:
    """One live conversation over a full-duplex audio link.

    Args:
        engine: An initialized engine.
        conversation_id: The conversation the turns belong to.
        input_rate: Rate of captured frames, in Hz.
        mode: Processing mode for the turns (None: the config's default).
        speaker: Who is speaking (whose memories and personality apply).
        options: How each turn is answered (e.g. which integrations take part).
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
    ) -> None:
        self.pipeline = engine.require_ready()
        self.conversation_id = conversation_id
        self.speaker = speaker
        self.options = options or TurnOptions()
        self.mode = mode or engine.config.default_mode
        self._streaming = engine.config.streaming
        self._output_rate = engine.config.audio.sample_rate
        self.frontend = StreamingFrontEnd(
            engine.config.audio,
            input_rate,
            playback_rate=self._output_rate,
            tentative_end_ms=self._streaming.tentative_end_ms,
        )
        self.events: asyncio.Queue[TurnEvent] = asyncio.Queue()
        self._worker = WorkerThread("session")
        self._turn: asyncio.Task[None] | None = None
        self._reply: _Reply | None = None
        self._speculation: tuple[int, asyncio.Task[Transcribed]] | None = None
        self._checks: set[asyncio.Task[None]] = set()  # barge-in checks, ends of utterances
        self._ending: asyncio.Task[None] | None = None
        self._barge_checked_at = 0.0
        self._backchannels = {_normalize(b) for b in self._streaming.backchannels}
        self.interruptions = 0

    @property
    def replying(self) -> bool:
        """True while a reply is being made or is still playing."""
        reply = self._reply
        if reply is None:
            return False
        generating = self._turn is not None and not self._turn.done()
        return generating or reply.played < reply.queued

    @property
    def now_seconds(self) -> float:
        """Session time: captured audio so far."""
        return self.frontend.endpointer.position_seconds

    async def feed(self, frame: np.ndarray) -> None:
        """Process one captured frame (float32 mono at ``input_rate``); never waits on ASR."""
        for event in await self._worker.run(self.frontend.process, frame):
            if isinstance(event, endpointing.SpeechStarted):
                self._barge_checked_at = 0.0  # each utterance gets its own barge-in checks
                self.events.put_nowait(SpeechStarted(event.at_seconds))
            elif isinstance(event, endpointing.SpeechPaused):
                self._speculate()
            elif isinstance(event, endpointing.SpeechEnded):
                self._on_speech_ended(event.utterance)
        if self.replying and self.frontend.endpointer.in_speech:
            self._maybe_barge_in()
        elif self._complete_sentence_heard():
            ended = self.frontend.endpointer.end_now()
            if ended is not None:
                self._on_speech_ended(ended.utterance)

    async def settle(self) -> None:
        """Wait for the recognition this session started (speculation, checks, turn ends).

        A live transport never needs this; a test driver calls it after each frame
        so that decisions depend on the audio fed, not on this machine's speed.
        """
        while True:
            pending = [t for t in self._checks if not t.done()]
            if self._speculation is not None and not self._speculation[1].done():
                pending.append(self._speculation[1])  # type: ignore[arg-type]
            if not pending:
                return
            await asyncio.wait(pending)

    def _complete_sentence_heard(self) -> bool:
        """The speculative transcript is ready, nothing was said since, and it is complete."""
        if not self._streaming.early_end_on_complete or self._speculation is None:
            return False
        length, task = self._speculation
        endpointer = self.frontend.endpointer
        if not task.done() or task.cancelled() or task.exception() is not None:
            return False
        if endpointer.silence_seconds <= 0 or endpointer.utterance_samples != length:
            return False
        text = task.result().text.strip()
        words = _normalize(text).split()
        finished = text.endswith((".", "?", "!")) and not text.endswith("...")
        return finished and bool(words) and words[-1] not in self._streaming.unfinished_words

    def played(self, samples: np.ndarray) -> None:
        """The transport played these reply samples (float32 at the output rate)."""
        self.frontend.add_playback(samples)
        reply = self._reply
        if reply is None:
            return
        reply.played = min(reply.queued, reply.played + len(samples))
        if reply.outcome is not None and reply.played >= reply.queued:
            self._finish_reply(reply.outcome.reply_text)

    async def close(self) -> None:
        """Cancel anything in flight, keep what was said, and free the front end.

        A reply still playing (or still being made) when the session ends is
        stored with the part that was played, so the user's words are not lost.
        """
        tasks = [t for t in (*self._checks, self._ending) if t is not None]
        if self._speculation is not None:
            tasks.append(self._speculation[1])  # type: ignore[arg-type]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        reply, self._reply = self._reply, None
        await self._cancel_turn()
        if reply is not None and reply.user_text:
            heard = reply.outcome is not None and reply.played >= reply.queued
            spoken = reply.outcome.reply_text if heard and reply.outcome else reply.spoken_text()
            try:
                await self._store(reply, spoken)
            except VoiceProcessingError as exc:
                log.warning("the last turn of %s was not stored: %s", self.conversation_id, exc)
        self.frontend.close()
        self._worker.shutdown()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)
        return task

    # -- turns ----------------------------------------------------------------------------

    def _speculate(self) -> None:
        """Recognize the utterance so far while waiting to be sure it has ended."""
        audio = self.frontend.endpointer.current_utterance()
        task = asyncio.create_task(self.pipeline.recognizer.words(audio, None, TurnClock()))
        if self._speculation is not None:
            self._speculation[1].cancel()
        self._speculation = (len(audio), task)

    def _take_speculation(
        self, utterance: endpointing.Utterance
    ) -> asyncio.Task[Transcribed] | None:
        if self._speculation is None:
            return None
        length, task = self._speculation
        self._speculation = None
        if length != len(utterance.samples):  # speech resumed after the pause
            task.cancel()
            return None
        return task

    def _on_speech_ended(self, utterance: endpointing.Utterance) -> None:
        # How long after the true end of speech the turn was known to be over.
        waited_ms = max(0.0, (self.now_seconds - utterance.end_seconds) * 1000)
        self.events.put_nowait(SpeechEnded(utterance.end_seconds, waited_ms))
        previous = self._ending
        speculation = self._take_speculation(utterance)
        self._ending = self._spawn(self._end_of_utterance(utterance, speculation, previous))

    async def _end_of_utterance(
        self,
        utterance: endpointing.Utterance,
        speculation: asyncio.Task[Transcribed] | None,
        previous: asyncio.Task[None] | None,
    ) -> None:
        """A new turn, unless it was a backchannel while Coda talks."""
        if previous is not None:
            with contextlib.suppress(BaseException):
                await previous  # utterances are handled in the order they ended
        transcript = None
        if speculation is not None:
            with contextlib.suppress(VoiceProcessingError):
                transcript = await speculation
        if self.replying:
            words = transcript.text if transcript else await self._words(utterance.samples)
            if self._is_backchannel(words):
                return  # "mm-hm" while Coda talks: keep talking, no new turn
            await self._interrupt("speech")
        turn = TurnContext(
            self.conversation_id, self.speaker, new_id("msg"), self.options, streamed=True
        )
        self._reply = _Reply(turn)
        self._turn = asyncio.create_task(self._run_turn(self._reply, utterance, transcript))

    async def _run_turn(
        self, reply: _Reply, utterance: endpointing.Utterance, transcript: Transcribed | None
    ) -> None:
        try:
            async for event in self.pipeline.run(
                reply.turn,
                audio=utterance.samples,
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
                    if transcript is not None:
                        event.metadata["timings_ms"]["asr"] = 0.0  # done before the turn ended
                self.events.put_nowait(event)
            if reply.played >= reply.queued and reply.outcome is not None:
                self._finish_reply(reply.outcome.reply_text)
        except VoiceProcessingError as exc:
            self.events.put_nowait(TurnFailed(type(exc).__name__, str(exc)))
            self._reply = None

    def _finish_reply(self, spoken: str) -> None:
        """The reply played to its end: store it (in the background) and forget it."""
        reply, self._reply = self._reply, None
        if reply is not None:
            task = asyncio.create_task(self._store(reply, spoken))
            task.add_done_callback(_log_failure)

    async def _store(self, reply: _Reply, spoken: str) -> None:
        """Store the turn with the part of the reply that was heard, then learn from it."""
        outcome = reply.outcome
        if outcome is None:
            outcome = partial_outcome(
                reply.turn, reply.user_text, spoken, reply.mode, self._output_rate
            )
        else:  # a copy: the event already sent must not change under the transport
            cut = spoken != outcome.reply_text
            outcome = replace(outcome, reply_text=spoken, interrupted=cut)
        await self.pipeline.commit(outcome)

    # -- barge-in -------------------------------------------------------------------------

    async def _words(self, audio: np.ndarray) -> str:
        if len(audio) < FRONT_END_RATE // 10:
            return ""
        with contextlib.suppress(VoiceProcessingError):
            return (await self.pipeline.recognizer.words(audio, None, TurnClock())).text
        return ""

    def _is_backchannel(self, words: str) -> bool:
        """No words, a backchannel ("okay"), or Coda's own words coming back as echo."""
        said = _normalize(words)
        if not said or said in self._backchannels:
            return True
        return self._is_own_echo(said)

    def _is_own_echo(self, said: str) -> bool:
        share = self._streaming.self_echo_overlap
        reply = self._reply
        if not share or reply is None:
            return False
        heard = said.split()
        spoken = set(_normalize(" ".join(text for text, _ in reply.pieces)).split())
        return sum(word in spoken for word in heard) >= share * len(heard)

    def _maybe_barge_in(self) -> None:
        speech = self.frontend.endpointer.speech_seconds
        if speech * 1000 < self._streaming.barge_in_min_speech_ms:
            return
        if speech - self._barge_checked_at < 0.2:  # re-check at most every 200 ms of speech
            return
        if any(not t.done() for t in self._checks):
            return  # one check (or turn end) at a time; the next frame tries again
        self._barge_checked_at = speech
        audio = self.frontend.endpointer.current_utterance()
        self._spawn(self._check_barge_in(audio, speech, self._reply))

    async def _check_barge_in(self, audio: np.ndarray, speech: float, over: _Reply | None) -> None:
        words = await self._words(audio)
        log.debug("barge-in check after %.2f s of speech: %r", speech, words)
        # Only the reply the speech was heard over is interrupted, not a newer one.
        if self._reply is over and self.replying and not self._is_backchannel(words):
            await self._interrupt(words)

    async def _interrupt(self, heard: str) -> None:
        reply, self._reply = self._reply, None  # at once: a concurrent check sees no reply
        await self._cancel_turn()
        if reply is None:
            return
        self.interruptions += 1
        spoken = reply.spoken_text()
        self.events.put_nowait(Interrupted(spoken, heard, reply.played / self._output_rate))
        if reply.user_text:
            await self._store(reply, spoken)

    async def _cancel_turn(self) -> None:
        turn, self._turn = self._turn, None
        if turn is not None and not turn.done():
            turn.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await turn
