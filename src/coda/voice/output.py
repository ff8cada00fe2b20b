"""Reply audio as the caller asked for it: ``AudioConfig`` format, bit depth and channels.

The pipeline makes mono float samples at ``AudioConfig.sample_rate``; this is
the one place they become the bytes a ``VoiceResponse`` or ``VoiceStreamChunk``
carries. Both encoders are libsndfile's (WAV, FLAC, and MP3 through LAME).
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import numpy as np
import soundfile as sf

from coda.core.config import AudioConfig
from coda.core.models import VoiceResponse
from coda.turn.events import TurnOutcome
from coda.turn.outcome import to_response

_CONTAINERS = {"wav": "WAV", "flac": "FLAC", "mp3": "MP3"}
_PCM = {16: "PCM_16", 24: "PCM_24", 32: "PCM_32"}


def subtype_of(audio: AudioConfig) -> str:
    """The sample encoding (libsndfile) for ``audio``: PCM of its bit depth, or MPEG layer III."""
    return "MPEG_LAYER_III" if audio.format == "mp3" else _PCM[audio.bit_depth]


def encode_reply(samples: np.ndarray, rate: int, audio: AudioConfig) -> bytes:
    """Mono float samples in [-1, 1] at ``rate`` as a file in ``audio``'s format.

    With two channels the (mono) voice is in both, so any player plays it centred.
    """
    mono = np.clip(np.asarray(samples, np.float32), -1.0, 1.0)
    frames = np.repeat(mono[:, None], audio.channels, axis=1) if audio.channels > 1 else mono
    buffer = io.BytesIO()
    sf.write(buffer, frames, rate, format=_CONTAINERS[audio.format], subtype=subtype_of(audio))
    return buffer.getvalue()


def describe(audio: AudioConfig, rate: int) -> dict[str, Any]:
    """What the reply audio is, for metadata (``bit_depth`` None for MP3)."""
    depth = None if audio.format == "mp3" else audio.bit_depth
    return {"format": audio.format, "sample_rate": rate, "channels": audio.channels,
            "bit_depth": depth}  # fmt: skip


def response_of(outcome: TurnOutcome, audio: AudioConfig) -> VoiceResponse:
    """The ``VoiceResponse`` of a finished turn, its audio encoded as ``audio`` says.

    Encoding is numpy and libsndfile work: callers run this on a worker thread.
    """
    silent = dataclasses.replace(outcome, audio=np.zeros(0, np.float32))
    response = to_response(silent, audio.bit_depth)  # scores and metadata; audio below
    if outcome.audio.size:
        response.audio_data = encode_reply(outcome.audio, outcome.sample_rate, audio)
    described = {**outcome.metadata.get("audio", {}), **describe(audio, outcome.sample_rate)}
    response.metadata = {**response.metadata, "audio": described}
    return response
