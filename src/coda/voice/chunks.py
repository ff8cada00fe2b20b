"""``VoiceStreamChunk``s: the one mapping of a turn's events for ``process_streaming``."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from coda.core.config import AudioConfig, VoiceConfig
from coda.core.models import VoiceStreamChunk
from coda.turn.events import (
    MemoryRecalled,
    SpokenPiece,
    TextDelta,
    ToolCalled,
    Transcribed,
    TurnEvent,
    TurnOutcome,
)
from coda.voice.output import encode_reply, response_of


def _pieces(samples: np.ndarray, rate: int, size: int, audio: AudioConfig) -> list[bytes]:
    """``samples`` as files (``audio``'s format) of at most ``size`` samples (0: one)."""
    step = size or max(1, len(samples))
    return [encode_reply(samples[i : i + step], rate, audio) for i in range(0, len(samples), step)]


class StreamChunker:
    """Numbers the chunks of one streamed turn and times them from its start."""

    def __init__(self, conversation_id: str, config: VoiceConfig) -> None:
        self.conversation_id = conversation_id
        self.config = config
        self.sequence = 0
        self._started = time.perf_counter()

    def _chunk(
        self,
        kind: str,
        text: str | None = None,
        *,
        audio_data: bytes | None = None,
        is_final: bool = False,
        elapsed_ms: float | None = None,
        metadata: dict[str, object] | None = None,
    ) -> VoiceStreamChunk:
        if elapsed_ms is None:
            elapsed_ms = (time.perf_counter() - self._started) * 1000.0
        chunk = VoiceStreamChunk(
            self.conversation_id,
            self.sequence,
            kind,
            text,
            audio_data,
            is_final,
            elapsed_ms=elapsed_ms,
            metadata=dict(metadata or {}),
        )
        self.sequence += 1
        return chunk

    async def of(self, event: TurnEvent) -> list[VoiceStreamChunk]:
        """The chunks for ``event`` (none for events a stream does not carry).

        Kinds: "transcript", "memory" (metadata: the memories recalled), "tool"
        (metadata: name, arguments, result or error), "text" (a reply delta),
        "audio" (a piece of the reply in ``AudioConfig``'s format, with the words it
        says), "final".
        """
        if isinstance(event, TurnOutcome):
            response = await asyncio.to_thread(response_of, event, self.config.audio)
            return [
                self._chunk(
                    "final",
                    response.text_content,
                    audio_data=None if self.config.enable_streaming else response.audio_data,
                    is_final=True,
                    elapsed_ms=event.processing_time_ms,
                    metadata={**response.metadata, **response.get_quality_metrics()},
                )
            ]
        if not self.config.enable_streaming:
            return []
        if isinstance(event, Transcribed):
            return [self._chunk("transcript", event.text)]
        if isinstance(event, MemoryRecalled):
            return [self._chunk("memory", metadata={"memories": list(event.memories)})]
        if isinstance(event, ToolCalled):
            return [self._chunk("tool", event.name, metadata=event.as_dict())]
        if isinstance(event, TextDelta):
            return [self._chunk("text", event.text)]
        if isinstance(event, SpokenPiece):
            pieces = await asyncio.to_thread(
                _pieces,
                event.audio.samples,
                event.audio.sample_rate,
                self.config.stream_chunk_samples,
                self.config.audio,
            )
            return [self._chunk("audio", event.text, audio_data=piece) for piece in pieces]
        return []
