"""``VoiceStreamChunk``s: the one mapping of a turn's events for ``process_streaming``."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from coda.audio.encode import encode_wav
from coda.core.config import VoiceConfig
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
from coda.turn.outcome import to_response


def _wavs(samples: np.ndarray, rate: int, size: int) -> list[bytes]:
    """``samples`` as WAV chunks of at most ``size`` samples (0: one chunk)."""
    step = size or max(1, len(samples))
    return [encode_wav(samples[i : i + step], rate) for i in range(0, len(samples), step)]


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
        "audio" (WAV of a piece of the reply, with the words it says), "final".
        """
        if isinstance(event, TurnOutcome):
            response = await asyncio.to_thread(to_response, event, self.config.audio.bit_depth)
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
            wavs = await asyncio.to_thread(
                _wavs,
                event.audio.samples,
                event.audio.sample_rate,
                self.config.stream_chunk_samples,
            )
            return [self._chunk("audio", event.text, audio_data=wav) for wav in wavs]
        return []
