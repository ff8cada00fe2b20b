"""Decode and validate audio bytes into float32 mono at the engine's rate.

Decoding goes through libsndfile (WAV, FLAC, MP3, OGG). The header is read
first and the declared duration checked before any sample is decoded, so a
hostile header cannot make Coda allocate more than the configured maximum.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from coda.core.errors import ValidationError

DEFAULT_MAX_SECONDS = 30.0
DEFAULT_MIN_SECONDS = 0.1
DEFAULT_SILENCE_PEAK = 1e-3


@dataclass(frozen=True)
class AudioInfo:
    """What the header of an audio file declares."""

    format: str
    subtype: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration_seconds(self) -> float:
        """Declared duration in seconds."""
        return self.frames / self.sample_rate

    def as_dict(self) -> dict[str, Any]:
        """The info as a plain dictionary (``VoiceMessage.get_audio_metadata``)."""
        return {
            "format": self.format,
            "subtype": self.subtype,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "frames": self.frames,
            "duration_seconds": self.duration_seconds,
        }


@dataclass(frozen=True)
class DecodedAudio:
    """Mono float32 samples in [-1, 1] at ``sample_rate``, and where they came from."""

    samples: np.ndarray
    sample_rate: int
    info: AudioInfo

    @property
    def duration_seconds(self) -> float:
        """Duration of the decoded samples in seconds."""
        return len(self.samples) / self.sample_rate


def probe_audio(data: bytes, max_seconds: float | None = None) -> AudioInfo:
    """Read and check the header of ``data``.

    Args:
        data: The encoded audio.
        max_seconds: Longest accepted duration (None: 30 s).

    Raises:
        ValidationError: If the bytes are empty, not audio, truncated, or too long.
    """
    if not data:
        raise ValidationError("audio is empty (0 bytes)")
    if data[:4] == b"RIFF" and len(data) < 44:
        raise ValidationError(f"WAV header is truncated: {len(data)} bytes, a header needs 44")
    try:
        raw = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise ValidationError(
            f"audio could not be read as WAV, FLAC, MP3 or OGG ({len(data)} bytes): {exc}"
        ) from exc
    info = AudioInfo(
        format=str(raw.format).lower(),
        subtype=str(raw.subtype),
        sample_rate=int(raw.samplerate),
        channels=int(raw.channels),
        frames=int(raw.frames),
    )
    if info.sample_rate <= 0 or info.channels <= 0:
        raise ValidationError(
            f"audio header is invalid: {info.sample_rate} Hz, {info.channels} channels"
        )
    if info.frames <= 0:
        raise ValidationError("audio holds no samples (truncated or empty data chunk)")
    limit = DEFAULT_MAX_SECONDS if max_seconds is None else max_seconds
    if info.duration_seconds > limit:
        raise ValidationError(
            f"audio is {info.duration_seconds:.1f} s long; the maximum is {limit:.1f} s "
            "(AudioConfig.max_audio_length_seconds)"
        )
    return info


def decode_audio(
    data: bytes,
    target_rate: int,
    *,
    max_seconds: float | None = None,
    min_seconds: float = DEFAULT_MIN_SECONDS,
    silence_peak: float = DEFAULT_SILENCE_PEAK,
) -> DecodedAudio:
    """Decode ``data`` to mono float32 at ``target_rate`` and check it holds sound.

    Args:
        data: The encoded audio.
        target_rate: Sample rate of the result, in Hz.
        max_seconds: Longest accepted duration (None: 30 s).
        min_seconds: Shortest accepted duration.
        silence_peak: Peak amplitude under which the audio counts as silent.

    Raises:
        ValidationError: If the audio is unreadable, too short, too long or silent.
    """
    info = probe_audio(data, max_seconds)
    try:
        samples, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise ValidationError(f"audio data is corrupt or truncated: {exc}") from exc
    if samples.shape[0] == 0:
        raise ValidationError("audio holds no samples (truncated data chunk)")
    mono = samples.mean(axis=1, dtype=np.float32)
    if not np.all(np.isfinite(mono)):
        raise ValidationError("audio holds NaN or infinite samples")
    duration = len(mono) / info.sample_rate
    if duration < min_seconds:
        raise ValidationError(
            f"audio is {duration * 1000:.0f} ms long; at least {min_seconds * 1000:.0f} ms "
            "of speech is needed"
        )
    peak = float(np.max(np.abs(mono)))
    if peak < silence_peak:
        raise ValidationError(
            f"audio is silent (peak {peak:.2e} of full scale): no speech to answer"
        )
    return DecodedAudio(resample(mono, info.sample_rate, target_rate), target_rate, info)


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample mono float32 audio with soxr (high quality)."""
    if source_rate == target_rate:
        return samples.astype(np.float32, copy=False)
    return np.asarray(soxr.resample(samples, source_rate, target_rate, quality="HQ"), np.float32)
