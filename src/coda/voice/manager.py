"""``VoiceManager``: the spec's main entry point."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

from coda.audio.encode import encode_wav
from coda.core.config import VoiceConfig
from coda.core.models import (
    ConversationState,
    VoiceMessage,
    VoiceProcessingMode,
    VoiceResponse,
    VoiceStreamChunk,
)
from coda.modes.events import SpokenPiece, TextDelta, Transcribed
from coda.voice.engine import Progress, VoiceEngine
from coda.voice.interfaces import VoiceManagerInterface
from coda.voice.outcome import TurnOutcome, to_response


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
        logging.getLogger("coda").setLevel(self.config.log_level.upper())
        self.engine = VoiceEngine(self.config)

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

        Args:
            voice_message: The voice message to process.
            mode: Processing mode (adaptive, moshi_only, llm_enhanced, hybrid).
            context: Additional context: ``system_context`` (text for the LLM),
                ``max_tokens`` and ``temperature`` (this turn's limits), and
                ``before_reply`` (the integrations' hook, see ``TurnPlan``).

        Returns:
            VoiceResponse with WAV audio, the reply text, timings and scores.

        Raises:
            VoiceProcessingError: If processing fails.
            ValidationError: If voice message is invalid.
            ConversationError: If the conversation has ended or is unknown.
        """
        outcome: TurnOutcome | None = None
        async for item in self.engine.turn(voice_message, mode, context):
            if isinstance(item, TurnOutcome):
                outcome = item
        assert outcome is not None
        return to_response(outcome, self.config.audio.bit_depth)

    async def process_streaming(
        self,
        voice_message: VoiceMessage,
        mode: VoiceProcessingMode | None = None,
        context: dict[str, Any] | None = None,
    ) -> AsyncGenerator[VoiceStreamChunk, None]:
        """Process voice message with streaming response.

        Yields the transcript, then reply text deltas and one audio chunk per
        synthesized sentence as they are ready, then a final chunk with the
        whole reply's metadata. With ``enable_streaming`` off, only the final
        chunk is sent, carrying the whole reply's audio.
        """
        sequence = 0
        started = time.perf_counter()
        conversation_id = voice_message.conversation_id
        async for item in self.engine.turn(voice_message, mode, context):
            chunk: VoiceStreamChunk | None = None
            if isinstance(item, TurnOutcome):
                response = to_response(item, self.config.audio.bit_depth)
                chunk = VoiceStreamChunk(
                    conversation_id,
                    sequence,
                    "final",
                    text_content=response.text_content,
                    audio_data=None if self.config.enable_streaming else response.audio_data,
                    is_final=True,
                    elapsed_ms=item.processing_time_ms,
                    metadata={**response.metadata, **response.get_quality_metrics()},
                )
            elif not self.config.enable_streaming:
                continue
            elif isinstance(item, Transcribed):
                chunk = VoiceStreamChunk(conversation_id, sequence, "transcript", item.text)
            elif isinstance(item, TextDelta):
                chunk = VoiceStreamChunk(conversation_id, sequence, "text", item.text)
            elif isinstance(item, SpokenPiece):
                wav = encode_wav(item.audio.samples, item.audio.sample_rate)
                chunk = VoiceStreamChunk(conversation_id, sequence, "audio", item.text, wav)
            if chunk is not None:
                if not chunk.is_final:
                    chunk.elapsed_ms = (time.perf_counter() - started) * 1000.0
                sequence += 1
                yield chunk

    async def start_conversation(self, conversation_id: str) -> ConversationState:
        """Start a new voice conversation.

        Raises:
            ValidationError: If conversation_id is invalid.
            ConversationError: If conversation already exists.
        """
        self.engine.require_ready()
        return await self.engine.conversations.start(conversation_id)

    async def end_conversation(self, conversation_id: str) -> None:
        """End an active voice conversation.

        Raises:
            ConversationError: If conversation not found.
        """
        self.engine.require_ready()
        await self.engine.conversations.end(conversation_id)
        self.engine.policy.forget(conversation_id)

    async def get_conversation_state(self, conversation_id: str) -> ConversationState | None:
        """The conversation's state, or None if it is unknown."""
        self.engine.require_ready()
        return await self.engine.conversations.get(conversation_id)

    def get_stats(self) -> dict[str, Any]:
        """Counters, mean stage timings, and the models in use."""
        return self.engine.stats()
