"""Decoding and validation of message audio, with real libsndfile and soxr."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from coda.audio.decode import RAW_FORMATS, RawFormat, decode_audio, probe_audio
from coda.audio.encode import encode_wav
from coda.audio.frames import to_float, to_int16
from coda.core.errors import AudioProcessingError
from coda.voice import AudioConfig, ValidationError, VoiceMessage

RATE = 24000


def _tone(seconds: float = 1.0, rate: int = RATE, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.4 * np.sin(2 * np.pi * 440 * t) * np.hanning(len(t))
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


def _encode(samples: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def _aligned_correlation(reference: np.ndarray, decoded: np.ndarray, max_lag: int) -> float:
    """Best correlation over lags up to ``max_lag`` (lossy codecs add a small delay)."""
    n = min(len(reference), len(decoded)) - max_lag
    best = -1.0
    for lag in range(-max_lag, max_lag + 1, 4):
        a = reference[max(0, lag) : max(0, lag) + n]
        b = decoded[max(0, -lag) : max(0, -lag) + n]
        best = max(best, float(np.corrcoef(a, b)[0, 1]))
    return best


@pytest.mark.parametrize(
    ("fmt", "subtype", "rate", "channels"),
    [
        ("WAV", "PCM_U8", 8000, 1),
        ("WAV", "PCM_16", 16000, 1),
        ("WAV", "PCM_24", 44100, 2),
        ("WAV", "PCM_32", 48000, 1),
        ("WAV", "FLOAT", 24000, 1),
        ("FLAC", "PCM_16", 48000, 2),
        ("OGG", "VORBIS", 24000, 1),
        ("OGG", "OPUS", 48000, 1),
        ("MP3", "MPEG_LAYER_III", 44100, 2),
    ],
)
def test_formats_decode_to_mono_at_the_target_rate(
    fmt: str, subtype: str, rate: int, channels: int
) -> None:
    source = _tone(1.0, rate, channels)
    data = _encode(source, rate, fmt, subtype)
    info = probe_audio(data)
    assert (info.format, info.sample_rate, info.channels) == (fmt.lower(), rate, channels)

    decoded = decode_audio(data, 16000)
    assert decoded.sample_rate == 16000 and decoded.samples.ndim == 1
    assert decoded.samples.dtype == np.float32
    # Duration kept within one 20 ms frame.
    assert abs(decoded.duration_seconds - 1.0) <= 0.02
    # Content kept: correlation with the reference tone resampled to 16 kHz.
    reference = _tone(1.0, 16000)
    assert _aligned_correlation(reference, decoded.samples, max_lag=800) > 0.95


@pytest.mark.parametrize(
    "raw_format", ["pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_u8"]
)
def test_raw_pcm_with_a_declared_format(raw_format: str) -> None:
    subtype = RAW_FORMATS[raw_format]
    tone = _tone(1.0, 16000)
    buffer = io.BytesIO()
    sf.write(buffer, tone, 16000, format="RAW", subtype=subtype, endian="LITTLE")
    message = VoiceMessage("c", buffer.getvalue(), format=raw_format, sample_rate=16000, channels=1)
    message.validate()
    assert message.format == raw_format and message.duration_seconds == pytest.approx(1.0)
    decoded = decode_audio(message.audio_data, 16000, raw=message.raw_format())
    assert np.corrcoef(tone, decoded.samples)[0, 1] > 0.99
    with pytest.raises(ValidationError, match="sample_rate and channels"):
        VoiceMessage("c", buffer.getvalue(), format=raw_format).validate()
    if subtype not in ("PCM_U8", "PCM_S8"):
        with pytest.raises(ValidationError, match="truncated"):
            decode_audio(buffer.getvalue()[:-1], 16000, raw=message.raw_format())


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (_encode(_tone(1.0, 12000), 12000, "WAV", "PCM_16"), "sample rate 12000"),
        (_encode(np.zeros((16000, 3)) + 0.1, 16000, "WAV", "PCM_16"), "3 channels"),
        (_encode(_tone(1.0, 16000), 16000, "WAV", "IMA_ADPCM"), "encoding IMA_ADPCM"),
    ],
    ids=["rate", "channels", "encoding"],
)
def test_unsupported_input_is_refused_by_policy(data: bytes, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        probe_audio(data)


def test_voice_message_metadata_is_populated() -> None:
    message = VoiceMessage("c", _encode(_tone(1.5, 44100, 2), 44100, "FLAC", "PCM_16"))
    message.validate()
    assert (message.format, message.sample_rate, message.channels) == ("flac", 44100, 2)
    assert message.duration_seconds == pytest.approx(1.5, abs=0.001)
    assert message.get_audio_metadata()["frames"] == int(1.5 * 44100)


def test_wav_encoder_round_trip() -> None:
    tone = _tone(0.5).astype(np.float32)
    decoded = decode_audio(encode_wav(tone, RATE), RATE)
    assert np.max(np.abs(decoded.samples - tone)) < 1e-3  # 16-bit quantization


def test_wav_encoder_refuses_integer_pcm() -> None:
    # 16-bit PCM read as float is clipped to its sign: garbled, yet half intelligible.
    pcm = to_int16(_tone(0.5).astype(np.float32))
    with pytest.raises(AudioProcessingError, match="int16.*to_float"):
        encode_wav(pcm, RATE)
    decoded = decode_audio(encode_wav(to_float(pcm), RATE), RATE)
    assert np.max(np.abs(decoded.samples - to_float(pcm))) < 1e-3


def test_text_only_message_needs_no_audio() -> None:
    VoiceMessage("c", b"", text_content="hello").validate()
    with pytest.raises(ValidationError, match="empty"):
        VoiceMessage("c", b"", text_content="   ").validate()


def test_length_limit_is_checked_before_decoding() -> None:
    # A header that claims an hour of audio is refused from the header alone.
    data = _encode(_tone(2.0, 8000), 8000, "WAV", "PCM_16")
    with pytest.raises(ValidationError, match="maximum is 1.0 s"):
        probe_audio(data, AudioConfig(max_audio_length_seconds=1.0))


def test_nan_samples_are_rejected() -> None:
    samples = _tone(0.5).astype(np.float32)
    samples[100] = np.nan
    with pytest.raises(ValidationError, match="NaN"):
        decode_audio(_encode(samples, RATE, "WAV", "FLOAT"), 16000)


def test_oversized_input_is_refused_before_decoding() -> None:
    with pytest.raises(ValidationError, match="max_input_bytes"):
        probe_audio(b"RIFF" + bytes(2000), AudioConfig(max_input_bytes=1000))


# -- exact boundaries of the input policy (these also serve ``make mutation``) ----------


def _raw(samples: np.ndarray, subtype: str, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    frames = np.stack([samples] * channels, axis=1) if channels > 1 else samples
    sf.write(buffer, frames, 16000, format="RAW", subtype=subtype, endian="LITTLE")
    return buffer.getvalue()


@pytest.mark.parametrize("raw_format", sorted(RAW_FORMATS))
@pytest.mark.parametrize("channels", [1, 2])
def test_raw_pcm_of_any_whole_frame_count_decodes(raw_format: str, channels: int) -> None:
    # 16001 frames: a length no other frame width divides, so each width must be right.
    tone = _tone(16001 / 16000, 16000)[:16001]
    data = _raw(tone, RAW_FORMATS[raw_format], channels)
    raw = RawFormat(raw_format, 16000, channels)
    info = probe_audio(data, raw=raw)
    assert (info.format, info.channels, info.frames) == ("pcm", channels, 16001)
    decoded = decode_audio(data, 16000, raw=raw)
    assert len(decoded.samples) == 16001 and decoded.info == info
    assert np.corrcoef(tone, decoded.samples)[0, 1] > 0.99


def test_raw_pcm_declarations_are_checked() -> None:
    data = _raw(_tone(0.5, 16000), "PCM_16")
    for bad in (RawFormat("pcm_s16le", 0, 1), RawFormat("pcm_s16le", 16000, 0)):
        with pytest.raises(ValidationError, match="needs a positive sample_rate and channels"):
            decode_audio(data, 16000, raw=bad)
    with pytest.raises(ValidationError, match="sample rate 1 Hz is not supported"):
        decode_audio(data, 16000, raw=RawFormat("pcm_s16le", 1, 1))
    # An unknown format with an odd byte count is not called truncated.
    with pytest.raises(ValidationError, match="raw format 'pcm_s12' is unknown; declare one of"):
        decode_audio(data[:-1], 16000, raw=RawFormat("pcm_s12", 16000, 1))
    # Stereo 16-bit frames are four bytes: six bytes is one and a half.
    with pytest.raises(ValidationError, match="raw pcm_s16le audio is truncated: 6 bytes"):
        probe_audio(data[:6], raw=RawFormat("pcm_s16le", 16000, 2))
    # Raw bytes that happen to start with "RIFF" are not a WAV header.
    assert probe_audio(b"RIFF" + bytes(36), raw=RawFormat("pcm_u8", 16000, 1)).frames == 40


def test_header_and_size_limits_are_exact() -> None:
    with pytest.raises(ValidationError, match=r"^audio is empty \(0 bytes\)$"):
        probe_audio(b"")
    with pytest.raises(ValidationError, match="WAV header is truncated: 43 bytes"):
        probe_audio(b"RIFF" + bytes(39))
    with pytest.raises(ValidationError, match="could not be read as WAV"):
        probe_audio(b"RIFF" + bytes(40))  # a whole header's length, but not a header
    with pytest.raises(ValidationError, match="could not be read as WAV"):
        probe_audio(b"RIFX" + bytes(39))
    wav = _encode(_tone(0.5, 16000), 16000, "WAV", "PCM_16")
    assert probe_audio(wav, AudioConfig(max_input_bytes=len(wav))).frames == 8000
    with pytest.raises(ValidationError, match=f"audio is {len(wav)} bytes; the maximum is"):
        probe_audio(wav, AudioConfig(max_input_bytes=len(wav) - 1))
    with pytest.raises(ValidationError, match="max_input_bytes"):
        decode_audio(wav, 16000, AudioConfig(max_input_bytes=len(wav) - 1))


def test_frame_counts_and_durations_at_the_limits() -> None:
    with pytest.raises(ValidationError, match="holds no samples"):
        probe_audio(_encode(np.zeros(0), 16000, "WAV", "PCM_16"))
    assert probe_audio(_encode(np.full(1, 0.5), 16000, "WAV", "PCM_16")).frames == 1
    # Exactly the maximum length is accepted, by the header check and by the decoder.
    second = _encode(_tone(1.0, 16000), 16000, "WAV", "PCM_16")
    exact = AudioConfig(max_audio_length_seconds=1.0)
    assert probe_audio(second, exact).duration_seconds == 1.0
    assert len(decode_audio(second, 16000, exact).samples) == 16000
    # Exactly the minimum length too; shorter is refused with both lengths in ms.
    assert len(decode_audio(_encode(_tone(0.1, 16000), 16000, "WAV", "PCM_16"), 16000).samples)
    with pytest.raises(ValidationError) as raised:
        decode_audio(_encode(_tone(0.05, 16000), 16000, "WAV", "PCM_16"), 16000)
    assert str(raised.value) == "audio is 50 ms long; at least 100 ms of speech is needed"


@pytest.mark.parametrize("seconds", [2.0, 2.5])
def test_long_input_is_decoded_whole_block_after_block(seconds: float) -> None:
    tone = _tone(seconds, 16000).astype(np.float32)
    decoded = decode_audio(_encode(tone, 16000, "WAV", "FLOAT"), 16000)
    assert np.array_equal(decoded.samples, tone)
    assert decoded.duration_seconds == seconds and decoded.info.frames == len(tone)


def test_samples_are_clipped_and_the_silence_threshold_is_inclusive() -> None:
    loud = np.tile(np.array([1.5, -1.5, 0.25, 0.0], np.float32), 800)
    decoded = decode_audio(_encode(loud, 16000, "WAV", "FLOAT"), 16000)
    assert decoded.samples[:4].tolist() == [1.0, -1.0, 0.25, 0.0]
    # A peak of exactly the threshold is sound; just below it is silence.
    half = np.tile(np.array([0.5, 0.0], np.float32), 1600)
    policy = AudioConfig(silence_peak_threshold=0.5)
    assert decode_audio(_encode(half, 16000, "WAV", "FLOAT"), 16000, policy).samples.max() == 0.5
    with pytest.raises(ValidationError, match="silent"):
        decode_audio(_encode(half * 0.99, 16000, "WAV", "FLOAT"), 16000, policy)


def test_audio_info_as_a_dictionary() -> None:
    info = probe_audio(_encode(_tone(0.5, 16000, 2), 16000, "WAV", "PCM_24"))
    assert info.as_dict() == {
        "format": "wav",
        "subtype": "PCM_24",
        "sample_rate": 16000,
        "channels": 2,
        "frames": 8000,
        "duration_seconds": 0.5,
    }
