"""The one engine behind both facades: models, responders, and the turn loop.

One turn, in order: validate and decode the audio, clean it and trim it to its
speech (front end), recognize it, choose the mode, let the responder stream its
reply, then store the finished turn. Nothing is stored unless the turn finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from coda.audio.decode import decode_audio, resample
from coda.audio.frames import FRONT_END_RATE
from coda.audio.frontend import clean_message
from coda.audio.vad import VoiceActivityDetector
from coda.core.config import LLMConfig, VoiceConfig
from coda.core.errors import (
    MoshiConnectionError,
    ValidationError,
    VoiceInitializationError,
    VoiceProcessingError,
)
from coda.core.models import (
    ConversationState,
    ConversationTurn,
    VoiceMessage,
    VoiceProcessingMode,
)
from coda.deadline import with_deadline
from coda.gpu.vram import VRAMManager
from coda.modes.adaptive import AdaptivePolicy
from coda.modes.cascade import CascadeResponder
from coda.modes.clock import TurnClock
from coda.modes.events import SpokenPiece, Transcribed, TurnEvent, TurnFinished
from coda.modes.hybrid import HybridResponder
from coda.modes.moshi import SPEECH_NEEDED, MoshiResponder
from coda.modes.responder import BeforeReply, Responder, TurnPlan, TurnRequest
from coda.modes.selection import (
    HYBRID_MISSING,
    MOSHI_DISABLED,
    MOSHI_UNCONFIGURED,
    ModeDecision,
    decide,
    requested_mode,
)
from coda.providers.base import LanguageModel, SpeechToSpeech, SpeechToText, TextToSpeech
from coda.providers.registry import create_stt, create_tts, resolve_llm
from coda.providers.s2s.moshi import MoshiSpeechToSpeech
from coda.providers.tts.cache import CachedTTS
from coda.voice.conversations import Conversations
from coda.voice.outcome import TurnOutcome, build_outcome
from coda.worker import WorkerThread

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""Called with (stage, done, total) while models are prepared and loaded."""

_WARMUP_TEXT = "Hello there."


class VoiceEngine:
    """Loads the providers once and answers turns for many conversations."""

    def __init__(self, config: VoiceConfig) -> None:
        config.validate()
        self.config = config
        self.conversations = Conversations(config)
        self.stt: SpeechToText | None = None
        self.tts: TextToSpeech | None = None
        self.llm: LanguageModel | None = None
        self.secondary_llm: LanguageModel | None = None
        self.s2s: SpeechToSpeech | None = None
        self.vram = VRAMManager(config.vram_limit_gb)
        self.llm_reason = ""
        self.responders: dict[VoiceProcessingMode, Responder] = {}
        self.unavailable: dict[VoiceProcessingMode, str] = {}
        self.policy = AdaptivePolicy(max_latency_ms=config.max_latency_ms)
        self._counters = {"turns": 0, "errors": 0}
        # Running (count, sum) per timing key: bounded however long the engine runs.
        self._timings: dict[str, tuple[int, float]] = {}
        # Whole messages are cleaned on their own thread with one reusable detector.
        self._frontend = WorkerThread("frontend")
        self._vad: VoiceActivityDetector | None = None

    @property
    def store(self) -> Any:
        """The conversation store."""
        return self.conversations.store

    @property
    def initialized(self) -> bool:
        """True between ``initialize()`` and ``cleanup()``."""
        return bool(self.responders)

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
            self._reserve_vram()
            await self.conversations.open_store()
            choice = await resolve_llm(
                self.config.llm,
                self.config.resolved_model_dir(),
                reuse_prefix=self.config.enable_caching,
                progress=lambda done, total: report("prepare language model", done, total),
            )
            self.llm, self.llm_reason = choice.provider, choice.reason
            optimize = self.config.enable_optimization
            stt_config = replace(
                self.config.stt, fitted_window=self.config.stt.fitted_window and optimize
            )
            self.stt = create_stt(stt_config, self.config.resolved_model_dir())
            tts = create_tts(self.config.tts)
            self.tts = CachedTTS(tts) if self.config.enable_caching else tts
            if self.config.audio.enable_vad:
                self._vad = await self._frontend.run(VoiceActivityDetector)
            loads = [self.stt.load(), self.tts.load(), self.llm.load()]
            report("load models", 0, len(loads))
            for loaded, load in enumerate(asyncio.as_completed(loads), start=1):
                await load
                report("load models", loaded, len(loads))
            await self._build_responders()
            if optimize:
                report("warm up", 0, 1)
                await self._warm_up()
                report("warm up", 1, 1)
        except BaseException:
            await self.cleanup()
            raise
        log.info("voice engine ready; language model: %s (%s)", self.llm.name, self.llm_reason)

    def _cascade(self, llm: LanguageModel, llm_config: LLMConfig) -> CascadeResponder:
        assert self.tts is not None
        return CascadeResponder(
            llm,
            self.tts,
            llm_config,
            self.config.streaming,
            max_history_turns=self.config.max_conversation_length,
            output_rate=self.config.audio.sample_rate,
        )

    def _moshi_is_local(self) -> bool:
        host = urlsplit(self.config.moshi.server_url or "").hostname or ""
        return host in ("localhost", "::1") or host.startswith("127.")

    def _reserve_vram(self) -> None:
        """Reserve GPU memory for what will run on this machine's GPU, before loading.

        A Moshi server on this machine's GPU shares it with Coda, so its budget
        counts; a remote one does not.
        """
        moshi = self.config.moshi
        if (
            moshi.enabled
            and moshi.server_url
            and moshi.device.startswith("cuda")
            and self._moshi_is_local()
        ):
            self.vram.reserve("moshi", moshi.vram_budget_gb)

    async def _build_responders(self) -> None:
        assert self.llm is not None
        primary = self._cascade(self.llm, self.config.llm or LLMConfig(provider="auto"))
        self.responders = {VoiceProcessingMode.LLM_ENHANCED: primary}
        self.unavailable = {}
        racers: list[Responder] = [primary]
        moshi = self.config.moshi
        if not moshi.enabled:
            self.unavailable[VoiceProcessingMode.MOSHI_ONLY] = MOSHI_DISABLED
        elif not moshi.server_url:
            self.unavailable[VoiceProcessingMode.MOSHI_ONLY] = MOSHI_UNCONFIGURED
        else:
            # No connection yet: the server may serve one session at a time.
            self.s2s = MoshiSpeechToSpeech(moshi)
            responder = MoshiResponder(self.s2s, self.config.audio.sample_rate)
            self.responders[VoiceProcessingMode.MOSHI_ONLY] = responder
            racers.append(responder)
        second = self.config.secondary_llm
        if second is not None:
            try:
                choice = await resolve_llm(second, self.config.resolved_model_dir())
                await choice.provider.load()
            except VoiceProcessingError as exc:
                # A second opinion that cannot load costs hybrid one racer, not Coda.
                log.warning("secondary LLM unavailable: %s", exc)
                self.unavailable[VoiceProcessingMode.HYBRID] = f"secondary LLM unavailable: {exc}"
            else:
                self.secondary_llm = choice.provider
                racers.append(self._cascade(choice.provider, second))
        if len(racers) >= 2:
            hybrid = HybridResponder(racers, self.config.max_latency_ms)
            self.responders[VoiceProcessingMode.HYBRID] = hybrid
            self.unavailable.pop(VoiceProcessingMode.HYBRID, None)
        else:
            self.unavailable.setdefault(VoiceProcessingMode.HYBRID, HYBRID_MISSING)

    async def _warm_up(self) -> None:
        """One pass through each model, so the first real turn is not the slow one.

        The LLM pass also leaves the system prompt evaluated in llama.cpp's cache.
        """
        assert self.stt is not None and self.tts is not None
        speech = await self.tts.synthesize(_WARMUP_TEXT)
        await self.stt.transcribe(
            resample(speech.samples, speech.sample_rate, self.stt.sample_rate)
        )
        request = TurnRequest(text=_WARMUP_TEXT, history=())
        async for _ in self.responders[VoiceProcessingMode.LLM_ENHANCED].respond(
            request, TurnClock()
        ):
            pass

    async def cleanup(self) -> None:
        """Free every model and close the store. Safe to call twice."""
        self.responders = {}
        for provider in (self.stt, self.tts, self.llm, self.secondary_llm, self.s2s):
            if provider is not None:
                with contextlib.suppress(Exception):
                    await provider.close()
        self.stt = self.tts = self.llm = self.secondary_llm = None
        self.s2s = None
        self.vram.release_all()
        await self.conversations.close()
        self._frontend.shutdown()
        self._frontend = WorkerThread("frontend")
        self._vad = None

    def require_ready(self) -> None:
        """Raise unless initialized."""
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
        self.require_ready()
        clock = TurnClock()
        try:
            message.validate(self.config.audio)
            requested = requested_mode(mode, message.processing_mode, self.config.default_mode)
            await self.conversations.check(message.conversation_id)  # before costly decoding
            audio = await self._decode(message, clock)
        except VoiceProcessingError:
            self._counters["errors"] += 1
            raise
        async for item in self.run_turn(
            message.conversation_id,
            audio=audio,
            text=message.text_content,
            requested=requested,
            context=context,
            message_id=message.message_id,
            clock=clock,
        ):
            yield item

    async def run_turn(
        self,
        conversation_id: str,
        *,
        audio: np.ndarray | None,
        text: str | None,
        requested: VoiceProcessingMode,
        context: dict[str, Any] | None = None,
        message_id: str | None = None,
        clock: TurnClock | None = None,
        commit: bool = True,
        transcript: Transcribed | None = None,
    ) -> AsyncIterator[TurnEvent | TurnOutcome]:
        """Answer recognized or recognizable speech (16 kHz ``audio``, or ``text``).

        With ``commit=False`` the caller stores the turn itself (``commit``), once
        it knows how much of the reply was heard. A ``transcript`` recognized ahead
        of time (speculatively, at the tentative end of speech) skips recognition.

        Raises:
            ValidationError: If no words were recognized.
            TimeoutError: If the turn outlasts ``StreamingConfig.turn_timeout_seconds``.
        """
        self.require_ready()
        clock = clock or TurnClock()
        try:
            state = await self.conversations.open(conversation_id)
            async with self.conversations.lock(conversation_id):
                events = self._respond(
                    state, audio, text, requested, context, message_id, clock, commit, transcript
                )
                async for item in with_deadline(events, self.config.streaming.turn_timeout_seconds):
                    yield item
        except VoiceProcessingError:
            self._counters["errors"] += 1
            raise

    async def _respond(
        self,
        state: ConversationState,
        audio: np.ndarray | None,
        text: str | None,
        requested: VoiceProcessingMode,
        context: dict[str, Any] | None,
        message_id: str | None,
        clock: TurnClock,
        commit: bool,
        known: Transcribed | None,
    ) -> AsyncIterator[TurnEvent | TurnOutcome]:
        # Moshi listens to the audio itself: when it is asked for, it starts at once
        # and recognition (for the stored turn) runs beside it.
        asr: asyncio.Task[Transcribed] | None = None
        transcript: Transcribed | None = known
        if (
            transcript is None
            and audio is not None
            and requested is VoiceProcessingMode.MOSHI_ONLY
            and VoiceProcessingMode.MOSHI_ONLY not in self.unavailable
        ):
            asr = asyncio.create_task(self.transcribe(audio, text, clock))
        else:
            transcript = transcript or await self.transcribe(audio, text, clock)
            yield transcript
        try:
            available: dict[VoiceProcessingMode, str | None] = {
                m: self.unavailable.get(m)
                for m in VoiceProcessingMode
                if m is not VoiceProcessingMode.ADAPTIVE
            }
            if audio is None and available[VoiceProcessingMode.MOSHI_ONLY] is None:
                available[VoiceProcessingMode.MOSHI_ONLY] = SPEECH_NEEDED
            words = transcript.text if transcript else ""
            plan = await self._plan(context, words, state) if transcript else TurnPlan()
            decision = decide(
                requested,
                available,
                self.policy,
                state.conversation_id,
                words,
                self.config.allow_mode_fallback,
            )
            extra = [c for c in ((context or {}).get("system_context"), plan.extra_context) if c]
            request = TurnRequest(
                words,
                tuple(state.turns),
                "\n\n".join(extra) or None,
                audio=audio,
                audio_rate=self.stt.sample_rate if self.stt else FRONT_END_RATE,
                max_tokens=plan.max_tokens or (context or {}).get("max_tokens"),
                temperature=(context or {}).get("temperature"),
            )
            while True:
                pieces: list[np.ndarray] = []
                finished: TurnFinished | None = None
                attempt = clock.child()
                try:
                    async for event in self.responders[decision.chosen].respond(request, attempt):
                        if isinstance(event, TurnFinished):
                            finished = event
                            continue
                        if isinstance(event, SpokenPiece):
                            pieces.append(event.audio.samples)
                        yield event
                    break
                except VoiceProcessingError as exc:
                    self.policy.record_failure(state.conversation_id, decision.chosen)
                    if not self._may_fall_back(decision, exc):
                        raise
                    log.warning("%s failed, the cascade answers: %s", decision.chosen.value, exc)
                    decision = decision.fallen_back(f"{decision.chosen.value} failed: {exc}")
                    if asr is not None:  # the cascade needs the words
                        transcript, asr = await asr, None
                        yield transcript
                        request = replace(request, text=transcript.text)
            if asr is not None:
                transcript, asr = await asr, None
                yield transcript
        finally:
            if asr is not None:
                asr.cancel()
                with contextlib.suppress(asyncio.CancelledError, VoiceProcessingError):
                    await asr
        assert transcript is not None
        assert finished is not None
        clock.marks.update(attempt.marks)
        finished.timings_ms = {**clock.marks, **finished.timings_ms}
        outcome = build_outcome(
            state.conversation_id,
            decision.as_dict(),
            transcript,
            finished,
            pieces,
            clock,
            self.config.audio.sample_rate,
            self._engine_info(decision.chosen),
        )
        outcome.metadata["message_id"] = message_id
        outcome.metadata.update(plan.metadata)
        if plan.before_commit is not None:
            outcome = await plan.before_commit(outcome)
        if commit:
            await self.commit(
                state, outcome.user_text, outcome.reply_text, outcome.mode, outcome.metadata
            )
        self.policy.record_success(
            state.conversation_id,
            outcome.mode,
            outcome.metadata["timings_ms"].get("first_audio", outcome.processing_time_ms),
            float(np.mean([outcome.scores["relevance_score"], outcome.scores["coherence_score"]])),
        )
        yield outcome

    @staticmethod
    async def _plan(
        context: dict[str, Any] | None, words: str, state: ConversationState
    ) -> TurnPlan:
        """The integrations' part of the turn (``context["before_reply"]``), if any."""
        hook: BeforeReply | None = (context or {}).get("before_reply")
        return await hook(words, state) if hook is not None else TurnPlan()

    def _may_fall_back(self, decision: ModeDecision, error: VoiceProcessingError) -> bool:
        """Moshi went down mid-turn: the cascade may answer unless Moshi was required."""
        return (
            isinstance(error, MoshiConnectionError)
            and decision.chosen is VoiceProcessingMode.MOSHI_ONLY
            and (
                decision.requested is not VoiceProcessingMode.MOSHI_ONLY
                or self.config.allow_mode_fallback
            )
        )

    def _engine_info(self, mode: VoiceProcessingMode) -> dict[str, Any]:
        if mode is VoiceProcessingMode.MOSHI_ONLY:
            return {"provider": "moshi", "model": None, "reason": self.config.moshi.server_url}
        return {
            "provider": self.llm.name if self.llm else None,
            "model": self.llm.model if self.llm else None,
            "reason": self.llm_reason,
        }

    async def transcribe(
        self, audio: np.ndarray | None, text: str | None, clock: TurnClock
    ) -> Transcribed:
        """The user's words: ``text`` if given, else recognized from 16 kHz ``audio``.

        Raises:
            ValidationError: If there is nothing to recognize, or no words in it.
        """
        if text is not None and text.strip():
            return Transcribed(text.strip(), 1.0, "provided")
        if audio is None:
            raise ValidationError("a turn needs audio or text")
        assert self.stt is not None
        started = clock.since()
        result = await self.stt.transcribe(audio)
        clock.add("asr", clock.stop(started))
        if not result.text.strip():
            raise ValidationError("no words were recognized in the audio")
        return Transcribed(result.text.strip(), result.confidence, "asr")

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

    async def commit(
        self,
        state: ConversationState,
        user_text: str,
        reply_text: str,
        mode: VoiceProcessingMode,
        metadata: dict[str, Any],
    ) -> None:
        """Store a finished (or interrupted, with what was spoken) turn."""
        turn = ConversationTurn(user_text, reply_text, mode, message_id=metadata.get("message_id"))
        await self.conversations.commit(state, turn, {"timings_ms": metadata.get("timings_ms", {})})
        self._counters["turns"] += 1
        for key, value in metadata.get("timings_ms", {}).items():
            count, total = self._timings.get(key, (0, 0.0))
            self._timings[key] = (count + 1, total + value)

    def stats(self) -> dict[str, Any]:
        """Counters, mean stage timings, and which models are in use."""
        means = {k: round(total / count, 1) for k, (count, total) in self._timings.items()}
        tts_cache = self.tts if isinstance(self.tts, CachedTTS) else None
        return {
            "initialized": self.initialized,
            "llm_provider": self.llm.name if self.llm else None,
            "llm_model": self.llm.model if self.llm else None,
            "llm_reason": self.llm_reason,
            "stt_provider": self.stt.name if self.stt else None,
            "stt_fitted_window_fallbacks": getattr(self.stt, "fallbacks", None),
            "tts_provider": self.tts.name if self.tts else None,
            "moshi_server": self.config.moshi.server_url if self.s2s else None,
            "vram": self.vram.stats(),
            "modes_available": sorted(m.value for m in self.responders),
            "modes_unavailable": {m.value: why for m, why in self.unavailable.items()},
            "active_conversations": len(self.conversations.active),
            "turns": self._counters["turns"],
            "errors": self._counters["errors"],
            "mean_timings_ms": means,
            "tts_cache": {"hits": tts_cache.hits, "misses": tts_cache.misses}
            if tts_cache
            else None,
        }
