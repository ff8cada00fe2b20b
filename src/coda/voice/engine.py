"""The one engine behind both facades: it wires models, responders and the turn pipeline.

What a turn does, stage by stage, is in ``coda.turn.pipeline``; this module only
loads the providers, builds the responders and the integrations' hooks, and
hands them to the pipeline that every entry point uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from coda.audio.decode import resample
from coda.audio.smart_turn import SmartTurn
from coda.core.config import VoiceConfig
from coda.core.enums import VoiceProcessingMode
from coda.core.errors import VoiceInitializationError
from coda.core.models import VoiceMessage, VoiceResponse
from coda.gpu.vram import VRAMManager, reserve_for_moshi
from coda.integrations.assembly import Integrations, build_integrations
from coda.modes.adaptive import AdaptivePolicy
from coda.modes.assembly import ResponderSet, build_responders
from coda.modes.clock import TurnClock
from coda.modes.responder import Responder, TurnRequest
from coda.providers.base import LanguageModel, SpeechToText, TextToSpeech
from coda.providers.registry import background_llm, create_stt, create_tts, resolve_llm
from coda.providers.tts.cache import CachedTTS
from coda.store.conversations import Conversations
from coda.turn.context import TurnContext, TurnOptions
from coda.turn.events import TurnOutcome
from coda.turn.intake import Intake
from coda.turn.pipeline import TurnPipeline
from coda.turn.recognition import Recognizer
from coda.turn.respond import Responders
from coda.turn.summary import Summarizer
from coda.voice.output import response_of

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
        self.background_llm: LanguageModel | None = None
        self.llm_reason = ""
        self.built = ResponderSet()
        self.integrations = Integrations()
        self.vram = VRAMManager(config.vram_limit_gb)
        self.policy = AdaptivePolicy(max_latency_ms=config.max_latency_ms)
        self.intake = Intake(config.audio)
        self.pipeline: TurnPipeline | None = None
        self.smart_turn: SmartTurn | None = None

    @property
    def store(self) -> Any:
        """The conversation store."""
        return self.conversations.store

    @property
    def responders(self) -> dict[VoiceProcessingMode, Responder]:
        """The responder of each available mode."""
        return self.built.responders

    @property
    def s2s(self) -> Any:
        """The Moshi client, when a server is configured."""
        return self.built.s2s

    @property
    def initialized(self) -> bool:
        """True between ``initialize()`` and ``cleanup()``."""
        return self.pipeline is not None

    async def initialize(self, progress: Progress | None = None) -> None:
        """Prepare and load every model, open the store and the integrations, warm up.

        Raises:
            VoiceInitializationError: If a model or the store fails to load.
            LLMIntegrationError: If an explicitly configured LLM server is unreachable.
        """
        if self.initialized:
            return
        report = progress or (lambda stage, done, total: None)
        try:
            reserve_for_moshi(self.vram, self.config.moshi)
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
            self.background_llm = background_llm(
                self.llm, self.config.background_llm, self.config.resolved_model_dir()
            )
            self.integrations = build_integrations(
                self.config, self.llm, self.tts, self._answer, self.background_llm
            )
            hooks = self.integrations.hooks()
            loads = [self.stt.load(), self.tts.load(), self.llm.load(), self.intake.open()]
            if self.config.streaming.smart_turn:
                self.smart_turn = SmartTurn.installed()
                if self.smart_turn is None:
                    log.info("pipecat-ai is not installed: turn-taking goes by the words alone")
                else:
                    loads.append(self.smart_turn.load())
            loads += [hook.open() for hook in hooks]
            report("load models", 0, len(loads))
            await self._load_all(loads, report)
            self.built = await build_responders(self.config, self.llm, self.tts)
            responders = Responders(
                self.built.responders,
                self.built.unavailable,
                self.policy,
                self.config.allow_mode_fallback,
            )
            self.pipeline = TurnPipeline(
                self.config,
                self.conversations,
                self.intake,
                Recognizer(self.stt),
                responders,
                hooks,
                self._engine_info,
                Summarizer(self.background_llm) if self.config.summarize_history else None,
            )
            if optimize:
                report("warm up", 0, 1)
                await self._warm_up()
                report("warm up", 1, 1)
        except BaseException:
            await self.cleanup()
            raise
        log.info("voice engine ready; language model: %s (%s)", self.llm.name, self.llm_reason)

    @staticmethod
    async def _load_all(loads: Sequence[Awaitable[Any]], report: Progress) -> None:
        """Run the loads at once; if one fails, the others are cancelled and waited for.

        A load left running after ``cleanup()`` would start its threads anyway.
        """
        tasks = [asyncio.ensure_future(load) for load in loads]
        try:
            for loaded, load in enumerate(asyncio.as_completed(tasks), start=1):
                await load
                report("load models", loaded, len(tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _warm_up(self) -> None:
        """One pass through each model, so the first real turn is not the slow one.

        The hooks plan a turn of a speaker nobody has met (nothing is stored), so
        the LLM pass leaves a new speaker's system prompt and style evaluated in
        llama.cpp's cache.
        """
        assert self.stt is not None and self.tts is not None and self.pipeline is not None
        speech = await self.tts.synthesize(_WARMUP_TEXT)
        audio = await asyncio.to_thread(
            resample, speech.samples, speech.sample_rate, self.stt.sample_rate
        )
        await self.stt.transcribe(audio)
        stranger = TurnContext("warm-up", "warm-up", words=_WARMUP_TEXT)
        plan = await self.pipeline.before_reply(stranger)
        request = TurnRequest(_WARMUP_TEXT, (), plan.context, style=plan.style)
        async for _ in self.responders[VoiceProcessingMode.LLM_ENHANCED].respond(
            request, TurnClock()
        ):
            pass

    async def _answer(self, message: VoiceMessage, words: str, context: str) -> VoiceResponse:
        """Say an answer to ``words`` with ``context`` (a tool's result), integrations aside."""
        follow_up = VoiceMessage(
            message.conversation_id, b"", text_content=words, speaker=message.speaker
        )
        options = TurnOptions(system_context=context, integrations=frozenset())
        return await self.respond(follow_up, VoiceProcessingMode.LLM_ENHANCED, options)

    async def respond(
        self, message: VoiceMessage, mode: VoiceProcessingMode | str | None, options: TurnOptions
    ) -> VoiceResponse:
        """Answer a whole message through the pipeline: the spec's ``VoiceResponse``.

        Its audio is in ``AudioConfig``'s format, bit depth and channels.
        """
        outcome: TurnOutcome | None = None
        async for event in self.require_ready().message(message, mode, options):
            if isinstance(event, TurnOutcome):
                outcome = event
        assert outcome is not None
        return await asyncio.to_thread(response_of, outcome, self.config.audio)

    async def cleanup(self) -> None:
        """Free every model, the integrations and the store. Safe to call twice."""
        pipeline, self.pipeline = self.pipeline, None
        if pipeline is not None:
            await pipeline.close()
        for hook in self.integrations.hooks():
            with contextlib.suppress(Exception):
                await hook.close()
        self.integrations = Integrations()
        built, self.built = self.built, ResponderSet()
        background = self.background_llm if self.background_llm is not self.llm else None
        providers = (self.stt, self.tts, self.llm, background, built.secondary_llm, built.s2s,
                     self.smart_turn)  # fmt: skip
        for provider in providers:
            if provider is not None:
                with contextlib.suppress(Exception):
                    await provider.close()
        self.stt = self.tts = self.llm = self.background_llm = self.smart_turn = None
        self.vram.release_all()
        await self.conversations.close()
        self.intake.close()

    def require_ready(self) -> TurnPipeline:
        """The pipeline; raise unless initialized.

        Raises:
            VoiceInitializationError: Before ``initialize()`` or after ``cleanup()``.
        """
        if self.pipeline is None:
            raise VoiceInitializationError("the voice engine is not initialized: call initialize()")
        return self.pipeline

    def _engine_info(self, mode: VoiceProcessingMode) -> dict[str, Any]:
        if mode is VoiceProcessingMode.MOSHI_ONLY:
            return {"provider": "moshi", "model": None, "reason": "a Moshi server of the pool"}
        return {
            "provider": self.llm.name if self.llm else None,
            "model": self.llm.model if self.llm else None,
            "reason": self.llm_reason,
        }
