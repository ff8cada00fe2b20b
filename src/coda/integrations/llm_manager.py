"""``VoiceLLMManagerIntegration``: voice turns through the LLM with voice-specific limits."""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncGenerator
from typing import Any

from coda.core.errors import TimeoutError
from coda.core.integration_config import VoiceLLMManagerConfig
from coda.core.interfaces import VoiceManagerInterface
from coda.core.models import (
    ConversationState,
    LLMMessage,
    VoiceMessage,
    VoiceProcessingMode,
    VoiceResponse,
)


class VoiceLLMManagerIntegration:
    """Generates voice replies through the LLM, within ``voice_*`` limits.

    Args:
        llm_manager: The voice manager whose LLM answers (initialized by the caller).
        config: Token cap, temperature, streaming and timeout for voice replies.
    """

    def __init__(
        self, llm_manager: VoiceManagerInterface, config: VoiceLLMManagerConfig | None = None
    ) -> None:
        self.llm_manager = llm_manager
        self.config = config or VoiceLLMManagerConfig()

    def _context(self, enhanced_context: dict[str, Any] | None) -> dict[str, Any]:
        return {
            **(enhanced_context or {}),
            "max_tokens": self.config.voice_response_max_tokens,
            "temperature": self.config.voice_temperature,
        }

    async def generate_voice_response(
        self,
        voice_message: VoiceMessage,
        conversation_state: ConversationState | None = None,
        enhanced_context: dict[str, Any] | None = None,
    ) -> VoiceResponse:
        """One reply from the LLM (``llm_enhanced``), spoken.

        ``enhanced_context["system_context"]`` (memories, personality) goes to the LLM.

        Raises:
            TimeoutError: If the reply takes longer than ``voice_timeout_seconds``.
            LLMIntegrationError: If the LLM fails.
        """
        try:
            async with asyncio.timeout(self.config.voice_timeout_seconds):
                return await self.llm_manager.process_voice_message(
                    voice_message,
                    VoiceProcessingMode.LLM_ENHANCED,
                    self._context(enhanced_context),
                )
        except TimeoutError:
            raise
        except builtins.TimeoutError as exc:
            raise TimeoutError(
                f"no voice reply within {self.config.voice_timeout_seconds:g} s"
            ) from exc

    async def generate_streaming_voice_response(
        self,
        voice_message: VoiceMessage,
        conversation_state: ConversationState | None = None,
        enhanced_context: dict[str, Any] | None = None,
    ) -> AsyncGenerator[VoiceResponse, None]:
        """The reply as it is spoken, one ``VoiceResponse`` per piece.

        One partial response per audio piece (its words and audio), then the whole
        reply's text and metadata (``metadata["is_final"]``). With
        ``enable_streaming_for_voice`` off, the reply is made whole and yielded once,
        with all its audio.

        Raises:
            TimeoutError: If the reply takes longer than ``voice_timeout_seconds``.
        """
        if not self.config.enable_streaming_for_voice:
            whole = await self.generate_voice_response(
                voice_message, conversation_state, enhanced_context
            )
            whole.metadata = {**whole.metadata, "is_final": True}
            yield whole
            return
        stream = self.llm_manager.process_streaming(
            voice_message, VoiceProcessingMode.LLM_ENHANCED, self._context(enhanced_context)
        )
        deadline = time.monotonic() + self.config.voice_timeout_seconds
        try:
            while True:
                remaining = deadline - time.monotonic()
                try:
                    chunk = await asyncio.wait_for(anext(stream), max(0.0, remaining))
                except StopAsyncIteration:
                    return
                except builtins.TimeoutError as exc:
                    raise TimeoutError(
                        f"no voice reply within {self.config.voice_timeout_seconds:g} s"
                    ) from exc
                if chunk.kind == "audio":
                    yield VoiceResponse(
                        chunk.conversation_id,
                        chunk.text_content or "",
                        chunk.audio_data,
                        processing_time=chunk.elapsed_ms,
                        processing_mode=VoiceProcessingMode.LLM_ENHANCED,
                        metadata={"is_final": False, "sequence": chunk.sequence},
                    )
                elif chunk.is_final:
                    yield VoiceResponse(
                        chunk.conversation_id,
                        chunk.text_content or "",
                        chunk.audio_data,
                        processing_time=chunk.elapsed_ms,
                        processing_mode=VoiceProcessingMode.LLM_ENHANCED,
                        metadata={**chunk.metadata, "is_final": True},
                    )
        finally:
            await stream.aclose()

    async def get_conversation_history(
        self, voice_conversation_id: str, limit: int = 10
    ) -> list[LLMMessage]:
        """The conversation's latest ``limit`` messages, oldest first, from the store."""
        state = await self.llm_manager.get_conversation_state(voice_conversation_id)
        if state is None or limit <= 0:
            return []
        messages = []
        for turn in state.turns:
            messages.append(LLMMessage("user", turn.user_text))
            messages.append(LLMMessage("assistant", turn.assistant_text))
        return messages[-limit:]
