"""The one engine behind both facades: models, conversations, and the turn loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coda.audio.decode import decode_audio, resample
from coda.audio.encode import encode_wav
from coda.audio.frames import FRONT_END_RATE
from coda.audio.frontend import clean_message
from coda.audio.vad import VoiceActivityDetector
from coda.core.config import LLMConfig, VoiceConfig
from coda.core.errors import ConversationError, VoiceInitializationError, VoiceProcessingError
from coda.core.ids import check_conversation_id
from coda.core.models import (
    ConversationState,
    ConversationTurn,
    VoiceMessage,
    VoiceProcessingMode,
    VoiceResponse,
)
from coda.modes import quality
from coda.modes.cascade import CascadeResponder, TurnRequest
from coda.modes.clock import TurnClock
from coda.modes.events import SpokenPiece, Transcribed, TurnEvent, TurnFinished
from coda.modes.selection import decide, requested_mode
from coda.providers.base import LanguageModel, SpeechToText, TextToSpeech
from coda.providers.registry import create_stt, create_tts, resolve_llm
from coda.providers.tts.cache import CachedTTS
from coda.store.sqlite import ConversationStore
from coda.worker import WorkerThread

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""Called with (stage, done, total) while models are prepared and loaded."""

_SUBTYPES = {16: "PCM_16", 24: "PCM_24", 32: "PCM_32"}
_WARMUP_TEXT = "Hello there."


@dataclass
class TurnOutcome:
    """Everything a finished turn produced (the last item a turn yields)."""

    conversation_id: str
    mode: VoiceProcessingMode
    reply_text: str
    audio: np.ndarray
    sample_rate: int
    processing_time_ms: float
    scores: dict[str, float]
    metadata: dict[str, Any] = field(default_factory=dict)


class VoiceEngine:
    """Loads the providers once and answers turns for many conversations."""

    def __init__(self, config: VoiceConfig) -> None:
        config.validate()
        self.config = config
        self.store = ConversationStore(config.resolved_store_path())
        self.stt: SpeechToText | None = None
        self.tts: TextToSpeech | None = None
        self.llm: LanguageModel | None = None
        self.llm_reason = ""
        self._cascade: CascadeResponder | None = None
        self._active: dict[str, ConversationState] = {}
        self._turn_locks: dict[str, asyncio.Lock] = {}
        self._counters = {"turns": 0, "errors": 0}
        # Whole messages are cleaned on their own thread with one reusable detector.
        self._frontend = WorkerThread("frontend")
        self._vad: VoiceActivityDetector | None = None
        self._timings: dict[str, list[float]] = {}

    @property
    def initialized(self) -> bool:
        """True between ``initialize()`` and ``cleanup()``."""
        return self._cascade is not None

    async def initialize(self, progress: Progress | None = None) -> None:
        """Prepare and load every model, open the store, and warm up.

        Raises:
            VoiceInitializationError: If a model or the store fails to load.
            LLMIntegrationError: If an explicitly configured LLM server is unreachable.
        """
        if self.initialized:
            return
        report = progress or (lambda stage, done, total: None)
        try:
            await self.store.open()
            choice = await resolve_llm(
                self.config.llm,
                self.config.resolved_model_dir(),
                reuse_prefix=self.config.enable_caching,
                progress=lambda done, total: report("prepare language model", done, total),
            )
            self.llm, self.llm_reason = choice.provider, choice.reason
            self.stt = create_stt(self.config.stt, self.config.resolved_model_dir())
            tts = create_tts(self.config.tts)
            self.tts = CachedTTS(tts) if self.config.enable_caching else tts
            if self.config.audio.enable_vad:
                self._vad = await self._frontend.run(VoiceActivityDetector)
            report("load models", 0, 3)
            loads = [self.stt.load(), self.tts.load(), self.llm.load()]
            for loaded, load in enumerate(asyncio.as_completed(loads), start=1):
                await load
                report("load models", loaded, len(loads))
            self._cascade = CascadeResponder(
                self.stt,
                self.llm,
                self.tts,
                self._llm_config(),
                max_history_turns=self.config.max_conversation_length,
                output_rate=self.config.audio.sample_rate,
            )
            if self.config.enable_optimization:
                report("warm up", 0, 1)
                await self._warm_up()
                report("warm up", 1, 1)
        except BaseException:
            await self.cleanup()
            raise
        log.info("voice engine ready; language model: %s (%s)", self.llm.name, self.llm_reason)

    def _llm_config(self) -> LLMConfig:
        return self.config.llm or LLMConfig(provider="auto")

    async def _warm_up(self) -> None:
        """One tiny pass through each model, so the first real turn is not the slow one.

        The LLM pass also leaves the system prompt evaluated in llama.cpp's cache.
        """
        assert self._cascade is not None and self.stt is not None and self.tts is not None
        speech = await self.tts.synthesize(_WARMUP_TEXT)
        await self.stt.transcribe(
            resample(speech.samples, speech.sample_rate, self.stt.sample_rate)
        )
        request = TurnRequest(audio=None, text=_WARMUP_TEXT, history=())
        async for _ in self._cascade.respond(request, TurnClock()):
            pass

    async def cleanup(self) -> None:
        """Free every model and close the store. Safe to call twice."""
        self._cascade = None
        for provider in (self.stt, self.tts, self.llm):
            if provider is not None:
                with contextlib.suppress(Exception):
                    await provider.close()
        self.stt = self.tts = self.llm = None
        await self.store.close()
        self.store = ConversationStore(self.config.resolved_store_path())
        self._frontend.shutdown()
        self._frontend = WorkerThread("frontend")
        self._vad = None
        self._active.clear()

    # -- conversations -------------------------------------------------------------------

    async def start_conversation(self, conversation_id: str) -> ConversationState:
        """Start a conversation.

        Raises:
            ValidationError: If the id is malformed.
            ConversationError: If it exists already, or too many are active.
        """
        check_conversation_id(conversation_id)
        self._require_ready()
        if conversation_id in self._active:
            raise ConversationError(f"conversation {conversation_id!r} already exists")
        self._make_room()
        state = await self.store.create(conversation_id)
        self._active[conversation_id] = state
        return state

    async def end_conversation(self, conversation_id: str) -> None:
        """End a conversation; its turns stay in the store.

        Raises:
            ConversationError: If it is unknown or already ended.
        """
        check_conversation_id(conversation_id)
        state = await self.get_conversation(conversation_id)
        if state is None:
            raise ConversationError(f"conversation {conversation_id!r} not found")
        if not state.is_active:
            raise ConversationError(f"conversation {conversation_id!r} has already ended")
        async with self._turn_lock(conversation_id):
            await self.store.end(conversation_id)
            self._active.pop(conversation_id, None)
            self._turn_locks.pop(conversation_id, None)

    async def get_conversation(self, conversation_id: str) -> ConversationState | None:
        """The conversation's state (active or ended), or None if unknown."""
        self._require_ready()
        if conversation_id in self._active:
            return self._active[conversation_id]
        return await self.store.load(conversation_id, self.config.max_conversation_length)

    async def _check_conversation(self, conversation_id: str) -> ConversationState | None:
        """The conversation if it exists; raise if it may not take a turn.

        Raises:
            ConversationError: If it has ended, or is unknown and may not be auto-started.
        """
        state = await self.get_conversation(conversation_id)
        if state is None and not self.config.auto_start_conversations:
            raise ConversationError(
                f"conversation {conversation_id!r} not found; call start_conversation first"
            )
        if state is not None and not state.is_active:
            raise ConversationError(f"conversation {conversation_id!r} has ended")
        return state

    async def _open_conversation(self, conversation_id: str) -> ConversationState:
        """The active conversation, held in memory, started if it is new."""
        state = await self._check_conversation(conversation_id)
        if state is None:
            return await self.start_conversation(conversation_id)
        if conversation_id not in self._active:
            self._make_room()
            self._active[conversation_id] = state
        return state

    def _make_room(self) -> None:
        """Make room to hold one more conversation within ``max_concurrent_conversations``.

        At the limit, the least recently active idle conversation is released from
        memory (it stays in the store and comes back on its next message). Only when
        every held conversation is mid-turn is the new one refused.

        Raises:
            ConversationError: If every held conversation is busy.
        """
        if len(self._active) >= self.config.max_concurrent_conversations:
            idle = [s for cid, s in self._active.items() if not self._turn_lock(cid).locked()]
            if not idle:
                raise ConversationError(
                    f"{len(self._active)} conversations are mid-turn, the maximum "
                    "(max_concurrent_conversations); retry when one finishes"
                )
            oldest = min(idle, key=lambda s: s.last_activity)
            self._active.pop(oldest.conversation_id)
            self._turn_locks.pop(oldest.conversation_id, None)

    def _turn_lock(self, conversation_id: str) -> asyncio.Lock:
        return self._turn_locks.setdefault(conversation_id, asyncio.Lock())

    def _require_ready(self) -> None:
        if not self.initialized:
            raise VoiceInitializationError("the voice engine is not initialized: call initialize()")

    # -- turns ---------------------------------------------------------------------------

    async def turn(
        self,
        message: VoiceMessage,
        mode: VoiceProcessingMode | str | None = None,
        context: dict[str, Any] | None = None,
    ) -> AsyncIterator[TurnEvent | TurnOutcome]:
        """Answer one message: yields the turn's events, then its ``TurnOutcome``.

        Nothing is stored unless the turn finishes: a failed or cancelled turn
        leaves the conversation exactly as it was.
        """
        self._require_ready()
        assert self._cascade is not None
        clock = TurnClock()
        try:
            message.validate(self.config.audio)
            requested = requested_mode(mode, message.processing_mode, self.config.default_mode)
            decision = decide(requested, {})
            await self._check_conversation(message.conversation_id)  # before costly decoding
            samples = await self._decode(message, clock)
            state = await self._open_conversation(message.conversation_id)
            async with self._turn_lock(message.conversation_id):
                request = TurnRequest(
                    audio=samples,
                    text=message.text_content,
                    history=tuple(state.turns),
                    extra_context=(context or {}).get("system_context"),
                )
                pieces: list[np.ndarray] = []
                transcript: Transcribed | None = None
                finished: TurnFinished | None = None
                async for event in self._cascade.respond(request, clock):
                    if isinstance(event, Transcribed):
                        transcript = event
                    elif isinstance(event, SpokenPiece):
                        pieces.append(event.audio.samples)
                    elif isinstance(event, TurnFinished):
                        finished = event
                        continue
                    yield event
                assert transcript is not None and finished is not None
                outcome = self._outcome(
                    message, decision.as_dict(), transcript, finished, pieces, clock
                )
                await self._commit(state, message, transcript.text, outcome)
        except VoiceProcessingError:
            self._counters["errors"] += 1
            raise
        yield outcome

    async def _decode(self, message: VoiceMessage, clock: TurnClock) -> np.ndarray | None:
        if not message.audio_data:
            return None
        assert self.stt is not None
        decoded = await asyncio.to_thread(
            decode_audio,
            bytes(message.audio_data),
            FRONT_END_RATE,
            self.config.audio,
            message.raw_format(),
        )
        started = clock.since()
        cleaned = await self._frontend.run(
            clean_message, decoded.samples, self.config.audio, self._vad
        )
        clock.add("frontend", clock.stop(started))
        return resample(cleaned, FRONT_END_RATE, self.stt.sample_rate)

    def _outcome(
        self,
        message: VoiceMessage,
        selection: dict[str, str],
        transcript: Transcribed,
        finished: TurnFinished,
        pieces: list[np.ndarray],
        clock: TurnClock,
    ) -> TurnOutcome:
        rate = self.config.audio.sample_rate
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        timings = {k: round(v, 1) for k, v in finished.timings_ms.items()}
        timings.setdefault("asr", 0.0)
        timings["total"] = round(clock.elapsed_ms(), 1)
        scores = {
            "confidence_score": transcript.confidence,
            "relevance_score": quality.relevance(transcript.text, finished.reply_text),
            "coherence_score": quality.coherence(finished.reply_text, finished.finish_reason),
            "audio_quality_score": quality.audio_quality(audio, rate),
        }
        metadata = {
            **finished.details,
            "message_id": message.message_id,
            "timings_ms": timings,
            "mode_selection": selection,
            "llm": {
                "provider": self.llm.name if self.llm else None,
                "model": self.llm.model if self.llm else None,
                "reason": self.llm_reason,
                "finish_reason": finished.finish_reason,
            },
            "audio": {"sample_rate": rate, "duration_seconds": len(audio) / rate},
        }
        return TurnOutcome(
            conversation_id=message.conversation_id,
            mode=VoiceProcessingMode(selection["chosen"]),
            reply_text=finished.reply_text,
            audio=audio,
            sample_rate=rate,
            processing_time_ms=timings["total"],
            scores=scores,
            metadata=metadata,
        )

    async def _commit(
        self, state: ConversationState, message: VoiceMessage, user_text: str, outcome: TurnOutcome
    ) -> None:
        turn = ConversationTurn(
            user_text, outcome.reply_text, outcome.mode, message_id=message.message_id
        )
        state.turns.append(turn)
        del state.turns[: -self.config.max_conversation_length]
        state.current_mode = outcome.mode
        state.last_activity = turn.timestamp
        count = int(state.metrics.get("turns", 0)) + 1
        mean = float(state.metrics.get("mean_processing_ms", 0.0))
        state.metrics["turns"] = count
        state.metrics["mean_processing_ms"] = mean + (outcome.processing_time_ms - mean) / count
        await self.store.add_turn(state, turn, {"timings_ms": outcome.metadata["timings_ms"]})
        self._counters["turns"] += 1
        for key, value in outcome.metadata["timings_ms"].items():
            self._timings.setdefault(key, []).append(value)

    def response(self, outcome: TurnOutcome) -> VoiceResponse:
        """The ``VoiceResponse`` for a finished turn."""
        subtype = _SUBTYPES.get(self.config.audio.bit_depth, "PCM_16")
        audio = (
            encode_wav(outcome.audio, outcome.sample_rate, subtype) if outcome.audio.size else None
        )
        return VoiceResponse(
            conversation_id=outcome.conversation_id,
            text_content=outcome.reply_text,
            audio_data=audio,
            timestamp=time.time(),
            processing_time=outcome.processing_time_ms,
            processing_mode=outcome.mode,
            metadata=outcome.metadata,
            **outcome.scores,
        )

    def stats(self) -> dict[str, Any]:
        """Counters, mean stage timings, and which models are in use."""
        means = {k: round(float(np.mean(v)), 1) for k, v in self._timings.items() if v}
        tts_cache = self.tts if isinstance(self.tts, CachedTTS) else None
        return {
            "initialized": self.initialized,
            "llm_provider": self.llm.name if self.llm else None,
            "llm_model": self.llm.model if self.llm else None,
            "llm_reason": self.llm_reason,
            "stt_provider": self.stt.name if self.stt else None,
            "tts_provider": self.tts.name if self.tts else None,
            "active_conversations": len(self._active),
            "turns": self._counters["turns"],
            "errors": self._counters["errors"],
            "mean_timings_ms": means,
            "tts_cache": {"hits": tts_cache.hits, "misses": tts_cache.misses}
            if tts_cache
            else None,
        }
