"""Decode and validate audio bytes into float32 mono at the engine's rate.

Containers go through libsndfile (WAV, FLAC, MP3, OGG Vorbis/Opus); raw PCM is
read with the format the caller declares. The header is checked against the
``AudioConfig`` input policy before any sample is decoded, and samples are read
in bounded blocks, so a hostile file cannot make Coda allocate more than the
configured maximum duration.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from coda.core.config import AudioConfig
from coda.core.errors import ValidationError

DEFAULT_POLICY = AudioConfig()
RAW_FORMATS = {
    "pcm_u8": "PCM_U8",
    "pcm_s8": "PCM_S8",
    "pcm_s16le": "PCM_16",
    "pcm_s24le": "PCM_24",
    "pcm_s32le": "PCM_32",
    "pcm_f32le": "FLOAT",
}
"""Raw PCM formats a caller can declare in ``VoiceMessage.format`` (little-endian)."""
_RAW_BYTES = {
    "pcm_u8": 1,
    "pcm_s8": 1,
    "pcm_s16le": 2,
    "pcm_s24le": 3,
    "pcm_s32le": 4,
    "pcm_f32le": 4,
}
_BLOCK_SECONDS = 1.0


@dataclass(frozen=True)
class RawFormat:
    """What a caller declares about raw PCM bytes."""

    format: str
    sample_rate: int
    channels: int


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


def _open_args(data: bytes, raw: RawFormat | None) -> dict[str, Any]:
    if raw is None:
        return {}
    subtype = RAW_FORMATS.get(raw.format)
    if subtype is None:
        raise ValidationError(
            f"raw format {raw.format!r} is unknown; declare one of {sorted(RAW_FORMATS)}"
        )
    if raw.sample_rate <= 0 or raw.channels <= 0:
        raise ValidationError("raw PCM needs a positive sample_rate and channels")
    return {
        "format": "RAW",
        "subtype": subtype,
        "samplerate": raw.sample_rate,
        "channels": raw.channels,
        "endian": "LITTLE",
    }


def probe_audio(
    data: bytes, policy: AudioConfig | None = None, raw: RawFormat | None = None
) -> AudioInfo:
    """Read and check the header of ``data`` against the input policy.

    Args:
        data: The encoded audio (or raw PCM, with ``raw``).
        policy: The ``AudioConfig`` whose input policy applies (None: the defaults).
        raw: The declared format when ``data`` is headerless PCM.

    Raises:
        ValidationError: If the bytes are empty, not audio, truncated, too long,
            or of an unsupported rate, channel count or encoding.
    """
    policy = policy or DEFAULT_POLICY
    if not data:
        raise ValidationError("audio is empty (0 bytes)")
    if len(data) > policy.max_input_bytes:
        raise ValidationError(
            f"audio is {len(data)} bytes; the maximum is {policy.max_input_bytes} "
            "(AudioConfig.max_input_bytes)"
        )
    if raw is not None:
        frame = _RAW_BYTES.get(raw.format, 1) * max(1, raw.channels)
        if len(data) % frame:
            raise ValidationError(
                f"raw {raw.format} audio is truncated: {len(data)} bytes is not a whole "
                f"number of {frame}-byte frames"
            )
    if raw is None and data[:4] == b"RIFF" and len(data) < 44:
        raise ValidationError(f"WAV header is truncated: {len(data)} bytes, a header needs 44")
    try:
        with sf.SoundFile(io.BytesIO(data), **_open_args(data, raw)) as handle:
            info = AudioInfo(
                format="pcm" if raw else str(handle.format).lower(),
                subtype=str(handle.subtype),
                sample_rate=int(handle.samplerate),
                channels=int(handle.channels),
                frames=int(handle.frames),
            )
    except ValidationError:
        raise  # a refusal that names its cause (a ValueError too, so caught first)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        # libsndfile's own words stay in the chained cause (the logs), not the message.
        raise ValidationError(
            f"audio could not be read as WAV, FLAC, MP3 or OGG ({len(data)} bytes)"
        ) from exc
    _check_policy(info, policy)
    return info


def _check_policy(info: AudioInfo, policy: AudioConfig) -> None:
    if info.sample_rate not in policy.input_sample_rates:
        raise ValidationError(
            f"sample rate {info.sample_rate} Hz is not supported; "
            f"use one of {policy.input_sample_rates} (AudioConfig.input_sample_rates)"
        )
    if not 1 <= info.channels <= policy.max_input_channels:
        raise ValidationError(
            f"{info.channels} channels are not supported; at most "
            f"{policy.max_input_channels} (AudioConfig.max_input_channels)"
        )
    if info.subtype not in policy.input_encodings:
        raise ValidationError(
            f"sample encoding {info.subtype} is not supported; use one of "
            f"{policy.input_encodings} (AudioConfig.input_encodings)"
        )
    if info.frames <= 0:
        raise ValidationError("audio holds no samples (truncated or empty data chunk)")
    if info.duration_seconds > policy.max_audio_length_seconds:
        raise ValidationError(
            f"audio is {info.duration_seconds:.1f} s long; the maximum is "
            f"{policy.max_audio_length_seconds:.1f} s (AudioConfig.max_audio_length_seconds)"
        )


def decode_audio(
    data: bytes,
    target_rate: int,
    policy: AudioConfig | None = None,
    raw: RawFormat | None = None,
) -> DecodedAudio:
    """Decode ``data`` to mono float32 at ``target_rate`` and check it holds sound.

    Args:
        data: The encoded audio (or raw PCM, with ``raw``).
        target_rate: Sample rate of the result, in Hz.
        policy: The ``AudioConfig`` whose input policy and limits apply.
        raw: The declared format when ``data`` is headerless PCM.

    Raises:
        ValidationError: If the audio is unreadable, unsupported, too short,
            too long or silent.
    """
    policy = policy or DEFAULT_POLICY
    info = probe_audio(data, policy, raw)
    limit = int(policy.max_audio_length_seconds * info.sample_rate) + 1
    block = max(1, int(_BLOCK_SECONDS * info.sample_rate))
    pieces: list[np.ndarray] = []
    total = 0
    try:
        with sf.SoundFile(io.BytesIO(data), **_open_args(data, raw)) as handle:
            # Not ``handle.blocks``: it trusts the declared length and pads short reads
            # with stale buffer contents, so a header that claims more frames than the
            # body holds (an MP3 Xing count, say) would decode to garbage.
            while True:
                chunk = handle.read(block, dtype="float32", always_2d=True)
                total += len(chunk)
                if total > limit:
                    raise ValidationError(
                        "audio is longer than its header says and than the maximum "
                        f"{policy.max_audio_length_seconds:.1f} s"
                    )
                if len(chunk):
                    pieces.append(chunk.mean(axis=1, dtype=np.float32))
                if len(chunk) < block:
                    break
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise ValidationError("audio data is corrupt or truncated") from exc
    mono = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return DecodedAudio(_checked(mono, info.sample_rate, policy, target_rate), target_rate, info)


def _checked(mono: np.ndarray, rate: int, policy: AudioConfig, target_rate: int) -> np.ndarray:
    if mono.size == 0:
        raise ValidationError("audio holds no samples (truncated data chunk)")
    if not np.all(np.isfinite(mono)):
        raise ValidationError("audio holds NaN or infinite samples")
    duration = len(mono) / rate
    if duration < policy.min_audio_length_seconds:
        raise ValidationError(
            f"audio is {duration * 1000:.0f} ms long; at least "
            f"{policy.min_audio_length_seconds * 1000:.0f} ms of speech is needed"
        )
    peak = float(np.max(np.abs(mono)))
    if peak < policy.silence_peak_threshold:
        raise ValidationError(f"audio is silent (peak {peak:.2e} of full scale): no speech")
    return resample(np.clip(mono, -1.0, 1.0), rate, target_rate)


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample mono float32 audio with soxr (high quality)."""
    if source_rate == target_rate:
        return samples.astype(np.float32, copy=False)
    return np.asarray(soxr.resample(samples, source_rate, target_rate, quality="HQ"), np.float32)
