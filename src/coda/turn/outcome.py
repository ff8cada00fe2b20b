"""Finish: a turn's outcome with its quality scores, and the spec's ``VoiceResponse``.

Both do numpy work (scoring the audio, encoding WAV), so callers run them on a
worker thread, never on the event loop.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from coda.audio.encode import encode_wav
from coda.core.enums import VoiceProcessingMode
from coda.core.models import VoiceResponse
from coda.modes import quality
from coda.turn.context import TurnContext
from coda.turn.events import Transcribed, TurnFinished, TurnOutcome

_SUBTYPES = {16: "PCM_16", 24: "PCM_24", 32: "PCM_32"}


def build_outcome(
    turn: TurnContext,
    selection: dict[str, Any],
    transcript: Transcribed,
    finished: TurnFinished,
    pieces: list[np.ndarray],
    total_ms: float,
    rate: int,
    llm: dict[str, Any],
) -> TurnOutcome:
    """The outcome of a finished turn: its audio, timings, quality scores and metadata."""
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    timings = {k: round(v, 1) for k, v in finished.timings_ms.items()}
    timings.setdefault("asr", 0.0)
    timings["total"] = round(total_ms, 1)
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
        "message_id": turn.message_id,
        "speaker": turn.speaker,
    }
    return TurnOutcome(
        turn=turn,
        mode=VoiceProcessingMode(selection["chosen"]),
        user_text=transcript.text,
        reply_text=finished.reply_text,
        audio=audio,
        sample_rate=rate,
        processing_time_ms=timings["total"],
        scores=scores,
        metadata=metadata,
    )


def partial_outcome(
    turn: TurnContext, user_text: str, spoken: str, mode: VoiceProcessingMode, rate: int
) -> TurnOutcome:
    """A turn cut off before its reply was complete: what was spoken of it is kept."""
    return TurnOutcome(
        turn=turn,
        mode=mode,
        user_text=user_text,
        reply_text=spoken,
        audio=np.zeros(0, np.float32),
        sample_rate=rate,
        processing_time_ms=0.0,
        scores={},
        metadata={"transcript": user_text, "message_id": turn.message_id},
        interrupted=True,
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
