"""The spec's integration classes (each implemented in ``coda.integrations`` / ``coda.sync``)."""

from __future__ import annotations

from coda.integrations.llm_manager import VoiceLLMManagerIntegration
from coda.integrations.memory import VoiceMemoryIntegration
from coda.integrations.personality import VoicePersonalityIntegration
from coda.integrations.tools import VoiceToolsIntegration
from coda.sync.voice_sync import VoiceConversationSync

__all__ = [
    "VoiceConversationSync",
    "VoiceLLMManagerIntegration",
    "VoiceMemoryIntegration",
    "VoicePersonalityIntegration",
    "VoiceToolsIntegration",
]
