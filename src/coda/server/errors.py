"""Coda's typed errors as HTTP statuses and websocket close codes, without internals."""

from __future__ import annotations

from coda.core.errors import (
    AudioProcessingError,
    ConfigurationError,
    ConversationError,
    LLMIntegrationError,
    MoshiConnectionError,
    StoreUnavailableError,
    TimeoutError,
    ValidationError,
    VoiceProcessingError,
    client_message,
)

# Websocket close codes (RFC 6455).
POLICY = 1008
"""Bad or missing key, rate or session limits, a forbidden origin."""
TOO_BIG = 1009
"""A message over ``max_frame_bytes``."""
BAD_DATA = 1003
"""A frame that is not PCM16, or a text message that is not the protocol's JSON."""
SERVER_ERROR = 1011
"""Something failed inside the server."""
TRY_AGAIN = 1013
"""The server is at its session limit."""

_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (ValidationError, 422),
    (AudioProcessingError, 422),
    (ConversationError, 409),
    (ConfigurationError, 400),
    (TimeoutError, 504),
    (MoshiConnectionError, 502),
    (LLMIntegrationError, 502),
    (StoreUnavailableError, 503),
)


def status_of(error: VoiceProcessingError) -> int:
    """The HTTP status for one of Coda's errors (500 for any other)."""
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


def public_message(error: Exception) -> str:
    """What a client may see: a client error's own message; nothing internal."""
    return client_message(error)
