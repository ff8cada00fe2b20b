"""``VoiceProcessor``: the spec's second facade, over the same engine as ``VoiceManager``."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Any

from coda.core.config import AudioConfig, MoshiConfig, VoiceConfig, VoiceProcessingConfig
from coda.core.models import (
    ConversationState,
    VoiceMessage,
    VoiceProcessingMode,
    VoiceResponse,
    VoiceStreamChunk,
)
from coda.voice.engine import Progress
from coda.voice.manager import VoiceManager

INTEGRATIONS_MISSING = (
    "process_with_integrations: the memory, personality and tools integrations are not "
    "implemented yet (issue #6); call it with include_memory=include_personality="
    "include_tools=False, or use process_voice_message"
)


def voice_config_from(
    config: VoiceProcessingConfig, base: VoiceConfig | None = None
) -> VoiceConfig:
    """Map a ``VoiceProcessingConfig`` onto a ``VoiceConfig`` (``base`` supplies the rest)."""
    base = base or VoiceConfig()
    return replace(
        base,
        audio=replace(
            base.audio or AudioConfig(), sample_rate=config.sample_rate, channels=config.channels
        ),
        moshi=replace(
            base.moshi or MoshiConfig(),
            enabled=config.enable_moshi,
            vram_budget_gb=min(base.moshi.vram_budget_gb, config.vram_limit_gb),
        ),
        vram_limit_gb=config.vram_limit_gb,
        default_mode=config.default_mode,
        enable_streaming=config.enable_streaming,
        max_latency_ms=config.max_latency_ms,
        enable_memory_integration=config.enable_memory_integration,
        enable_personality_integration=config.enable_personality_integration,
        enable_tools_integration=config.enable_tools_integration,
    )


class VoiceProcessor:
    """Voice processing facade configured by a ``VoiceProcessingConfig``.

    Args:
        config: Processing settings (None: the defaults).
        voice_config: Provider, storage and audio settings the processing config
            does not cover (None: the development config).
    """

    def __init__(
        self,
        config: VoiceProcessingConfig | None = None,
        voice_config: VoiceConfig | None = None,
    ) -> None:
        self.config = config or VoiceProcessingConfig()
        self.manager = VoiceManager(voice_config_from(self.config, voice_config))

    async def start(self, progress: Progress | None = None) -> None:
        """Load the models (``VoiceManager.initialize``)."""
        await self.manager.initialize(progress)

    async def stop(self) -> None:
        """Free everything (``VoiceManager.cleanup``)."""
        await self.manager.cleanup()

    async def process_voice_message(
        self,
        voice_message: VoiceMessage,
        mode: VoiceProcessingMode | None = None,
        context: dict[str, Any] | None = None,
    ) -> VoiceResponse:
        """Answer one message (see ``VoiceManager.process_voice_message``)."""
        return await self.manager.process_voice_message(voice_message, mode, context)

    def process_streaming(
        self, voice_message: VoiceMessage, mode: VoiceProcessingMode | None = None
    ) -> AsyncGenerator[VoiceStreamChunk, None]:
        """Answer one message as a stream (see ``VoiceManager.process_streaming``)."""
        return self.manager.process_streaming(voice_message, mode)

    async def process_with_integrations(
        self,
        voice_message: VoiceMessage,
        include_memory: bool = True,
        include_personality: bool = True,
        include_tools: bool = True,
    ) -> VoiceResponse:
        """Answer one message with memory, personality and tools wired in.

        Raises:
            NotImplementedError: While the integrations are not implemented (issue #6).
        """
        if include_memory or include_personality or include_tools:
            raise NotImplementedError(INTEGRATIONS_MISSING)
        return await self.manager.process_voice_message(voice_message)

    async def start_conversation(self, conversation_id: str) -> ConversationState:
        """Start a conversation."""
        return await self.manager.start_conversation(conversation_id)

    async def end_conversation(self, conversation_id: str) -> None:
        """End a conversation."""
        await self.manager.end_conversation(conversation_id)

    def get_stats(self) -> dict[str, Any]:
        """Counters, mean stage timings, and the models in use."""
        return self.manager.get_stats()
