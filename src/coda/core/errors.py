"""The spec's exception hierarchy: every error Coda raises derives from VoiceProcessingError."""

from __future__ import annotations

import builtins


class VoiceProcessingError(Exception):
    """Base exception for voice processing errors."""


class AudioProcessingError(VoiceProcessingError):
    """Audio processing related errors (a failure after the input was validated)."""


class ValidationError(VoiceProcessingError, ValueError):
    """The caller's input is invalid: bad audio, a bad id, an out-of-range value."""


class ConfigurationError(VoiceProcessingError, ValueError):
    """A configuration value is invalid or inconsistent."""


class ConversationError(VoiceProcessingError):
    """A conversation is unknown, already exists, or has ended."""


class VoiceInitializationError(VoiceProcessingError):
    """A component failed to initialize (model missing, provider unreachable)."""


class VRAMAllocationError(VoiceProcessingError):
    """A GPU memory reservation does not fit the configured budget."""


class MoshiConnectionError(VoiceProcessingError):
    """Moshi connection related errors."""


class LLMIntegrationError(VoiceProcessingError):
    """LLM integration related errors."""


class SyncError(VoiceProcessingError):
    """Conversation synchronization errors."""


class StoreUnavailableError(VoiceProcessingError):
    """The store (a shared database) cannot be reached just now; retrying is safe."""


class TimeoutError(VoiceProcessingError, builtins.TimeoutError):  # noqa: A001
    """Processing exceeded its time budget."""


VoiceTimeoutError = TimeoutError
