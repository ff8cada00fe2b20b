"""What a finished turn produced, and the spec's ``VoiceResponse`` made from it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coda.audio.encode import encode_wav
from coda.core.models import VoiceProcessingMode, VoiceResponse
from coda.modes import quality
from coda.modes.clock import TurnClock
from coda.modes.events import Transcribed, TurnFinished

_SUBTYPES = {16: "PCM_16", 24: "PCM_24", 32: "PCM_32"}


@dataclass
class TurnOutcome:
    """Everything a finished turn produced (the last item a turn yields)."""

    conversation_id: str
    mode: VoiceProcessingMode
    user_text: str
    reply_text: str
    audio: np.ndarray
    sample_rate: int
    processing_time_ms: float
    scores: dict[str, float]
    metadata: dict[str, Any] = field(default_factory=dict)


def build_outcome(
    conversation_id: str,
    selection: dict[str, Any],
    transcript: Transcribed,
    finished: TurnFinished,
    pieces: list[np.ndarray],
    clock: TurnClock,
    rate: int,
    llm: dict[str, Any],
) -> TurnOutcome:
    """The outcome of a finished turn: its audio, timings, quality scores and metadata."""
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    timings = {k: round(v, 1) for k, v in finished.timings_ms.items()}
    timings.setdefault("asr", 0.0)
    timings["total"] = round(clock.elapsed_ms(), 1)
    scores = {
        "confidence_score": transcript.confidence,
        "relevance_score": quality.relevance(transcript.text, finished.reply_text),
        "coherence_score": quality.coherence(finished.reply_text, finished.finish_reason),
        "audio_quality_score": quality.audio_quality(audio, rate),
    }
    metadata = {
        "transcript": transcript.text,
        "transcript_confidence": transcript.confidence,
        "transcript_source": transcript.source,
        **finished.details,
        "timings_ms": timings,
        "mode_selection": selection,
        "llm": {**llm, "finish_reason": finished.finish_reason},
        "audio": {"sample_rate": rate, "duration_seconds": len(audio) / rate},
    }
    return TurnOutcome(
        conversation_id=conversation_id,
        mode=VoiceProcessingMode(selection["chosen"]),
        user_text=transcript.text,
        reply_text=finished.reply_text,
        audio=audio,
        sample_rate=rate,
        processing_time_ms=timings["total"],
        scores=scores,
        metadata=metadata,
    )


def to_response(outcome: TurnOutcome, bit_depth: int) -> VoiceResponse:
    """The ``VoiceResponse`` for a finished turn (WAV audio at ``bit_depth`` bits)."""
    subtype = _SUBTYPES.get(bit_depth, "PCM_16")
    audio = encode_wav(outcome.audio, outcome.sample_rate, subtype) if outcome.audio.size else None
    return VoiceResponse(
        conversation_id=outcome.conversation_id,
        text_content=outcome.reply_text,
        audio_data=audio,
        timestamp=time.time(),
        processing_time=outcome.processing_time_ms,
        processing_mode=outcome.mode,
        metadata=outcome.metadata,
        **outcome.scores,
    )
