"""A full-duplex voice session: audio in continuously, the reply out as it is made.

The transport (a websocket, a sound card) calls ``feed`` with each captured
frame and ``played`` with the reply audio as it actually plays; it reads
``SessionEvent``s from ``events``. The front end's endpointing ends the user's
turn; recognition starts speculatively at the tentative end of speech; the reply
streams out clause by clause.

Barge-in: speech that lasts ``barge_in_min_speech_ms`` while a reply is being
made or played interrupts it, unless its words are a backchannel ("mm-hm",
"yeah"). The reply's generation is cancelled at once and an ``interrupted``
event tells the transport to stop playing; the conversation keeps only the part
of the reply that was actually played. Time is counted in samples, so the same
audio always gives the same decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coda.audio.endpointing import SpeechEnded, SpeechPaused, SpeechStarted, Utterance
from coda.audio.frames import FRONT_END_RATE
from coda.audio.frontend import StreamingFrontEnd
from coda.core.errors import VoiceProcessingError
from coda.core.models import VoiceProcessingMode
from coda.modes.clock import TurnClock
from coda.modes.events import SpokenPiece, TextDelta, Transcribed
from coda.voice.engine import VoiceEngine
from coda.voice.outcome import TurnOutcome
from coda.worker import WorkerThread

log = logging.getLogger(__name__)


@dataclass
class SessionEvent:
    """Something the transport should know.

    Kinds: "speech_started", "speech_ended", "transcript", "text" (a reply delta),
    "audio" (a reply piece to play: float32 at the output rate), "turn_finished"
    (metadata holds the turn's timings and scores), "interrupted" (stop playing
    now; metadata holds what was heard), "error".
    """

    kind: str
    text: str | None = None
    audio: np.ndarray | None = None
    at_seconds: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Reply:
    """The reply in flight: its pieces and how much of them has been played."""

    user_text: str = ""
    pieces: list[tuple[str, int]] = field(default_factory=list)  # (text, samples)
    played: int = 0
    outcome: TurnOutcome | None = None

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
    """

    def __init__(
        self,
        engine: VoiceEngine,
        conversation_id: str,
        input_rate: int,
        mode: VoiceProcessingMode | None = None,
    ) -> None:
        engine.require_ready()
        self.engine = engine
        self.conversation_id = conversation_id
        self.mode = mode or engine.config.default_mode
        self._streaming = engine.config.streaming
        self._output_rate = engine.config.audio.sample_rate
        self.frontend = StreamingFrontEnd(
            engine.config.audio,
            input_rate,
            playback_rate=self._output_rate,
            tentative_end_ms=self._streaming.tentative_end_ms,
        )
        self.events: asyncio.Queue[SessionEvent] = asyncio.Queue()
        self._worker = WorkerThread("session")
        self._turn: asyncio.Task[None] | None = None
        self._reply: _Reply | None = None
        self._speculation: tuple[int, asyncio.Task[Transcribed]] | None = None
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
        """Process one captured frame (float32 mono at ``input_rate``)."""
        for event in await self._worker.run(self.frontend.process, frame):
            if isinstance(event, SpeechStarted):
                self._barge_checked_at = 0.0  # each utterance gets its own barge-in checks
                self._emit("speech_started", at_seconds=event.at_seconds)
            elif isinstance(event, SpeechPaused):
                self._speculate()
            elif isinstance(event, SpeechEnded):
                await self._on_speech_ended(event.utterance)
        if self.replying and self.frontend.endpointer.in_speech:
            await self._maybe_barge_in()
        elif self._complete_sentence_heard():
            ended = self.frontend.endpointer.end_now()
            if ended is not None:
                await self._on_speech_ended(ended.utterance)

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
        """Cancel anything in flight and free the front end."""
        await self._cancel_turn()
        if self._speculation is not None:
            self._speculation[1].cancel()
        self.frontend.close()
        self._worker.shutdown()

    # -- turns ----------------------------------------------------------------------------

    def _speculate(self) -> None:
        """Recognize the utterance so far while waiting to be sure it has ended."""
        audio = self.frontend.endpointer.current_utterance()
        task = asyncio.create_task(self.engine.transcribe(audio, None, TurnClock()))
        if self._speculation is not None:
            self._speculation[1].cancel()
        self._speculation = (len(audio), task)

    async def _speculative_transcript(self, utterance: Utterance) -> Transcribed | None:
        if self._speculation is None:
            return None
        length, task = self._speculation
        self._speculation = None
        if length != len(utterance.samples):  # speech resumed after the pause
            task.cancel()
            return None
        with contextlib.suppress(VoiceProcessingError):
            return await task
        return None

    async def _on_speech_ended(self, utterance: Utterance) -> None:
        # How long after the true end of speech the turn was known to be over.
        waited_ms = max(0.0, (self.now_seconds - utterance.end_seconds) * 1000)
        self._emit(
            "speech_ended", at_seconds=utterance.end_seconds, metadata={"endpointing_ms": waited_ms}
        )
        transcript = await self._speculative_transcript(utterance)
        if self.replying:
            words = transcript.text if transcript else await self._words(utterance.samples)
            if self._is_backchannel(words):
                return  # "mm-hm" while Coda talks: keep talking, no new turn
            await self._interrupt("speech")
        self._reply = _Reply()
        self._turn = asyncio.create_task(self._run_turn(self._reply, utterance, transcript))

    async def _run_turn(
        self, reply: _Reply, utterance: Utterance, transcript: Transcribed | None
    ) -> None:
        clock = TurnClock()
        try:
            async for item in self.engine.run_turn(
                self.conversation_id,
                audio=utterance.samples,
                text=None,
                requested=self.mode,
                clock=clock,
                commit=False,
                transcript=transcript,
            ):
                if isinstance(item, Transcribed):
                    reply.user_text = item.text
                    self._emit("transcript", item.text, metadata={"source": item.source})
                elif isinstance(item, TextDelta):
                    self._emit("text", item.text)
                elif isinstance(item, SpokenPiece):
                    reply.pieces.append((item.text, len(item.audio.samples)))
                    self._emit("audio", item.text, audio=item.audio.samples)
                elif isinstance(item, TurnOutcome):
                    reply.outcome = item
                    metadata = {**item.metadata, **item.scores, "mode": item.mode.value}
                    if transcript is not None:
                        metadata["timings_ms"]["asr"] = 0.0  # done before the turn ended
                    self._emit("turn_finished", item.reply_text, metadata=metadata)
            if reply.played >= reply.queued and reply.outcome is not None:
                self._finish_reply(reply.outcome.reply_text)
        except VoiceProcessingError as exc:
            self._emit("error", f"{type(exc).__name__}: {exc}")
            self._reply = None

    def _finish_reply(self, spoken: str) -> None:
        """The reply played to its end: store it (in the background) and forget it."""
        reply, self._reply = self._reply, None
        if reply is not None:
            task = asyncio.create_task(self._store(reply, spoken))
            task.add_done_callback(_log_failure)

    async def _store(self, reply: _Reply, spoken: str) -> None:
        """Store the turn with the part of the reply that was heard."""
        outcome = reply.outcome
        metadata = dict(outcome.metadata) if outcome else {}
        metadata["interrupted"] = outcome is None or spoken != outcome.reply_text
        mode = outcome.mode if outcome else VoiceProcessingMode.LLM_ENHANCED
        state = await self.engine.conversations.open(self.conversation_id)
        await self.engine.commit(state, reply.user_text, spoken, mode, metadata)

    # -- barge-in -------------------------------------------------------------------------

    async def _words(self, audio: np.ndarray) -> str:
        if len(audio) < FRONT_END_RATE // 10:
            return ""
        with contextlib.suppress(VoiceProcessingError):
            return (await self.engine.transcribe(audio, None, TurnClock())).text
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

    async def _maybe_barge_in(self) -> None:
        speech = self.frontend.endpointer.speech_seconds
        if speech * 1000 < self._streaming.barge_in_min_speech_ms:
            return
        if speech - self._barge_checked_at < 0.2:  # re-check at most every 200 ms of speech
            return
        self._barge_checked_at = speech
        words = await self._words(self.frontend.endpointer.current_utterance())
        log.debug("barge-in check after %.2f s of speech: %r", speech, words)
        if self._is_backchannel(words):
            return
        await self._interrupt(words)

    async def _interrupt(self, heard: str) -> None:
        reply = self._reply
        await self._cancel_turn()
        if reply is None:
            return
        self.interruptions += 1
        spoken = reply.spoken_text()
        self._emit(
            "interrupted",
            spoken,
            metadata={"heard": heard, "played_seconds": reply.played / self._output_rate},
        )
        if reply.user_text:
            await self._store(reply, spoken)
        self._reply = None

    async def _cancel_turn(self) -> None:
        turn, self._turn = self._turn, None
        if turn is not None and not turn.done():
            turn.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await turn

    def _emit(
        self,
        kind: str,
        text: str | None = None,
        *,
        audio: np.ndarray | None = None,
        at_seconds: float | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.events.put_nowait(
            SessionEvent(
                kind,
                text,
                audio,
                self.now_seconds if at_seconds is None else at_seconds,
                metadata or {},
            )
        )
