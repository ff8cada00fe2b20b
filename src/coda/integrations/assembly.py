"""Build the integrations a ``VoiceProcessor`` uses, over its engine and its store file."""

from __future__ import annotations

from typing import TYPE_CHECKING

from coda.core.config import VoiceProcessingConfig
from coda.core.integration_config import (
    VoiceConversationSyncConfig,
    VoiceMemoryConfig,
    VoicePersonalityConfig,
    VoiceToolsConfig,
)
from coda.core.models import VoiceMessage, VoiceProcessingMode, VoiceResponse
from coda.integrations.memory import VoiceMemory, VoiceMemoryIntegration, current_scope
from coda.integrations.personality import VoicePersonalityIntegration
from coda.integrations.pipeline import Integrations
from coda.integrations.tools import VoiceToolsIntegration
from coda.memory.embedder import MiniLMEmbedder
from coda.memory.store import SQLiteMemoryStore
from coda.personality.store import PersonalityStore
from coda.sync.voice_sync import VoiceConversationSync
from coda.tools.builtin import default_registry

if TYPE_CHECKING:
    from coda.voice.manager import VoiceManager


def build_integrations(
    manager: VoiceManager,
    config: VoiceProcessingConfig,
    memory_config: VoiceMemoryConfig,
    personality_config: VoicePersonalityConfig,
    tools_config: VoiceToolsConfig,
    sync_config: VoiceConversationSyncConfig,
) -> Integrations:
    """The enabled integrations, their tables in the conversation store's SQLite file."""
    engine = manager.engine
    path = engine.config.resolved_store_path()
    embedder = MiniLMEmbedder()  # one model for memories and tool ranking
    memory = (
        VoiceMemoryIntegration(VoiceMemory(SQLiteMemoryStore(path), embedder), memory_config)
        if config.enable_memory_integration
        else None
    )

    async def search_memory(query: str, limit: int = 5) -> list[dict[str, object]]:
        assert memory is not None
        return await memory.search(current_scope.get(), query, limit)

    async def answer(message: VoiceMessage, words: str, context: str) -> VoiceResponse:
        follow_up = VoiceMessage(message.conversation_id, b"", text_content=words)
        return await manager.process_voice_message(
            follow_up, VoiceProcessingMode.LLM_ENHANCED, {"system_context": context}
        )

    tools = (
        VoiceToolsIntegration(
            default_registry(search_memory if memory is not None else None),
            tools_config,
            llm=engine.llm,
            embedder=embedder,
            llm_config=engine.config.llm,
            answer=answer,
        )
        if config.enable_tools_integration
        else None
    )
    personality = (
        VoicePersonalityIntegration(PersonalityStore(path), personality_config, tts=engine.tts)
        if config.enable_personality_integration
        else None
    )
    sync = (
        VoiceConversationSync(None, sync_config, store_path=path)  # owns its text store
        if config.enable_conversation_sync
        else None
    )
    return Integrations(memory, personality, tools, sync)
