"""The audio front end on generated audio with known truth: VAD, AEC, noise, gain."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from coda.audio.decode import resample
from coda.audio.denoise import NoiseGainFilter
from coda.audio.echo import EchoCanceller
from coda.audio.endpointing import SpeechEnded, SpeechStarted
from coda.audio.frames import FRONT_END_RATE
from coda.audio.frontend import StreamingFrontEnd, clean_message
from coda.providers.stt.faster_whisper import FasterWhisperSTT
from coda.providers.tts.piper import PiperTTS
from coda.voice import AudioConfig, TTSConfig, ValidationError, VoiceManager
from tests.conftest import Say, wer

RATE = FRONT_END_RATE


@pytest.fixture(scope="session")
def recognizer(manager: VoiceManager) -> FasterWhisperSTT:
    stt = manager.engine.stt
    assert isinstance(stt, FasterWhisperSTT)
    return stt


def speech_bounds(clean: np.ndarray, offset: int) -> tuple[float, float]:
    """True start/end (s) of speech: first/last 10 ms frame above -50 dBFS RMS.

    The synthetic voice's silence sits near -93 dBFS; -50 keeps a final soft
    fricative ("France" ends in one near -45 dBFS) inside the speech.
    """
    frames = clean[: len(clean) // 160 * 160].reshape(-1, 160)
    loud = np.nonzero(np.sqrt(np.mean(frames**2, axis=1)) > 10 ** (-50 / 20))[0]
    return (offset + loud[0] * 160) / RATE, (offset + (loud[-1] + 1) * 160) / RATE


def run_stream(
    frontend: StreamingFrontEnd,
    mic: np.ndarray,
    frame_ms: int = 20,
    playback: np.ndarray | None = None,
    playback_rate: int = 24000,
) -> list[SpeechStarted | SpeechEnded]:
    """Feed ``mic`` in real-time order; queue ``playback`` alongside, frame by frame."""
    step = frontend.input_rate * frame_ms // 1000
    far_step = playback_rate * frame_ms // 1000
    events: list[SpeechStarted | SpeechEnded] = []
    for index in range(len(mic) // step):
        if playback is not None:
            frontend.add_playback(playback[index * far_step : (index + 1) * far_step])
        events.extend(frontend.process(mic[index * step : (index + 1) * step]))
    events.extend(frontend.flush())
    return events


def noise(seconds: float, level_dbfs: float, seed: int, brown: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    white = rng.normal(0, 1, int(seconds * RATE))
    signal = np.cumsum(white) if brown else white
    if brown:
        signal -= np.convolve(signal, np.ones(400) / 400, mode="same")  # remove the drift
    return (signal / np.sqrt(np.mean(signal**2)) * 10 ** (level_dbfs / 20)).astype(np.float32)


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
async def test_vad_finds_speech_boundaries_within_100_ms(say: Say, frame_ms: int) -> None:
    first = await say("What is the capital of France?")
    second = await say("Tell me something nice about the ocean.")
    second_at = RATE + len(first) + 2 * RATE
    noise_at = RATE + len(first) + RATE // 2  # a louder noise between the two sentences
    total = second_at + len(second) + RATE
    mic = noise(total / RATE, -55, seed=2)  # a fan all along
    mic[RATE : RATE + len(first)] += first
    mic[noise_at : noise_at + RATE // 2] += noise(0.5, -35, seed=1)
    mic[second_at : second_at + len(second)] += second
    truth = [speech_bounds(first, RATE), speech_bounds(second, second_at)]
    # 48 kHz capture exercises the streaming resampler too.
    frontend = StreamingFrontEnd(AudioConfig(), 48000)
    events = run_stream(frontend, resample(mic, RATE, 48000), frame_ms)
    starts = [e.at_seconds for e in events if isinstance(e, SpeechStarted)]
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(starts) == len(ends) == 2  # nothing in the noise
    for (true_start, true_end), start, end in zip(truth, starts, ends, strict=True):
        assert abs(start - true_start) <= 0.100
        assert abs(end.at_seconds - true_end) <= 0.100
        # The utterance keeps the pre-roll, so the first syllable is not clipped.
        assert end.utterance.onset_seconds == start
        assert true_start - 0.3 <= end.utterance.start_seconds <= true_start


async def test_utterances_are_recognized(say: Say, recognizer: FasterWhisperSTT) -> None:
    question = "Can you suggest a quick breakfast idea?"
    mic = np.concatenate(
        [np.zeros(RATE // 2, np.float32), await say(question), np.zeros(RATE, np.float32)]
    )
    events = run_stream(StreamingFrontEnd(AudioConfig(), RATE), mic)
    (utterance,) = [e.utterance for e in events if isinstance(e, SpeechEnded)]
    assert wer(question, (await recognizer.transcribe(utterance.samples)).text) <= 0.15


@pytest.mark.parametrize(
    "background",
    [noise(4.0, -30, seed=3), noise(4.0, -25, seed=4, brown=True), np.zeros(4 * RATE, np.float32)],
    ids=["white", "brown", "silence"],
)
def test_no_speech_in_noise_only_audio(background: np.ndarray) -> None:
    assert run_stream(StreamingFrontEnd(AudioConfig(), RATE), background) == []
    with pytest.raises(ValidationError, match="no speech"):
        clean_message(background, AudioConfig())


def test_short_noise_burst_does_not_start_speech() -> None:
    burst = noise(0.12, -12, seed=5)  # a 120 ms clack, shorter than min_speech_ms
    mic = np.concatenate([np.zeros(RATE // 2, np.float32), burst, np.zeros(RATE, np.float32)])
    assert run_stream(StreamingFrontEnd(AudioConfig(), RATE), mic) == []


async def test_batch_path_trims_silence(say: Say) -> None:
    speech = await say("What is the capital of France?")
    padded = np.concatenate(
        [np.zeros(2 * RATE, np.float32), speech, np.zeros(2 * RATE, np.float32)]
    )
    config = AudioConfig()
    trimmed = clean_message(padded, config)
    start, end = speech_bounds(speech, 0)
    spoken = end - start
    pad = 2 * config.trim_padding_ms / 1000 + 0.2  # padding plus VAD lag allowance
    assert spoken <= len(trimmed) / RATE <= spoken + pad + 0.1
    # Without VAD nothing is trimmed.
    untouched = clean_message(padded, replace(config, enable_vad=False))
    assert len(untouched) == len(padded)


def echo_path(far: np.ndarray) -> np.ndarray:
    """A room: 40 ms delay, -6 dB, two reflections, a gentle low-pass."""
    response = np.zeros(int(0.06 * RATE))
    response[int(0.040 * RATE)] = 0.5
    response[int(0.047 * RATE)] = 0.2
    response[int(0.055 * RATE)] = -0.1
    response = np.convolve(response, np.ones(4) / 4)[: len(response)]
    return np.convolve(far, response)[: len(far)].astype(np.float32)


@pytest.fixture(scope="session")
async def coda_speaking() -> np.ndarray:
    """Eight seconds of Coda's own voice at 24 kHz: the far end.

    Sampling noise is off so that every run cancels the same echo.
    """
    voice = PiperTTS(TTSConfig(noise_scale=0.0, noise_w_scale=0.0))
    await voice.load()
    pieces = []
    for text in (
        "Sure, here is a long answer about the weather in Lisbon.",
        "It will be sunny in the morning and cloudy later on.",
        "Tomorrow there may be some rain near the coast, so take an umbrella.",
    ):
        speech = await voice.synthesize(text)
        pieces.append(resample(speech.samples, speech.sample_rate, 24000))
    await voice.close()
    return np.concatenate(pieces)


def test_echo_is_reduced_by_at_least_10_db(coda_speaking: np.ndarray) -> None:
    far = resample(coda_speaking, 24000, RATE)
    echo = echo_path(far)
    canceller = EchoCanceller(RATE, 160, AudioConfig().echo_tail_ms)
    residual = []
    for index in range(len(echo) // 160):
        canceller.add_playback(far[index * 160 : (index + 1) * 160])
        residual.append(canceller.process(echo[index * 160 : (index + 1) * 160]))
    canceller.close()
    out = np.concatenate(residual)

    def erle(start: float, end: float) -> float:
        a, b = int(start * RATE), int(end * RATE)
        return float(10 * np.log10(np.sum(echo[a:b] ** 2) / np.sum(out[a:b] ** 2)))

    converged = erle(1.0, len(out) / RATE)
    assert converged >= 10.0
    assert erle(4.0, len(out) / RATE) > erle(1.0, 2.0)  # it keeps converging


async def test_near_end_speech_survives_echo_cancellation(
    coda_speaking: np.ndarray, say: Say, recognizer: FasterWhisperSTT
) -> None:
    """Coda answers twice; the user talks over the second answer."""
    question = "What is the capital of France?"
    far = resample(coda_speaking, 24000, RATE)
    echo = echo_path(far)
    near = await say(question)
    mic = np.concatenate([echo, echo, np.zeros(RATE, np.float32)])
    talk = len(far) + 2 * RATE
    mic[talk : talk + len(near)] += near
    playback = np.concatenate([coda_speaking, coda_speaking])

    frontend = StreamingFrontEnd(AudioConfig(), RATE)
    events = run_stream(frontend, mic, playback=playback)
    second = [e for e in events if isinstance(e, SpeechEnded) and e.at_seconds > len(far) / RATE]
    # With the canceller converged by the first answer, only the user's words make an
    # utterance during the second, and they are recognized.
    assert len(second) == 1
    # Residual echo is gated, so the utterance starts with the user, not before.
    onset, _ = speech_bounds(near, talk)
    assert abs(second[0].utterance.onset_seconds - onset) <= 0.3
    assert wer(question, (await recognizer.transcribe(second[0].utterance.samples)).text) <= 0.15

    # Without the canceller the echo is heard as speech too.
    no_aec = replace(AudioConfig(), enable_echo_cancellation=False)
    heard = [
        e for e in run_stream(StreamingFrontEnd(no_aec, RATE), mic) if isinstance(e, SpeechEnded)
    ]
    assert sum(e.utterance.duration_seconds for e in heard) > 10.0


def _snr_db(signal: np.ndarray, noise_only: slice, speech: slice) -> float:
    noise_power = float(np.mean(signal[noise_only] ** 2))
    speech_power = float(np.mean(signal[speech] ** 2)) - noise_power
    return 10 * np.log10(max(speech_power, 1e-12) / noise_power)


async def test_noise_suppression_improves_snr(say: Say) -> None:
    speech = 0.5 * np.concatenate([await say("Tell me something nice about the ocean.")] * 2)
    clean = np.concatenate([np.zeros(RATE, np.float32), speech])
    power = float(np.mean(speech**2))
    noisy = clean + np.random.default_rng(6).normal(0, np.sqrt(power / 10**0.5), len(clean))
    noisy = noisy.astype(np.float32)  # 5 dB SNR white noise
    level = NoiseGainFilter(3, 0)
    out = np.concatenate(
        [level.process(noisy[i : i + 160]) for i in range(0, len(noisy) - 159, 160)]
    )
    noise_only, speech_part = slice(RATE // 2, RATE), slice(RATE, len(out))
    before = _snr_db(noisy, noise_only, speech_part)
    after = _snr_db(out, noise_only, speech_part)
    assert before == pytest.approx(5.0, abs=1.0)
    assert after >= before + 10.0  # measured about +15 dB at level 3


async def test_gain_control_lifts_quiet_speech(say: Say) -> None:
    speech = np.concatenate([await say("Can you suggest a quick breakfast idea?")] * 3)
    quiet = (speech / np.sqrt(np.mean(speech**2)) * 10 ** (-30 / 20)).astype(np.float32)
    agc = NoiseGainFilter(0, AudioConfig().agc_target_dbfs)
    out = np.concatenate([agc.process(quiet[i : i + 160]) for i in range(0, len(quiet) - 159, 160)])
    settled = out[len(out) // 2 :]
    rms_db = 20 * np.log10(np.sqrt(np.mean(settled**2)))
    peak_db = 20 * np.log10(np.max(np.abs(settled)))
    assert rms_db >= -30 + 8.0  # lifted by at least 8 dB (WebRTC caps its gain near 9-10 dB)
    assert abs(peak_db - -AudioConfig().agc_target_dbfs) <= 3.0  # peaks reach the target
    assert np.max(np.abs(out)) < 1.0  # and nothing clips


def test_stage_switches_are_obeyed() -> None:
    off = AudioConfig(
        enable_vad=False,
        enable_noise_reduction=False,
        enable_echo_cancellation=False,
        enable_auto_gain_control=False,
    )
    frontend = StreamingFrontEnd(off, RATE)
    assert (frontend._echo, frontend._denoise, frontend._vad) == (None, None, None)
    tone = 0.3 * np.sin(2 * np.pi * 300 * np.arange(RATE) / RATE).astype(np.float32)
    # Without VAD every window counts as speech, so even a tone becomes an utterance.
    events = run_stream(frontend, tone)
    assert any(isinstance(e, SpeechEnded) for e in events)
    assert frontend.stage_seconds["echo"] == frontend.stage_seconds["denoise"] == 0.0
    with pytest.raises(ValidationError, match="input rate"):
        StreamingFrontEnd(AudioConfig(), 12345)
