"""The spec's enums, in a module of their own: config, models and the sync all use them."""

from __future__ import annotations

from enum import Enum


class VoiceProcessingMode(str, Enum):
    """Voice processing modes for different use cases.

    - MOSHI_ONLY: Fastest, uses only Moshi for speech-to-speech
    - LLM_ENHANCED: Highest quality, uses external LLM for reasoning
    - HYBRID: Balanced, uses both Moshi and LLM in parallel
    - ADAPTIVE: Intelligent, automatically selects best mode based on context
    """

    MOSHI_ONLY = "moshi_only"
    LLM_ENHANCED = "llm_enhanced"
    HYBRID = "hybrid"
    ADAPTIVE = "adaptive"


class ConflictResolutionStrategy(str, Enum):
    """How conversation sync resolves a concurrent edit of the same turn."""

    VOICE_PRIORITY = "voice_priority"
    CONVERSATION_PRIORITY = "conversation_priority"
    TIMESTAMP_PRIORITY = "timestamp_priority"
    MERGE = "merge"


class SyncEventType(str, Enum):
    """Events emitted by conversation sync."""

    VOICE_MESSAGE_ADDED = "voice_message_added"
    VOICE_RESPONSE_ADDED = "voice_response_added"
    CONVERSATION_STATE_UPDATED = "conversation_state_updated"
    SYNC_CONFLICT_DETECTED = "sync_conflict_detected"
    SYNC_COMPLETED = "sync_completed"
