"""Encode float samples as WAV bytes."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from coda.core.errors import AudioProcessingError


def encode_wav(samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> bytes:
    """Mono float32 samples in [-1, 1] as a WAV file (16-bit PCM by default).

    Raises:
        AudioProcessingError: If ``samples`` are not floating point: integer PCM
            would be clipped to its sign, garbled yet still half intelligible.
    """
    if not np.issubdtype(samples.dtype, np.floating):
        raise AudioProcessingError(
            f"encode_wav takes float samples in [-1, 1], not {samples.dtype} "
            "(coda.audio.frames.to_float converts 16-bit PCM)"
        )
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), sample_rate, format="WAV", subtype=subtype)
    return buffer.getvalue()
