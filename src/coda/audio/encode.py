"""Encode float samples as WAV bytes."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf


def encode_wav(samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> bytes:
    """Mono float32 samples in [-1, 1] as a WAV file (16-bit PCM by default)."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), sample_rate, format="WAV", subtype=subtype)
    return buffer.getvalue()
