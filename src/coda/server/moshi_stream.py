"""``mode=moshi_only`` on the live websocket: the call is bridged to Moshi both ways.

Moshi is full duplex by itself (it listens while it speaks), so no endpointing
or barge-in runs here: microphone frames go to Moshi as they come, and Moshi's
voice and text come back as ``audio`` (+ PCM16) and ``text`` messages. A dropped
Moshi connection is retried with backoff (a ``reconnected`` message says so);
if every retry fails the socket closes with 1011.
"""

from __future__ import annotations

import logging

import numpy as np

from coda.audio.frames import pcm16
from coda.core.errors import MoshiConnectionError
from coda.core.provider_config import MoshiConfig
from coda.providers.s2s import moshi_protocol
from coda.providers.s2s.moshi_live import MoshiLiveBridge, Reconnected
from coda.providers.s2s.moshi_pool import MoshiPool
from coda.providers.s2s.moshi_session import MoshiAudio, MoshiText
from coda.server import errors
from coda.server.frames import Closed
from coda.server.link import Link

log = logging.getLogger(__name__)
OUTPUT_RATE = moshi_protocol.SAMPLE_RATE
"""Moshi speaks at 24 kHz."""


async def open_bridge(config: MoshiConfig, pool: MoshiPool | None, rate: int) -> MoshiLiveBridge:
    """Connect to a free Moshi server of the pool for this call.

    Raises:
        Closed: If no Moshi server is configured, or none is free and reachable.
    """
    if pool is None:
        raise Closed(errors.POLICY, "moshi_only needs a Moshi server (moshi_url)")
    bridge = MoshiLiveBridge(config, rate, pool)
    try:
        await bridge.open()
    except MoshiConnectionError as exc:
        log.warning("no Moshi server for a live call: %s", exc)
        raise Closed(errors.TRY_AGAIN, "no Moshi server is free just now; try again") from None
    return bridge


async def read(link: Link, bridge: MoshiLiveBridge, rate: int) -> None:
    """Microphone frames to Moshi; ``played`` reports need no bookkeeping here."""
    while True:
        frame = await link.audio_or_command(rate)
        if isinstance(frame, np.ndarray):
            await bridge.send(frame)
            continue
        kind = frame.get("type")
        if kind == "end":
            raise Closed(1000, "ended by the client")
        if kind != "played":
            raise Closed(errors.BAD_DATA, f"unknown message type {kind!r}")


async def write(link: Link, bridge: MoshiLiveBridge) -> None:
    """Moshi's voice and text to the client, as the protocol's messages."""
    seq = 0
    try:
        async for event in bridge.events():
            if isinstance(event, MoshiAudio):
                header = {"type": "audio", "seq": seq, "samples": len(event.pcm), "text": ""}
                await link.send_json(header)
                await link.send(pcm16(event.pcm))
                seq += 1
            elif isinstance(event, MoshiText):
                await link.send_json({"type": "text", "delta": event.text})
            elif isinstance(event, Reconnected):
                message = {"type": "reconnected", "attempts": event.attempts}
                await link.send_json(message)
    except MoshiConnectionError as exc:
        log.warning("a live call lost Moshi: %s", exc)
        raise Closed(errors.SERVER_ERROR, "the connection to Moshi was lost") from None
