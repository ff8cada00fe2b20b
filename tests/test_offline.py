"""Nothing phones home: loading the models and answering a turn connect only to loopback."""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import replace
from typing import Any

from coda.voice import VoiceConfig, VoiceManager, VoiceMessage

_connections: list[Any] = []
_recording = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _recording and event in ("socket.connect", "socket.getaddrinfo"):
        _connections.append((event, args[1] if event == "socket.connect" else args[0]))


sys.addaudithook(_audit)


def _is_loopback(address: Any) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if host in ("localhost", None) or isinstance(host, bytes) and host == b"localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def test_a_turn_makes_no_outbound_connection(base_config: VoiceConfig, speak: Any) -> None:
    global _recording
    # The development config: "auto" probes Ollama at its default loopback address.
    config = replace(base_config, llm=None)
    question = await speak("What is the capital of France?")
    _recording = True
    try:
        manager = VoiceManager(config)
        await manager.initialize()
        try:
            reply = await manager.process_voice_message(VoiceMessage("offline", question))
        finally:
            await manager.cleanup()
    finally:
        _recording = False
    assert "paris" in reply.text_content.lower()
    assert _connections, "the Ollama probe should have been seen"
    outside = [c for c in _connections if not _is_loopback(c[1])]
    assert outside == []
