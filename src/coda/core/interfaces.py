"""The abstract contract ``VoiceManager`` fulfils (what integrations may depend on)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator
from typing import Any

from coda.core.models import (
    ConversationState,
    VoiceMessage,
    VoiceProcessingMode,
    VoiceResponse,
    VoiceStreamChunk,
)


class VoiceManagerInterface(ABC):
    """What every voice manager offers."""

    @abstractmethod
    async def initialize(self) -> None:
        """Load models and open stores."""

    @abstractmethod
    async def cleanup(self) -> None:
        """Free everything ``initialize`` acquired."""

    @abstractmethod
    async def process_voice_message(
        self,
        voice_message: VoiceMessage,
        mode: VoiceProcessingMode | None = None,
        context: dict[str, Any] | None = None,
    ) -> VoiceResponse:
        """Answer one message."""

    @abstractmethod
    def process_streaming(
        self,
        voice_message: VoiceMessage,
        mode: VoiceProcessingMode | None = None,
        context: dict[str, Any] | None = None,
    ) -> AsyncGenerator[VoiceStreamChunk, None]:
        """Answer one message as a stream of chunks."""

    @abstractmethod
    async def start_conversation(self, conversation_id: str) -> ConversationState:
        """Start a conversation."""

    @abstractmethod
    async def end_conversation(self, conversation_id: str) -> None:
        """End a conversation."""

    @abstractmethod
    async def get_conversation_state(self, conversation_id: str) -> ConversationState | None:
        """The conversation's state, or None if it is unknown."""
