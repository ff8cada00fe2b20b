"""What crosses the live websocket: PCM16 frames, JSON control messages, closing."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from fastapi import WebSocket, WebSocketDisconnect

from coda.audio.frames import to_float, to_int16
from coda.server import errors

CONVERSATION_ID = r"^[\w.:-]{1,128}$"
"""What a conversation id may look like in the API."""


class Closed(Exception):
    """Close the socket with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def pcm16(samples: np.ndarray) -> bytes:
    """Float audio as mono PCM16 little-endian."""
    return to_int16(samples).astype("<i2").tobytes()


async def read_pcm16(socket: WebSocket, max_frame: int) -> np.ndarray | dict[str, Any]:
    """The next client message: a PCM16 frame as float32, or a JSON command with a type.

    Raises:
        Closed: For a message over ``max_frame`` bytes, an odd-length frame, or
            text that is not a JSON object with a ``type``.
        WebSocketDisconnect: When the client has gone.
    """
    message = await socket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    data, text = message.get("bytes"), message.get("text")
    payload = data if data is not None else (text or "")
    if len(payload) > max_frame:
        raise Closed(errors.TOO_BIG, f"message over {max_frame} bytes")
    if data is not None:
        if len(data) % 2:
            raise Closed(errors.BAD_DATA, "frames must be whole PCM16 samples")
        return to_float(np.frombuffer(data, "<i2"))
    try:
        command = json.loads(payload)
    except ValueError:
        command = None
    if not isinstance(command, dict) or not isinstance(command.get("type"), str):
        raise Closed(errors.BAD_DATA, "text messages must be JSON objects with a type")
    return command
