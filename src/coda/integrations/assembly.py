"""Install the integrations a ``VoiceConfig`` enables, as the turn pipeline's hooks."""

from __future__ import annotations

from dataclasses import dataclass

from coda.core.config import VoiceConfig
from coda.integrations.hooks import MemoryHook, PersonalityHook, SyncHook, ToolsHook
from coda.integrations.memory import VoiceMemory, VoiceMemoryIntegration, current_scope
from coda.integrations.personality import VoicePersonalityIntegration
from coda.integrations.tools import Answer, VoiceToolsIntegration
from coda.memory.embedder import MiniLMEmbedder
from coda.memory.model_extractor import ModelExtractor
from coda.providers.base import LanguageModel, TextToSpeech
from coda.store.backends import memory_store, text_conversations, trait_store
from coda.sync.voice_sync import VoiceConversationSync
from coda.tools.builtin import default_registry
from coda.turn.hooks import TurnHooks


@dataclass
class Integrations:
    """The installed integrations; any may be absent (disabled)."""

    memory: VoiceMemoryIntegration | None = None
    personality: VoicePersonalityIntegration | None = None
    tools: VoiceToolsIntegration | None = None
    sync: VoiceConversationSync | None = None

    def hooks(self) -> list[TurnHooks]:
        """Their hooks, in the order a turn calls them (memory first: a tool may search it)."""
        hooks: list[TurnHooks] = []
        if self.memory is not None:
            hooks.append(MemoryHook(self.memory))
        if self.personality is not None:
            hooks.append(PersonalityHook(self.personality))
        if self.tools is not None:
            hooks.append(ToolsHook(self.tools, memory_recalls=self.memory is not None))
        if self.sync is not None:
            hooks.append(SyncHook(self.sync))
        return hooks


def build_integrations(
    config: VoiceConfig,
    llm: LanguageModel,
    tts: TextToSpeech,
    answer: Answer,
    background: LanguageModel,
) -> Integrations:
    """The integrations ``config`` enables, their tables in the conversation store's.

    Args:
        config: Which integrations, and their settings.
        llm: The language model that plans tool calls.
        tts: The voice that re-speaks a reply cut to the personality's budget.
        answer: Speaks an answer with extra context (``process_function_calls``).
        background: The model that reads facts the rules cannot (after the turn).
    """
    location = config.store_location()
    embedder = MiniLMEmbedder()  # one model for memories and tool ranking
    memory = (
        VoiceMemoryIntegration(VoiceMemory(memory_store(location), embedder), config.memory)
        if config.enable_memory_integration
        else None
    )
    if memory is not None and config.memory.model_extraction:
        memory.extractor = ModelExtractor(background)

    async def search_memory(query: str, limit: int = 5) -> list[dict[str, object]]:
        assert memory is not None
        return await memory.search(current_scope.get(), query, limit)

    tools = (
        VoiceToolsIntegration(
            default_registry(search_memory if memory is not None else None),
            config.tools,
            llm=llm,
            embedder=embedder,
            llm_config=config.llm,
            answer=answer,
        )
        if config.enable_tools_integration
        else None
    )
    personality = (
        VoicePersonalityIntegration(trait_store(location), config.personality, tts=tts)
        if config.enable_personality_integration
        else None
    )
    sync = (
        VoiceConversationSync(text_conversations(location), config.sync, owned=True)
        if config.enable_conversation_sync
        else None
    )
    return Integrations(memory, personality, tools, sync)
