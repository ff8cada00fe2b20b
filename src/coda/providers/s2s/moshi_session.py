"""One open conversation with a Moshi server: Opus audio both ways, text pieces back."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import numpy as np
import sphn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, WebSocketException

from coda.core.errors import MoshiConnectionError
from coda.core.provider_config import MoshiConfig
from coda.deadline import LOOP_CLOCK, Clock, within
from coda.providers.s2s import moshi_protocol as protocol
from coda.providers.s2s.moshi_protocol import Control, Handshake, Kind


@dataclass(frozen=True)
class MoshiAudio:
    """Decoded reply audio (float32, 24 kHz)."""

    pcm: np.ndarray


@dataclass(frozen=True)
class MoshiText:
    """A piece of Moshi's inner monologue text."""

    text: str


@dataclass(frozen=True)
class MoshiControl:
    """A control message from the server."""

    action: Control | int


MoshiOutput = MoshiAudio | MoshiText | MoshiControl


@dataclass
class CodecTimes:
    """Client-side seconds spent per direction (for the benchmark)."""

    encode: float = 0.0
    send: float = 0.0
    decode: float = 0.0
    frames_sent: int = 0
    pages_received: int = 0


def session_url(config: MoshiConfig, server: str) -> str:
    """``server``'s chat URL with the sampling parameters that the Rust server reads.

    Raises:
        MoshiConnectionError: If the URL is not ws(s)://.
    """
    parts = urlsplit(server)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise MoshiConnectionError(f"not a websocket URL: {server!r}")
    query = urlencode(
        {
            "text_temperature": config.temperature_text,
            "text_topk": config.top_k_text,
            "audio_temperature": config.temperature,
            "audio_topk": config.top_k,
        }
    )
    return parts._replace(query=f"{parts.query}&{query}" if parts.query else query).geturl()


class MoshiSession:
    """A connected, handshaken session. Use ``open``; close with ``close``.

    ``send`` takes any amount of 24 kHz audio and sends whole 80 ms frames;
    ``receive`` returns Moshi's next output.
    """

    def __init__(
        self, ws: ClientConnection, handshake: Handshake, metadata: dict[str, Any], url: str
    ) -> None:
        self._ws = ws
        self.handshake = handshake
        self.metadata = metadata
        self.url = url
        self.times = CodecTimes()
        self._writer = sphn.OpusStreamWriter(protocol.SAMPLE_RATE)
        self._reader = sphn.OpusStreamReader(protocol.SAMPLE_RATE)
        self._pending = np.zeros(0, np.float32)
        self._closed = False
        self.on_close: Callable[[], None] | None = None
        """Called once when the session closes (a pool frees its server)."""

    @classmethod
    async def open(
        cls, config: MoshiConfig, server: str, clock: Clock = LOOP_CLOCK
    ) -> MoshiSession:
        """Connect to ``server`` and wait for the handshake.

        Args:
            config: Timeouts, sampling and keep-alive settings.
            server: The server's websocket URL.
            clock: What the connect and handshake timeouts are measured on.

        Raises:
            MoshiConnectionError: If the server is unreachable, refuses the socket,
                or sends no handshake within ``handshake_timeout_seconds`` (the
                Python server holds new sessions until the current one ends).
        """
        url = session_url(config, server)
        try:
            ws = await within(
                # A hung server must not hold up closing: abort after half a second.
                connect(
                    url,
                    max_size=None,
                    open_timeout=None,
                    # A server that stops answering pings is gone, even if its socket is not.
                    ping_interval=config.ping_interval_seconds,
                    ping_timeout=config.ping_interval_seconds,
                    close_timeout=0.5,
                ),
                config.connect_timeout_seconds,
                clock,
                # Connected just as the caller gave up: else the socket would hold the
                # server's only session until the collector closed it.
                discard=lambda ws: ws.close(),
            )
        except TimeoutError:
            raise MoshiConnectionError(
                f"Moshi server at {server} did not accept a connection within "
                f"{config.connect_timeout_seconds:g} s"
            ) from None
        except (OSError, WebSocketException) as exc:
            raise MoshiConnectionError(
                f"cannot connect to the Moshi server at {server}: {exc}"
            ) from exc
        try:
            handshake, metadata = await within(
                cls._await_handshake(ws), config.handshake_timeout_seconds, clock
            )
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await ws.close()
            if isinstance(exc, TimeoutError):
                raise MoshiConnectionError(
                    f"no handshake from the Moshi server at {server} within "
                    f"{config.handshake_timeout_seconds:g} s (busy with another session?)"
                ) from None
            raise
        return cls(ws, handshake, metadata, url)

    @staticmethod
    async def _await_handshake(ws: ClientConnection) -> tuple[Handshake, dict[str, Any]]:
        metadata: dict[str, Any] = {}
        while True:
            message = await _recv(ws)
            kind = protocol.kind_of(message)
            if kind is Kind.METADATA:
                metadata = protocol.metadata_of(message)
            elif kind is Kind.ERROR:
                raise MoshiConnectionError(f"Moshi server error: {protocol.text_of(message)}")
            elif kind is Kind.HANDSHAKE:
                return protocol.parse_handshake(message), metadata

    async def send(self, pcm: np.ndarray) -> int:
        """Send 24 kHz float audio; whole 80 ms frames go now, the rest waits.

        Returns:
            The number of frames sent.

        Raises:
            MoshiConnectionError: If the connection is gone.
        """
        pending = np.concatenate([self._pending, np.asarray(pcm, np.float32)])
        frames = len(pending) // protocol.FRAME_SAMPLES
        for index in range(frames):
            frame = pending[index * protocol.FRAME_SAMPLES : (index + 1) * protocol.FRAME_SAMPLES]
            started = time.perf_counter()
            pages = self._writer.append_pcm(frame)
            encoded = time.perf_counter()
            self.times.encode += encoded - started
            if len(pages):
                try:
                    await self._ws.send(protocol.audio_message(pages))
                except ConnectionClosed as exc:
                    raise MoshiConnectionError(
                        f"Moshi connection lost while sending: {exc}"
                    ) from exc
            self.times.send += time.perf_counter() - encoded
            self.times.frames_sent += 1
        self._pending = pending[frames * protocol.FRAME_SAMPLES :]
        return frames

    async def receive(self) -> MoshiOutput | None:
        """Moshi's next output, or None once the server has closed the session cleanly.

        Raises:
            MoshiConnectionError: If the connection drops or the server reports an error.
        """
        while True:
            try:
                message = await _recv(self._ws)
            except ConnectionClosedOK:
                return None
            kind = protocol.kind_of(message)
            if kind is Kind.AUDIO:
                started = time.perf_counter()
                pcm = self._reader.append_bytes(message[1:])
                self.times.decode += time.perf_counter() - started
                self.times.pages_received += 1
                if len(pcm):
                    return MoshiAudio(np.asarray(pcm, np.float32))
            elif kind is Kind.TEXT:
                return MoshiText(protocol.text_of(message))
            elif kind is Kind.CONTROL and len(message) > 1:
                action = message[1]
                return MoshiControl(
                    Control(action) if action in Control._value2member_map_ else action
                )
            elif kind is Kind.ERROR:
                raise MoshiConnectionError(f"Moshi server error: {protocol.text_of(message)}")
            # Handshake repeats, metadata and pings carry nothing for the conversation.

    async def close(self) -> None:
        """Close the socket (the server then frees its single session). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            with contextlib.suppress(Exception):
                await self._ws.close()
        finally:
            if self.on_close is not None:
                self.on_close()


async def _recv(ws: ClientConnection) -> bytes:
    try:
        message = await ws.recv()
    except ConnectionClosedOK:
        raise
    except ConnectionClosed as exc:
        raise MoshiConnectionError(f"Moshi connection dropped: {exc}") from exc
    return message.encode() if isinstance(message, str) else bytes(message)
