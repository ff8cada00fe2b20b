"""The spec's integration classes.

Their behaviour (memory with embeddings, personality, tools, LLM manager,
conversation sync) is issue #6. Until it lands, each method raises
``NotImplementedError`` naming what is missing; none returns a fake result.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

from coda.core.integration_config import (
    VoiceConversationSyncConfig,
    VoiceLLMManagerConfig,
    VoiceMemoryConfig,
    VoicePersonalityConfig,
    VoiceToolsConfig,
)
from coda.core.models import (
    ConversationState,
    LLMMessage,
    SyncEventType,
    ToolResult,
    VoiceMessage,
    VoiceResponse,
)


def _missing(what: str) -> NotImplementedError:
    return NotImplementedError(f"{what} is not implemented yet (issue #6)")


class VoiceMemoryIntegration:
    """Integrates voice processing with the memory system."""

    def __init__(self, memory_manager: Any = None, config: VoiceMemoryConfig | None = None) -> None:
        self.memory_manager = memory_manager
        self.config = config or VoiceMemoryConfig()

    async def enhance_voice_context(
        self, voice_message: VoiceMessage, conversation_state: ConversationState | None = None
    ) -> dict[str, Any]:
        """Retrieve relevant memories for the message."""
        raise _missing("memory retrieval (VoiceMemoryIntegration.enhance_voice_context)")

    async def learn_from_voice_interaction(
        self,
        voice_message: VoiceMessage,
        voice_response: VoiceResponse,
        conversation_state: ConversationState | None = None,
    ) -> None:
        """Store what is worth remembering from a turn."""
        raise _missing("memory learning (VoiceMemoryIntegration.learn_from_voice_interaction)")

    def get_integration_stats(self) -> dict[str, Any]:
        """Counters of the memory integration."""
        raise _missing("memory statistics (VoiceMemoryIntegration.get_integration_stats)")


class VoicePersonalityIntegration:
    """Integrates voice processing with the personality system."""

    def __init__(
        self, personality_manager: Any = None, config: VoicePersonalityConfig | None = None
    ) -> None:
        self.personality_manager = personality_manager
        self.config = config or VoicePersonalityConfig()

    async def enhance_voice_context(
        self, voice_message: VoiceMessage, conversation_state: ConversationState | None = None
    ) -> dict[str, Any]:
        """Personality traits for the system prompt."""
        raise _missing("personality injection (VoicePersonalityIntegration.enhance_voice_context)")

    async def adapt_voice_response(
        self,
        voice_response: VoiceResponse,
        voice_message: VoiceMessage,
        conversation_state: ConversationState | None = None,
    ) -> VoiceResponse:
        """Shape a reply's length, style and voice."""
        raise _missing("response adaptation (VoicePersonalityIntegration.adapt_voice_response)")

    async def learn_from_voice_interaction(
        self,
        voice_message: VoiceMessage,
        voice_response: VoiceResponse,
        conversation_state: ConversationState | None = None,
        user_feedback: dict[str, Any] | None = None,
    ) -> None:
        """Adjust traits from feedback."""
        raise _missing(
            "personality learning (VoicePersonalityIntegration.learn_from_voice_interaction)"
        )


class VoiceToolsIntegration:
    """Integrates voice processing with the tools system."""

    def __init__(self, tools_manager: Any = None, config: VoiceToolsConfig | None = None) -> None:
        self.tools_manager = tools_manager
        self.config = config or VoiceToolsConfig()

    async def enhance_voice_context(
        self, voice_message: VoiceMessage, conversation_state: ConversationState | None = None
    ) -> dict[str, Any]:
        """Describe the relevant tools to the LLM."""
        raise _missing("tool injection (VoiceToolsIntegration.enhance_voice_context)")

    async def process_function_calls(
        self,
        voice_message: VoiceMessage,
        voice_response: VoiceResponse,
        conversation_state: ConversationState | None = None,
    ) -> tuple[VoiceResponse, list[ToolResult]]:
        """Run the tool calls a reply asks for."""
        raise _missing("function calling (VoiceToolsIntegration.process_function_calls)")

    async def get_tool_suggestions(
        self, voice_message: VoiceMessage, conversation_state: ConversationState | None = None
    ) -> list[dict[str, Any]]:
        """Tools ranked by relevance to the message."""
        raise _missing("tool suggestions (VoiceToolsIntegration.get_tool_suggestions)")


class VoiceLLMManagerIntegration:
    """Integrates voice processing with the LLM manager."""

    def __init__(
        self, llm_manager: Any = None, config: VoiceLLMManagerConfig | None = None
    ) -> None:
        self.llm_manager = llm_manager
        self.config = config or VoiceLLMManagerConfig()

    async def generate_voice_response(
        self,
        voice_message: VoiceMessage,
        conversation_state: ConversationState | None = None,
        enhanced_context: dict[str, Any] | None = None,
    ) -> VoiceResponse:
        """Generate a reply through the LLM manager."""
        raise _missing("LLM manager replies (VoiceLLMManagerIntegration.generate_voice_response)")

    async def generate_streaming_voice_response(
        self,
        voice_message: VoiceMessage,
        conversation_state: ConversationState | None = None,
        enhanced_context: dict[str, Any] | None = None,
    ) -> AsyncGenerator[VoiceResponse, None]:
        """Stream a reply through the LLM manager."""
        raise _missing(
            "LLM manager streaming (VoiceLLMManagerIntegration.generate_streaming_voice_response)"
        )
        yield  # pragma: no cover - makes this an async generator

    async def get_conversation_history(
        self, voice_conversation_id: str, limit: int = 10
    ) -> list[LLMMessage]:
        """The conversation as LLM messages."""
        raise _missing("LLM history (VoiceLLMManagerIntegration.get_conversation_history)")


class VoiceConversationSync:
    """Synchronizes voice conversations with a conversation manager."""

    def __init__(
        self, conversation_manager: Any = None, config: VoiceConversationSyncConfig | None = None
    ) -> None:
        self.conversation_manager = conversation_manager
        self.config = config or VoiceConversationSyncConfig()

    def add_event_handler(self, event_type: SyncEventType, handler: Callable[..., Any]) -> None:
        """Register a handler for a sync event."""
        raise _missing("sync event handlers (VoiceConversationSync.add_event_handler)")

    async def sync_voice_message(
        self, voice_message: VoiceMessage, conversation_state: ConversationState | None = None
    ) -> bool:
        """Mirror a voice message into the conversation manager."""
        raise _missing("conversation sync (VoiceConversationSync.sync_voice_message)")

    async def sync_voice_response(
        self, voice_response: VoiceResponse, conversation_state: ConversationState | None = None
    ) -> bool:
        """Mirror a voice response into the conversation manager."""
        raise _missing("conversation sync (VoiceConversationSync.sync_voice_response)")

    async def sync_conversation_state(self, conversation_state: ConversationState) -> bool:
        """Mirror a conversation's state."""
        raise _missing("conversation sync (VoiceConversationSync.sync_conversation_state)")

    async def handle_conversation_update(
        self, conversation_id: str, update_data: dict[str, Any]
    ) -> bool:
        """Apply an update coming from the conversation manager."""
        raise _missing("conversation sync (VoiceConversationSync.handle_conversation_update)")
