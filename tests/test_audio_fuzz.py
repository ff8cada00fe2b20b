"""Hostile bytes: decoding raises only the typed errors and does bounded work.

"Bounded" is measured in work, not seconds: how much audio the decoder asks
libsndfile for, how much memory it holds at its peak, and how many samples come
out. None of these depends on how fast or loaded the machine is.
"""

from __future__ import annotations

import contextlib
import io
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coda.audio.decode import decode_audio
from coda.core.config import AudioConfig
from coda.voice import AudioProcessingError, ValidationError

RATE = 16000
POLICY = AudioConfig()
# The decoder reads in blocks of at most 1 s, so it may ask for one block past the limit.
READ_BUDGET_SECONDS = POLICY.max_audio_length_seconds + 1.0
# Decoding holds a few mono float32 copies of at most the budget at the highest input rate
# (blocks, the joined signal, its clipped and resampled forms); eight leaves room to spare.
MEMORY_BUDGET_BYTES = 8 * 4 * int(READ_BUDGET_SECONDS * max(POLICY.input_sample_rates))


def _encode(fmt: str, subtype: str, seconds: float = 0.5, rate: int = RATE) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * 300 * t), rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


SEEDS = [
    _encode("WAV", "PCM_16"),
    _encode("FLAC", "PCM_16"),
    _encode("OGG", "VORBIS"),
    _encode("WAV", "FLOAT"),
    _encode("MP3", "MPEG_LAYER_III"),
]
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


@dataclass
class Work:
    """What one decode cost: audio asked of libsndfile, and peak Python-heap memory."""

    seconds_requested: float = 0.0
    peak_bytes: int = 0


@contextlib.contextmanager
def _metered() -> Iterator[Work]:
    """Count the audio the decoder requests from the real libsndfile and trace its memory.

    The real ``SoundFile.read`` still does every read; the wrapper only adds up what is
    asked for and stops a runaway decoder before it can exhaust the machine.
    """
    work = Work()
    real_read = sf.SoundFile.read

    def counted_read(self: sf.SoundFile, frames: int = -1, *args: Any, **kwargs: Any) -> Any:
        requested = frames if frames >= 0 else max(0, self.frames - self.tell())
        work.seconds_requested += requested / self.samplerate
        if work.seconds_requested > READ_BUDGET_SECONDS:
            raise AssertionError(f"decoder asked for {work.seconds_requested:.0f} s of audio")
        return real_read(self, frames, *args, **kwargs)

    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sf.SoundFile, "read", counted_read)
            yield work
        work.peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        if started:
            tracemalloc.stop()


def _decode_within_bounds(data: bytes) -> np.ndarray | None:
    """Decode hostile bytes; return the samples, or None for a typed refusal."""
    with _metered() as work:
        try:
            decoded = decode_audio(data, RATE)
        except (ValidationError, AudioProcessingError):
            decoded = None
    assert work.seconds_requested <= READ_BUDGET_SECONDS
    assert work.peak_bytes <= MEMORY_BUDGET_BYTES + 2 * len(data)
    if decoded is None:
        return None
    assert decoded.samples.size <= READ_BUDGET_SECONDS * RATE
    assert np.all(np.isfinite(decoded.samples))
    return decoded.samples


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


# --- Length bombs: real encoded audio whose header lies about its length -------------


def _flac_claiming(data: bytes, total_samples: int) -> bytes:
    """Rewrite the 36-bit total-samples field of the FLAC STREAMINFO block."""
    out = bytearray(data)
    assert out[:4] == b"fLaC" and out[4] & 0x7F == 0, "STREAMINFO comes first"
    # STREAMINFO starts at byte 8; its bytes 10..17 hold rate, channels, bits, total samples.
    packed = int.from_bytes(out[18:26], "big")
    packed = (packed >> 36 << 36) | total_samples
    out[18:26] = packed.to_bytes(8, "big")
    return bytes(out)


def _mp3_claiming(data: bytes, frames: int) -> bytes:
    """Rewrite the frame count of the Xing/Info header LAME writes in the first frame."""
    out = bytearray(data)
    tag = max(out.find(b"Xing"), out.find(b"Info"))
    assert tag > 0 and int.from_bytes(out[tag + 4 : tag + 8], "big") & 1, "frame count present"
    out[tag + 8 : tag + 12] = frames.to_bytes(4, "big")
    return bytes(out)


def _ogg_crc(page: bytes) -> int:
    """The Ogg page checksum: CRC-32, polynomial 0x04C11DB7, no reflection, zero start."""
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        crc &= 0xFFFFFFFF
    return crc


def _ogg_claiming(data: bytes, granule: int) -> bytes:
    """Rewrite the granule position of the last Ogg page, with a valid checksum."""
    out = bytearray(data)
    start = out.rfind(b"OggS")
    segments = out[start + 26]
    end = start + 27 + segments + sum(out[start + 27 : start + 27 + segments])
    assert end == len(out), "the last page runs to the end of the stream"
    out[start + 6 : start + 14] = granule.to_bytes(8, "little")
    out[start + 22 : start + 26] = bytes(4)
    out[start + 22 : start + 26] = _ogg_crc(bytes(out[start:end])).to_bytes(4, "little")
    return bytes(out)


def test_ogg_checksum_matches_libogg() -> None:
    """The patched pages are only a test of the decoder if their checksums are right."""
    data = SEEDS[2]
    start = data.rfind(b"OggS")
    page = bytearray(data[start:])
    written = bytes(page[22:26])
    page[22:26] = bytes(4)
    assert _ogg_crc(bytes(page)).to_bytes(4, "little") == written


HOURS = 5 * 3600
CODEC_FRAME = 2048  # samples: a Vorbis long block, and more than an MP3 frame (1152)
Bomb = Callable[[], bytes]
REFUSED_UNREAD = {
    "flac-billions-of-samples": lambda: _flac_claiming(SEEDS[1], 2**36 - 1),
    "flac-unknown-length": lambda: _flac_claiming(SEEDS[1], 0),
    "mp3-xing-billions-of-frames": lambda: _mp3_claiming(SEEDS[4], 2**32 - 1),
}


@pytest.mark.parametrize("make", REFUSED_UNREAD.values(), ids=REFUSED_UNREAD.keys())
def test_length_bomb_refused_before_reading(make: Bomb) -> None:
    """A header that declares more than the limit is refused before a sample is read."""
    with _metered() as work, pytest.raises(ValidationError, match="long|maximum"):
        decode_audio(make(), RATE)
    assert work.peak_bytes <= MEMORY_BUDGET_BYTES
    assert work.seconds_requested == 0


# (bomb, its honest original): the header claims far more than the body holds.
OVERCLAIMS = {
    "flac-claims-20s": (lambda: _flac_claiming(SEEDS[1], 20 * RATE), SEEDS[1]),
    "mp3-xing-claims-21s": (lambda: _mp3_claiming(SEEDS[4], 600), SEEDS[4]),
    "ogg-vorbis-granule-claims-hours": (lambda: _ogg_claiming(SEEDS[2], HOURS * RATE), SEEDS[2]),
    "ogg-vorbis-long-granule-claims-hours": (
        lambda: _ogg_claiming(_encode("OGG", "VORBIS", 20.0), HOURS * RATE),
        _encode("OGG", "VORBIS", 20.0),
    ),
    "ogg-opus-granule-claims-hours": (
        lambda: _ogg_claiming(_encode("OGG", "OPUS", rate=48000), HOURS * 48000),
        _encode("OGG", "OPUS", rate=48000),
    ),
}


@pytest.mark.parametrize("case", OVERCLAIMS.values(), ids=OVERCLAIMS.keys())
def test_length_bomb_decodes_only_what_is_there(case: tuple[Bomb, bytes]) -> None:
    """A header that claims more than the body holds yields a typed error or the real audio.

    Never padding: the samples, if any, are those of the honest file, not a buffer
    stretched to the claimed length. Without a true length the decoder may keep the
    codec's last frame whole, the tail that the honest header would have trimmed.
    """
    make, honest = case
    samples = _decode_within_bounds(make())
    if samples is None:
        return
    expected = decode_audio(honest, RATE).samples
    assert samples.size <= expected.size + CODEC_FRAME
    shared = min(samples.size, expected.size)
    np.testing.assert_array_equal(samples[:shared], expected[:shared])


# 40 s of real audio, over the 30 s limit, behind a 1 s header.
UNDERCLAIMS = {
    "flac-40s-claims-1s": lambda: _flac_claiming(_encode("FLAC", "PCM_16", 40.0), RATE),
    "mp3-40s-xing-claims-20-frames": lambda: _mp3_claiming(
        _encode("MP3", "MPEG_LAYER_III", 40.0), 20
    ),
    "ogg-40s-granule-claims-1s": lambda: _ogg_claiming(_encode("OGG", "VORBIS", 40.0), RATE),
}


@pytest.mark.parametrize("make", UNDERCLAIMS.values(), ids=UNDERCLAIMS.keys())
def test_length_bomb_longer_than_its_header(make: Bomb) -> None:
    """A body longer than the limit behind a 1 s header decodes no more than the 1 s claimed."""
    samples = _decode_within_bounds(make())
    assert samples is None or samples.size <= RATE
