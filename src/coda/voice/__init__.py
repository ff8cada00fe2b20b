"""The public API of Coda Voice (the names of ``shared/spec/voice-api.md``).

Example:
    >>> from coda.voice import VoiceManager, VoiceMessage
"""

from coda.core.config import (
    AudioConfig,
    LLMConfig,
    MoshiConfig,
    StreamingConfig,
    STTConfig,
    TTSConfig,
    VoiceConfig,
    VoiceProcessingConfig,
)
from coda.core.errors import (
    AudioProcessingError,
    ConfigurationError,
    ConversationError,
    LLMIntegrationError,
    MoshiConnectionError,
    StoreUnavailableError,
    SyncError,
    TimeoutError,
    ValidationError,
    VoiceInitializationError,
    VoiceProcessingError,
    VoiceTimeoutError,
    VRAMAllocationError,
)
from coda.core.integration_config import (
    VoiceConversationSyncConfig,
    VoiceLLMManagerConfig,
    VoiceMemoryConfig,
    VoicePersonalityConfig,
    VoiceToolsConfig,
)
from coda.core.interfaces import VoiceManagerInterface
from coda.core.models import (
    ConflictResolutionStrategy,
    ConversationState,
    ConversationTurn,
    LLMMessage,
    SyncEventType,
    ToolResult,
    VoiceMessage,
    VoiceProcessingMode,
    VoiceResponse,
    VoiceStreamChunk,
)
from coda.voice.integrations import (
    VoiceConversationSync,
    VoiceLLMManagerIntegration,
    VoiceMemoryIntegration,
    VoicePersonalityIntegration,
    VoiceToolsIntegration,
)
from coda.voice.manager import VoiceManager
from coda.voice.processor import VoiceProcessor

__all__ = [
    "AudioConfig",
    "AudioProcessingError",
    "ConfigurationError",
    "ConflictResolutionStrategy",
    "ConversationError",
    "ConversationState",
    "ConversationTurn",
    "LLMConfig",
    "LLMIntegrationError",
    "LLMMessage",
    "MoshiConfig",
    "MoshiConnectionError",
    "STTConfig",
    "StreamingConfig",
    "StoreUnavailableError",
    "SyncError",
    "SyncEventType",
    "TTSConfig",
    "TimeoutError",
    "ToolResult",
    "VRAMAllocationError",
    "ValidationError",
    "VoiceConfig",
    "VoiceConversationSync",
    "VoiceConversationSyncConfig",
    "VoiceInitializationError",
    "VoiceLLMManagerConfig",
    "VoiceLLMManagerIntegration",
    "VoiceManager",
    "VoiceManagerInterface",
    "VoiceMemoryConfig",
    "VoiceMemoryIntegration",
    "VoiceMessage",
    "VoicePersonalityConfig",
    "VoicePersonalityIntegration",
    "VoiceProcessingConfig",
    "VoiceProcessingError",
    "VoiceProcessingMode",
    "VoiceProcessor",
    "VoiceResponse",
    "VoiceStreamChunk",
    "VoiceTimeoutError",
    "VoiceToolsConfig",
    "VoiceToolsIntegration",
]
