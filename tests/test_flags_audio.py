"""Every reply format, bit depth, channel count and sample rate ``AudioConfig`` lists.

Each reply is decoded by an independent decoder (FFmpeg, through PyAV; Coda
encodes with libsndfile) and its words are heard by Whisper base. The words are a
request to forget: answered from memory, the reply is the same each time and
needs no LLM.
"""

from __future__ import annotations

import io
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np
import pytest

from coda.audio.decode import resample
from coda.providers.stt.faster_whisper import FasterWhisperSTT
from coda.voice import (
    AudioConfig,
    ConfigurationError,
    VoiceConfig,
    VoiceManager,
    VoiceProcessingConfig,
    VoiceProcessor,
    VoiceResponse,
)
from tests.conftest import wer
from tests.test_flags import engine, processor, said

WORDS = "Forget my wifi password."

CASES = [
    # facade, format, bit depth, channels, sample rate: each value at least once
    ("manager", "wav", 16, 1, 24000),
    ("processor", "wav", 24, 2, 16000),
    ("manager", "wav", 32, 1, 48000),
    ("processor", "flac", 16, 2, 44100),
    ("manager", "flac", 24, 1, 24000),
    ("manager", "mp3", 16, 1, 16000),
    ("processor", "mp3", 16, 2, 48000),
]


@dataclass
class Decoded:
    """What FFmpeg finds in a file."""

    container: str
    codec: str
    channels: int
    rate: int
    samples: np.ndarray
    """float32, one row per channel."""

    @property
    def seconds(self) -> float:
        return self.samples.shape[1] / self.rate


def ffmpeg(data: bytes | None, fmt: str) -> Decoded:
    """Decode ``data`` with FFmpeg's ``fmt`` demuxer (PyAV) into float samples, channels apart.

    The demuxer is named, as a player told the format would: FFmpeg's probe can
    miss an MP3 file of one 1024-sample streamed chunk.
    """
    assert data, "no audio"
    with av.open(io.BytesIO(data), mode="r", format=fmt) as container:
        stream = container.streams.audio[0]
        codec = stream.codec_context
        layout, rate = codec.layout.name, codec.sample_rate
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        blocks = [
            out.to_ndarray()
            for frame in container.decode(stream)
            for out in resampler.resample(frame)
        ]
        blocks += [out.to_ndarray() for out in resampler.resample(None)]
        return Decoded(
            container.format.name, codec.name, codec.layout.nb_channels, rate, np.hstack(blocks)
        )


def flac_bits_per_sample(data: bytes) -> int:
    """Bits per sample from a FLAC file's STREAMINFO block (read here, not by a library)."""
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO comes first
    fields = int.from_bytes(data[8 + 10 : 8 + 18], "big")  # rate 20, channels 3, bps 5, ...
    return ((fields >> 36) & 0x1F) + 1


def check_file(data: bytes | None, fmt: str, depth: int, channels: int, rate: int) -> Decoded:
    """``data`` is ``fmt`` of ``depth`` bits, ``channels`` and ``rate``, as FFmpeg reads it."""
    found = ffmpeg(data, fmt)
    assert (found.channels, found.rate) == (channels, rate)
    assert found.container == fmt
    if fmt == "wav":
        assert found.codec == f"pcm_s{depth}le"
    elif fmt == "flac":
        assert found.codec == "flac" and flac_bits_per_sample(data or b"") == depth
    else:
        assert found.codec.startswith("mp3")
    if channels == 2:  # the (mono) voice in both channels
        assert np.allclose(found.samples[0], found.samples[1], atol=1e-3)
    return found


async def heard(listener: FasterWhisperSTT, found: Decoded) -> str:
    mono = resample(found.samples.mean(axis=0), found.rate, listener.sample_rate)
    return (await listener.transcribe(mono)).text.replace("Wi-Fi", "wifi")  # one word either way


@pytest.mark.parametrize(("facade", "fmt", "depth", "channels", "rate"), CASES)
async def test_reply_audio_is_in_the_configured_format(
    base_config: VoiceConfig,
    listener: FasterWhisperSTT,
    tmp_path: Path,
    facade: str,
    fmt: str,
    depth: int,
    channels: int,
    rate: int,
) -> None:
    audio = replace(base_config.audio, format=fmt, bit_depth=depth)
    voice: AbstractAsyncContextManager[VoiceManager | VoiceProcessor]
    if facade == "manager":
        voice = engine(
            base_config, tmp_path, audio=replace(audio, channels=channels, sample_rate=rate)
        )
    else:  # VoiceProcessingConfig's sample_rate and channels reach the same AudioConfig
        settings = VoiceProcessingConfig(sample_rate=rate, channels=channels)
        voice = processor(base_config, tmp_path, settings, {"audio": audio})
    async with voice as running:
        response: VoiceResponse = await running.process_voice_message(said(WORDS))
        chunks = [c async for c in running.process_streaming(said(WORDS))]

    found = check_file(response.audio_data, fmt, depth, channels, rate)
    assert 2.0 <= found.seconds <= 5.0  # one sentence of speech, not silence or a fragment
    assert float(np.sqrt(np.mean(found.samples**2))) > 0.01
    assert wer(response.text_content, await heard(listener, found)) <= 0.2
    described = response.metadata["audio"]
    assert (described["format"], described["channels"], described["sample_rate"]) == (
        fmt,
        channels,
        rate,
    )
    assert described["bit_depth"] == (None if fmt == "mp3" else depth)

    # Streamed pieces are in the same format, and together say the same reply.
    pieces = [
        check_file(c.audio_data, fmt, depth, channels, rate) for c in chunks if c.kind == "audio"
    ]
    assert pieces and chunks[-1].text_content == response.text_content
    assert sum(p.seconds for p in pieces) == pytest.approx(found.seconds, abs=0.25)


def test_flac_cannot_hold_32_bits(base_config: VoiceConfig) -> None:
    with pytest.raises(ConfigurationError, match="FLAC holds at most 24 bits"):
        VoiceManager(replace(base_config, audio=AudioConfig(format="flac", bit_depth=32)))
