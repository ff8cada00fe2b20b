"""Moshi's websocket protocol: one kind byte, then the payload.

Kinds: 0 handshake, 1 audio (Ogg/Opus pages, 24 kHz mono), 2 text (UTF-8), 3 control,
4 metadata (JSON), 5 error (UTF-8), 6 ping. The Python server's handshake is the
single byte 0x00; the Rust server's carries two little-endian u32s (protocol and
model version) and may be preceded by a metadata message.
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass
from typing import Any

from coda.core.errors import MoshiConnectionError

SAMPLE_RATE = 24000
FRAME_SAMPLES = 1920
"""One Moshi step: 80 ms at 24 kHz."""


class Kind(enum.IntEnum):
    """The first byte of every message."""

    HANDSHAKE = 0
    AUDIO = 1
    TEXT = 2
    CONTROL = 3
    METADATA = 4
    ERROR = 5
    PING = 6


class Control(enum.IntEnum):
    """Control payloads (Rust server)."""

    START = 0
    END_TURN = 1
    PAUSE = 2
    RESTART = 3


@dataclass(frozen=True)
class Handshake:
    """The server is ready for this session.

    Attributes:
        protocol_version: Version of the protocol (None for the 1-byte form).
        model_version: Version of the model (None for the 1-byte form).
    """

    protocol_version: int | None = None
    model_version: int | None = None


def parse_handshake(message: bytes) -> Handshake:
    """Read a handshake in either form.

    Raises:
        MoshiConnectionError: If ``message`` is not a handshake.
    """
    if not message or message[0] != Kind.HANDSHAKE:
        kind = message[0] if message else None
        raise MoshiConnectionError(f"expected Moshi's handshake, got message kind {kind}")
    if len(message) == 1:
        return Handshake()
    if len(message) != 9:
        raise MoshiConnectionError(f"malformed Moshi handshake of {len(message)} bytes")
    protocol, model = struct.unpack("<II", message[1:])
    return Handshake(protocol, model)


def handshake_bytes(protocol_version: int = 0, model_version: int = 0) -> bytes:
    """A 9-byte handshake, as the Rust server sends it."""
    return bytes([Kind.HANDSHAKE]) + struct.pack("<II", protocol_version, model_version)


def audio_message(ogg_pages: bytes) -> bytes:
    """Client → server audio."""
    return bytes([Kind.AUDIO]) + ogg_pages


def kind_of(message: bytes) -> Kind:
    """The kind of a server message.

    Raises:
        MoshiConnectionError: For an empty message or an unknown kind.
    """
    if not message:
        raise MoshiConnectionError("empty message from the Moshi server")
    try:
        return Kind(message[0])
    except ValueError:
        raise MoshiConnectionError(f"unknown Moshi message kind {message[0]}") from None


def text_of(message: bytes) -> str:
    """The UTF-8 payload of a text or error message."""
    return message[1:].decode("utf-8", errors="replace")


def metadata_of(message: bytes) -> dict[str, Any]:
    """The JSON payload of a metadata message ({} if it is not a JSON object)."""
    try:
        value = json.loads(message[1:])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
