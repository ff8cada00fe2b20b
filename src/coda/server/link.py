"""One live websocket under the server's limits, whichever protocol it speaks.

- A message over its size limit closes the socket (1009); uvicorn refuses bigger
  ones before they are read (``ws_max_size``), uncompressed.
- A client silent for ``idle_timeout_seconds`` is closed (1008): it frees its slot.
- A client that stops reading is closed once a send has waited
  ``send_timeout_seconds`` (1008), so what the session produces meanwhile is
  bounded by what it makes in that time.
- Audio may come in bursts (``audio_burst_seconds``), then no faster than
  ``max_audio_speed`` × real time: faster audio is read more slowly (the client's
  sends wait), and a client throttled for ``max_throttled_seconds`` in all is
  closed (1008).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from fastapi import WebSocket, WebSocketDisconnect

from coda.audio.frames import to_float
from coda.server import errors
from coda.server.frames import Closed
from coda.server.settings import ServerSettings


class AudioPace:
    """How fast a client may send audio.

    Args:
        speed: Audio seconds per second allowed once the burst is spent.
        burst_seconds: Audio that may come at once.
        max_throttled_seconds: Throttling a client may cause in all before it is closed.
        now: A monotonic clock, in seconds.
        sleep: Waits (injected with the clock in tests).
    """

    def __init__(
        self,
        speed: float,
        burst_seconds: float,
        max_throttled_seconds: float,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.speed = speed
        self.burst = burst_seconds
        self.max_throttled = max_throttled_seconds
        self.now = now
        self.sleep = sleep
        self.allowance = burst_seconds
        self.throttled = 0.0
        self._last = now()

    async def take(self, seconds: float) -> None:
        """Account for ``seconds`` of audio just received; wait if it came too fast.

        Raises:
            Closed: 1008 once the client has been throttled for too long.
        """
        now = self.now()
        self.allowance = min(self.burst, self.allowance + (now - self._last) * self.speed)
        self._last = now
        self.allowance -= seconds
        if self.allowance >= 0:
            return
        wait = -self.allowance / self.speed
        self.throttled += wait
        if self.throttled > self.max_throttled:
            raise Closed(
                errors.POLICY, f"audio came faster than {self.speed:g}x real time for too long"
            )
        await self.sleep(wait)


class Link:
    """A live websocket with the server's limits.

    Args:
        socket: The accepted websocket.
        settings: The limits.
        max_message: Its largest message, in bytes.
    """

    def __init__(self, socket: WebSocket, settings: ServerSettings, max_message: int) -> None:
        self.socket = socket
        self.max_message = max_message
        self.idle = settings.idle_timeout_seconds
        self.send_timeout = settings.send_timeout_seconds
        self.pace = AudioPace(
            settings.max_audio_speed, settings.audio_burst_seconds, settings.max_throttled_seconds
        )

    async def receive(self) -> bytes | str:
        """The next message's bytes or text.

        Raises:
            Closed: When the client was idle too long, or the message is too big.
            WebSocketDisconnect: When the client has gone.
        """
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
        # that comes as the awaited call completes, and the session could not end.
        try:
            async with asyncio.timeout(self.idle):
                message = await self.socket.receive()
        except TimeoutError:
            raise Closed(errors.POLICY, f"idle for {self.idle:g} s") from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        data, text = message.get("bytes"), message.get("text")
        payload: bytes | str = data if data is not None else (text or "")
        if len(payload) > self.max_message:
            raise Closed(errors.TOO_BIG, f"message over {self.max_message} bytes")
        return payload

    async def audio_or_command(self, rate: int) -> np.ndarray | dict[str, Any]:
        """The next message: a PCM16 frame as float32 (paced), or a JSON command with a type.

        Raises:
            Closed: Besides ``receive``'s reasons, for an odd-length frame or text
                that is not a JSON object with a ``type``.
        """
        payload = await self.receive()
        if isinstance(payload, bytes):
            if len(payload) % 2:
                raise Closed(errors.BAD_DATA, "frames must be whole PCM16 samples")
            await self.pace.take(len(payload) / 2 / rate)
            return to_float(np.frombuffer(payload, "<i2"))
        try:
            command = json.loads(payload)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            command = None
        if not isinstance(command, dict) or not isinstance(command.get("type"), str):
            raise Closed(errors.BAD_DATA, "text messages must be JSON objects with a type")
        return command

    async def send(self, message: str | bytes) -> None:
        """Send a message, if the client takes it in time.

        Raises:
            Closed: 1008 when the client is not reading.
        """
        send = self.socket.send_text if isinstance(message, str) else self.socket.send_bytes
        try:
            async with asyncio.timeout(self.send_timeout):  # not wait_for: see ``receive``
                await send(message)  # type: ignore[arg-type]
        except TimeoutError:
            raise Closed(errors.POLICY, "the client is not reading") from None
        except RuntimeError:
            # uvicorn answers a client's close frame by itself; sending after that
            # raises RuntimeError instead of reporting the disconnect.
            raise WebSocketDisconnect(1006) from None

    async def send_json(self, message: dict[str, Any]) -> None:
        """Send a JSON message (see ``send``)."""
        await self.send(json.dumps(message, default=str))
