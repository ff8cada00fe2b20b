"""What a Realtime client sends (audio, content, tool output); what the next response answers."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from coda.core.models import ToolResult
from coda.integrations.tools import results_context
from coda.server.realtime.settings import RealtimeError


@dataclass
class Pending:
    """What the next ``response.create`` answers.

    Words typed, or spoken and committed; with a client tool's output, when it
    answers the call made for them.
    """

    item_id: str
    text: str | None = None
    pcm: bytes = b""
    context: str | None = None


def tool_result(name: str, output: str) -> str:
    """A client tool's output as context for the answer, worded as Coda's own tools' are."""
    try:
        value = json.loads(output)
    except ValueError:
        value = None
    result = value if isinstance(value, dict) else {"text": output}
    return results_context([ToolResult(name, {}, True, result=result)])


def pcm_of(value: Any, where: str) -> bytes:
    """Base64 PCM16 as bytes."""
    try:
        pcm = base64.b64decode(value, validate=True) if isinstance(value, str) else None
    except (binascii.Error, ValueError):
        pcm = None
    if pcm is None or len(pcm) % 2:
        raise RealtimeError(f"{where} must be base64 PCM16 (an even number of bytes)", param=where)
    return pcm


def message_content(content: Any) -> tuple[str, bytes]:
    """A message's text and audio (PCM16 at 24 kHz)."""
    if not isinstance(content, list) or not content:
        raise RealtimeError("a message has a list of content parts", param="item.content")
    texts, pcm = [], b""
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "text"):
            texts.append(str(part.get("text", "")))
        elif kind == "input_audio":
            pcm += pcm_of(part.get("audio"), "item.content.audio")
        else:
            raise RealtimeError(f"content type {kind!r} is not supported", param="item.content")
    text = " ".join(t.strip() for t in texts if t.strip())
    if not text and not pcm:
        raise RealtimeError("the message says nothing", param="item.content")
    return text, pcm
