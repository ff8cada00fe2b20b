"""Hostile bytes: decoding raises only the typed errors, quickly, and never balloons."""

from __future__ import annotations

import io
import time

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coda.audio.decode import decode_audio
from coda.voice import AudioProcessingError, ValidationError


def _valid(fmt: str, subtype: str) -> bytes:
    t = np.arange(8000) / 16000
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * 300 * t), 16000, format=fmt, subtype=subtype)
    return buffer.getvalue()


SEEDS = [
    _valid("WAV", "PCM_16"),
    _valid("FLAC", "PCM_16"),
    _valid("OGG", "VORBIS"),
    _valid("WAV", "FLOAT"),
]
FUZZ = settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def _decode_within_bounds(data: bytes) -> None:
    started = time.perf_counter()
    try:
        decoded = decode_audio(data, 16000)
    except (ValidationError, AudioProcessingError):
        pass
    else:
        # Whatever decodes stays within the 30 s limit at the target rate.
        assert decoded.samples.size <= 30 * 16000 + 16000
        assert np.all(np.isfinite(decoded.samples))
    assert time.perf_counter() - started < 2.0


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    _decode_within_bounds(data)


@FUZZ
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=12),
    st.integers(0, 20_000),
)
def test_mutated_audio(seed: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(seed)
    for position, value in flips:
        data[position % len(data)] = value
    _decode_within_bounds(bytes(data[: max(1, len(data) - cut)]))


@FUZZ
@given(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1))
def test_lying_wav_header(sample_rate: int, data_size: int) -> None:
    header = bytearray(SEEDS[0][:44])
    header[24:28] = sample_rate.to_bytes(4, "little")
    header[40:44] = data_size.to_bytes(4, "little")
    _decode_within_bounds(bytes(header) + SEEDS[0][44:])
