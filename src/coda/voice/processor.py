"""``VoiceProcessor``: the spec's second facade, over the same engine as ``VoiceManager``."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Any

from coda.core.config import (
    AudioConfig,
    LLMConfig,
    MoshiConfig,
    VoiceConfig,
    VoiceProcessingConfig,
)
from coda.core.integration_config import (
    VoiceConversationSyncConfig,
    VoiceMemoryConfig,
    VoicePersonalityConfig,
    VoiceToolsConfig,
)
from coda.core.models import (
    ConversationState,
    VoiceMessage,
    VoiceProcessingMode,
    VoiceResponse,
    VoiceStreamChunk,
)
from coda.integrations.assembly import Integrations
from coda.turn.context import TurnOptions
from coda.voice.engine import Progress
from coda.voice.manager import VoiceManager


def voice_config_from(
    config: VoiceProcessingConfig,
    base: VoiceConfig | None = None,
    *,
    memory: VoiceMemoryConfig | None = None,
    personality: VoicePersonalityConfig | None = None,
    tools: VoiceToolsConfig | None = None,
    sync: VoiceConversationSyncConfig | None = None,
) -> VoiceConfig:
    """Map a ``VoiceProcessingConfig`` onto a ``VoiceConfig`` (``base`` supplies the rest).

    ``chunk_size`` becomes the samples per streamed audio chunk,
    ``enable_parallel_processing`` whether hybrid runs its candidates at once,
    ``enable_hybrid_processing`` whether hybrid is offered at all, and without
    ``enable_external_llm`` only the embedded model answers (a remote LLM in
    ``base`` is replaced by it, and no Ollama server is looked for).
    """
    base = base or VoiceConfig()
    llm, secondary = base.llm, base.secondary_llm
    if not config.enable_external_llm:
        if llm is None or llm.provider != "llamacpp":
            llm = replace(llm or LLMConfig(), provider="llamacpp", model=None, base_url=None)
        if secondary is not None and secondary.provider != "llamacpp":
            secondary = None
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
        enable_conversation_sync=config.enable_conversation_sync,
        enable_parallel_processing=config.enable_parallel_processing,
        enable_hybrid_processing=config.enable_hybrid_processing,
        llm=llm,
        secondary_llm=secondary,
        stream_chunk_samples=config.chunk_size,
        memory=memory or base.memory,
        personality=personality or base.personality,
        tools=tools or base.tools,
        sync=sync or base.sync,
    )


class VoiceProcessor:
    """Voice processing facade configured by a ``VoiceProcessingConfig``.

    Args:
        config: Processing settings (None: the defaults).
        voice_config: Provider, storage and audio settings the processing config
            does not cover (None: the development config).
        memory_config: Memory integration settings.
        personality_config: Personality integration settings.
        tools_config: Tools integration settings.
        sync_config: Conversation sync settings.
    """

    def __init__(
        self,
        config: VoiceProcessingConfig | None = None,
        voice_config: VoiceConfig | None = None,
        *,
        memory_config: VoiceMemoryConfig | None = None,
        personality_config: VoicePersonalityConfig | None = None,
        tools_config: VoiceToolsConfig | None = None,
        sync_config: VoiceConversationSyncConfig | None = None,
    ) -> None:
        self.config = config or VoiceProcessingConfig()
        self.manager = VoiceManager(
            voice_config_from(
                self.config,
                voice_config,
                memory=memory_config,
                personality=personality_config,
                tools=tools_config,
                sync=sync_config,
            )
        )

    @property
    def integrations(self) -> Integrations:
        """The installed integrations (memory, personality, tools, sync)."""
        return self.manager.engine.integrations

    async def start(self, progress: Progress | None = None) -> None:
        """Load the models and open the integrations (``VoiceManager.initialize``)."""
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
        self,
        voice_message: VoiceMessage,
        mode: VoiceProcessingMode | None = None,
        context: dict[str, Any] | None = None,
    ) -> AsyncGenerator[VoiceStreamChunk, None]:
        """Answer one message as a stream (see ``VoiceManager.process_streaming``)."""
        return self.manager.process_streaming(voice_message, mode, context)

    async def process_with_integrations(
        self,
        voice_message: VoiceMessage,
        include_memory: bool = True,
        include_personality: bool = True,
        include_tools: bool = True,
        user_feedback: dict[str, Any] | None = None,
    ) -> VoiceResponse:
        """Answer one message with the chosen integrations (all installed ones by default).

        Every turn runs through the same pipeline; this call only narrows which
        integrations take part (sync always does, when enabled). Relevant memories,
        the personality's style and any tool results reach the LLM before it
        answers; the reply follows the personality (``user_feedback`` about the
        previous reply is applied first); afterwards memories and traits are
        learned and the turn is synced, in the background.
        """
        chosen = {"memory": include_memory, "personality": include_personality}
        chosen |= {"tools": include_tools, "sync": True}
        options = TurnOptions(
            integrations=frozenset(name for name, on in chosen.items() if on),
            user_feedback=user_feedback,
        )
        return await self.manager.engine.respond(voice_message, None, options)

    async def start_conversation(self, conversation_id: str) -> ConversationState:
        """Start a conversation."""
        return await self.manager.start_conversation(conversation_id)

    async def end_conversation(self, conversation_id: str) -> None:
        """End a conversation."""
        await self.manager.end_conversation(conversation_id)

    def get_stats(self) -> dict[str, Any]:
        """Counters, mean stage timings, and the models in use."""
        return self.manager.get_stats()
