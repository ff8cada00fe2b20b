"""Build the responder of each mode a ``VoiceConfig`` makes available, and say why not."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from coda.core.config import LLMConfig, VoiceConfig
from coda.core.enums import VoiceProcessingMode
from coda.core.errors import VoiceProcessingError
from coda.modes.cascade import CascadeResponder
from coda.modes.hybrid import HybridResponder
from coda.modes.moshi import MoshiResponder
from coda.modes.responder import Responder
from coda.modes.selection import (
    HYBRID_DISABLED,
    HYBRID_MISSING,
    MOSHI_DISABLED,
    MOSHI_UNCONFIGURED,
)
from coda.providers.base import LanguageModel, SpeechToSpeech, TextToSpeech
from coda.providers.registry import resolve_llm
from coda.providers.s2s.moshi import MoshiSpeechToSpeech
from coda.providers.s2s.moshi_pool import MoshiPool

log = logging.getLogger(__name__)


@dataclass
class ResponderSet:
    """The responders by mode, the unavailable modes with reasons, and what they own."""

    responders: dict[VoiceProcessingMode, Responder] = field(default_factory=dict)
    unavailable: dict[VoiceProcessingMode, str] = field(default_factory=dict)
    s2s: SpeechToSpeech | None = None
    moshi_pool: MoshiPool | None = None
    """The Moshi servers, shared by replies and live calls (None: none configured)."""
    secondary_llm: LanguageModel | None = None


def cascade(
    config: VoiceConfig, llm: LanguageModel, tts: TextToSpeech, llm_config: LLMConfig
) -> CascadeResponder:
    """The STT → LLM → TTS responder over ``llm``."""
    return CascadeResponder(
        llm,
        tts,
        llm_config,
        config.streaming,
        max_history_turns=config.max_conversation_length,
        output_rate=config.audio.sample_rate,
    )


async def build_responders(
    config: VoiceConfig, llm: LanguageModel, tts: TextToSpeech
) -> ResponderSet:
    """The cascade always; Moshi with a server; hybrid with at least two racers."""
    primary = cascade(config, llm, tts, config.llm or LLMConfig(provider="auto"))
    built = ResponderSet({VoiceProcessingMode.LLM_ENHANCED: primary})
    racers: list[Responder] = [primary]
    moshi = config.moshi
    if not moshi.enabled:
        built.unavailable[VoiceProcessingMode.MOSHI_ONLY] = MOSHI_DISABLED
    elif not moshi.servers():
        built.unavailable[VoiceProcessingMode.MOSHI_ONLY] = MOSHI_UNCONFIGURED
    else:
        # No connection yet: each server may serve one session at a time.
        built.moshi_pool = MoshiPool(moshi)
        built.s2s = MoshiSpeechToSpeech(moshi, built.moshi_pool)
        responder = MoshiResponder(built.s2s, config.audio.sample_rate)
        built.responders[VoiceProcessingMode.MOSHI_ONLY] = responder
        racers.append(responder)
    second = config.secondary_llm
    if second is not None:
        try:
            choice = await resolve_llm(second, config.resolved_model_dir())
            await choice.provider.load()
        except VoiceProcessingError as exc:
            # A second opinion that cannot load costs hybrid one racer, not Coda.
            log.warning("secondary LLM unavailable: %s", exc)
            built.unavailable[VoiceProcessingMode.HYBRID] = f"secondary LLM unavailable: {exc}"
        else:
            built.secondary_llm = choice.provider
            racers.append(cascade(config, choice.provider, tts, second))
    if not config.enable_hybrid_processing:
        built.unavailable[VoiceProcessingMode.HYBRID] = HYBRID_DISABLED
    elif len(racers) >= 2:
        built.responders[VoiceProcessingMode.HYBRID] = HybridResponder(
            racers, config.max_latency_ms, parallel=config.enable_parallel_processing
        )
        built.unavailable.pop(VoiceProcessingMode.HYBRID, None)
    else:
        built.unavailable.setdefault(VoiceProcessingMode.HYBRID, HYBRID_MISSING)
    return built
