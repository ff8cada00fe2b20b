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


CLIENT_ERRORS = (ValidationError, AudioProcessingError, ConversationError, ConfigurationError)
"""Errors about what the caller sent or asked: their messages are written for the caller."""


def client_message(error: BaseException) -> str:
    """What a client may be told: a client error's own words, else a generic line.

    Server-side failures (a model, a remote server, the store, a timeout) are said
    by their kind only; their details stay in the logs.
    """
    if isinstance(error, CLIENT_ERRORS):
        return str(error)
    if isinstance(error, StoreUnavailableError):
        return "the store cannot be reached just now; try again"
    if isinstance(error, VoiceProcessingError):
        return "the voice engine could not answer"
    return "internal error"
