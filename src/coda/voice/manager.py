"""``VoiceManager``: the spec's main entry point."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any

from coda.core.config import VoiceConfig
from coda.core.interfaces import VoiceManagerInterface
from coda.core.models import (
    ConversationState,
    VoiceMessage,
    VoiceProcessingMode,
    VoiceResponse,
    VoiceStreamChunk,
)
from coda.turn.context import TurnOptions
from coda.voice.chunks import StreamChunker
from coda.voice.engine import Progress, VoiceEngine
from coda.voice.stats import engine_stats


class VoiceManager(VoiceManagerInterface):
    """Main voice manager for orchestrating voice processing.

    The VoiceManager coordinates between different processing modes (Moshi-only,
    LLM-enhanced, hybrid) and manages integrations with memory, personality,
    and tools systems.

    Args:
        config: Voice configuration object. If None, loads development config:
            the embedded models, with Ollama preferred when a server answers.

    Example:
        >>> from coda.voice import VoiceManager
        >>> manager = VoiceManager()
        >>> await manager.initialize()
        >>> response = await manager.process_voice_message(voice_message)
    """

    def __init__(self, config: VoiceConfig | None = None) -> None:
        """Initialize voice manager with configuration."""
        self.config = config or VoiceConfig()
        self.engine = VoiceEngine(self.config)  # validates the config first
        logging.getLogger("coda").setLevel(self.config.log_level.upper())

    async def initialize(self, progress: Progress | None = None) -> None:
        """Initialize all voice processing components.

        This method must be called before processing any voice messages.

        Args:
            progress: Optional callback (stage, done, total) for a progress bar.

        Raises:
            VoiceInitializationError: If initialization fails.
            LLMIntegrationError: If an explicitly configured LLM server is unreachable.
        """
        await self.engine.initialize(progress)

    async def cleanup(self) -> None:
        """Clean up all resources and stop processing."""
        await self.engine.cleanup()

    async def process_voice_message(
        self,
        voice_message: VoiceMessage,
        mode: VoiceProcessingMode | None = None,
        context: dict[str, Any] | None = None,
    ) -> VoiceResponse:
        """Process a voice message and return a response.

        The turn runs through the whole pipeline: memory, personality, tools and
        sync take part as ``VoiceConfig`` enables them.

        Args:
            voice_message: The voice message to process (``speaker`` says whose
                memories and personality apply).
            mode: Processing mode (adaptive, moshi_only, llm_enhanced, hybrid).
            context: Additional context (see ``TurnOptions.from_context``):
                ``system_context`` (text for the LLM), ``max_tokens`` and
                ``temperature`` (this turn's limits), ``integrations`` (the names
                this turn may use) and ``user_feedback`` (about the last reply).

        Returns:
            VoiceResponse with the reply's audio (``AudioConfig``'s format, bit
            depth, channels and rate), the reply text, timings and scores.

        Raises:
            VoiceProcessingError: If processing fails.
            ValidationError: If voice message is invalid.
            ConversationError: If the conversation has ended or is unknown.
        """
        return await self.engine.respond(voice_message, mode, TurnOptions.from_context(context))

    async def process_streaming(
        self,
        voice_message: VoiceMessage,
        mode: VoiceProcessingMode | None = None,
        context: dict[str, Any] | None = None,
    ) -> AsyncGenerator[VoiceStreamChunk, None]:
        """Process voice message with streaming response.

        Yields the transcript, what was remembered and which tools ran, then reply
        text deltas and audio chunks as they are ready (one per clause, or at most
        ``VoiceConfig.stream_chunk_samples`` samples each), then a final chunk with
        the whole reply's metadata. With ``enable_streaming`` off, only the final
        chunk is sent, carrying the whole reply's audio.
        """
        chunks = StreamChunker(voice_message.conversation_id, self.config)
        events = self.engine.require_ready().message(
            voice_message, mode, TurnOptions.from_context(context), streamed=True
        )
        async for event in events:
            for chunk in await chunks.of(event):
                yield chunk

    async def start_conversation(
        self, conversation_id: str, *, owner: str | None = None
    ) -> ConversationState:
        """Start a new voice conversation.

        Args:
            conversation_id: Its id.
            owner: The tenant it belongs to (the server passes the API key's).

        Raises:
            ValidationError: If conversation_id is invalid.
            ConversationError: If conversation already exists.
        """
        self.engine.require_ready()
        return await self.engine.conversations.start(conversation_id, owner)

    async def end_conversation(self, conversation_id: str) -> None:
        """End an active voice conversation.

        Its turns still queued for the text store (``real_time_sync`` off) are written.

        Raises:
            ConversationError: If conversation not found.
        """
        pipeline = self.engine.require_ready()
        await self.engine.conversations.end(conversation_id)
        pipeline.forget(conversation_id)
        sync = self.engine.integrations.sync
        if sync is not None:
            await sync.flush(conversation_id)

    async def get_conversation_state(self, conversation_id: str) -> ConversationState | None:
        """The conversation's state, or None if it is unknown."""
        self.engine.require_ready()
        return await self.engine.conversations.get(conversation_id)

    def get_stats(self) -> dict[str, Any]:
        """Counters, mean stage timings, analytics, and the models in use."""
        return engine_stats(self.engine)

    async def wait_for_learning(self) -> None:
        """Wait until what finished turns teach (memories, traits, sync) is stored."""
        await self.engine.require_ready().background.drain()
