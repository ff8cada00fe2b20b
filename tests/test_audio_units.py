"""The audio core piece by piece, on exact numbers: framing, endpointing, echo, noise, VAD.

No model is loaded (Silero VAD, Speex and WebRTC are native libraries that start at
once), so these tests also serve ``make mutation``: each checks an exact boundary
or value that a changed operator or constant would move.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from coda.audio.decode import decode_audio, resample
from coda.audio.denoise import MAX_SUPPRESSION_LEVEL, NoiseGainFilter, suppression_level
from coda.audio.echo import EchoCanceller, _bundled_speexdsp
from coda.audio.encode import encode_wav
from coda.audio.endpointing import (
    Endpointer,
    EndpointEvent,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
)
from coda.audio.frames import (
    FRAME_SAMPLES,
    FRONT_END_RATE,
    FrameChunker,
    SampleQueue,
    apply_gain,
    to_float,
    to_int16,
)
from coda.audio.frontend import StreamingFrontEnd, clean_message
from coda.audio.vad import VoiceActivityDetector
from coda.voice import AudioConfig, ValidationError

RATE = FRONT_END_RATE
WINDOW = 512  # 32 ms at 16 kHz
SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "conversation"


def speech(name: str = "01.wav") -> np.ndarray:
    """A recorded sentence of the sample conversation, float32 at 16 kHz."""
    return decode_audio((SAMPLES / name).read_bytes(), RATE).samples


# -- frames ----------------------------------------------------------------------------


def test_int16_conversion_scales_rounds_and_saturates() -> None:
    samples = np.array([0.0, 1.0, -1.0, 0.5, 2.0, -2.0, 1 / 32767, 0.4 / 32767], np.float32)
    assert to_int16(samples).tolist() == [0, 32767, -32767, 16384, 32767, -32768, 1, 0]
    assert to_int16(samples).dtype == np.int16
    back = to_float(np.array([0, 16384, -32768, 32767], np.int16))
    assert back.dtype == np.float32
    assert back.tolist() == [0.0, 0.5, -1.0, 32767 / 32768]


def test_gain_stops_at_the_ceiling() -> None:
    quiet = np.array([0.1, -0.2, 0.05], np.float32)
    assert apply_gain(quiet, 2.0) == pytest.approx([0.2, -0.4, 0.1])
    # 10x would reach 2.0: the gain is cut so the peak lands on the ceiling, not past it.
    assert apply_gain(quiet, 10.0) == pytest.approx([0.49, -0.98, 0.245])
    assert apply_gain(quiet, 10.0, ceiling=0.5) == pytest.approx([0.25, -0.5, 0.125])
    assert apply_gain(quiet, 0.5).dtype == np.float32
    assert apply_gain(np.zeros(3, np.float32), 4.0).tolist() == [0.0, 0.0, 0.0]
    assert apply_gain(np.zeros(0, np.float32), 4.0).size == 0


def test_frame_chunker_recuts_a_stream_and_keeps_the_remainder() -> None:
    chunker = FrameChunker(4)
    assert chunker.push(np.arange(3, dtype=np.float32)) == []
    frames = chunker.push(np.arange(3, 12, dtype=np.float32))
    assert [f.tolist() for f in frames] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert chunker.push(np.array([12, 13], np.float32)) == []
    chunker.reset()  # the partial [12, 13] is dropped
    assert [f.tolist() for f in chunker.push(np.arange(20, 25, dtype=np.float32))] == [
        [20, 21, 22, 23]
    ]
    assert chunker.push(np.array([25, 26, 27], np.float64))[0].dtype == np.float32


def test_sample_queue_takes_across_chunks_in_order() -> None:
    queue = SampleQueue(np.int16)
    assert len(queue) == 0 and queue.take(5).dtype == np.int16 and queue.take(5).size == 0
    queue.push(np.array([1, 2, 3], np.int16))
    queue.push(np.zeros(0, np.int16))  # nothing queued for an empty push
    queue.push(np.array([4, 5], np.int16))
    assert len(queue) == 5
    assert queue.take(2).tolist() == [1, 2]
    assert len(queue) == 3
    assert queue.take(2).tolist() == [3, 4]  # the rest of one chunk, then part of the next
    assert queue.take(10).tolist() == [5]  # fewer than asked when fewer are queued
    assert len(queue) == 0
    queue.push(np.array([6, 7, 8], np.int16))
    assert queue.take(3).tolist() == [6, 7, 8]
    queue.push(np.array([9], np.int16))
    queue.clear()
    assert len(queue) == 0 and queue.take(1).size == 0


def test_wav_encoding_clips_and_uses_the_subtype() -> None:
    loud = np.array([0.0, 1.5, -1.5, 0.25], np.float32)
    decoded = decode_audio(encode_wav(np.tile(loud, 4000), RATE, "PCM_24"), RATE)
    assert decoded.info.subtype == "PCM_24" and decoded.info.sample_rate == RATE
    assert decoded.samples[:4] == pytest.approx([0.0, 1.0, -1.0, 0.25], abs=1e-6)
    # Float WAV would keep any value: the encoder itself keeps replies within full scale.
    written, _ = sf.read(io.BytesIO(encode_wav(loud, RATE, "FLOAT")), dtype="float32")
    assert written.tolist() == [0.0, 1.0, -1.0, 0.25]


# -- endpointing -----------------------------------------------------------------------


def feed(
    endpointer: Endpointer, probabilities: list[float], first: int = 0
) -> list[tuple[int, EndpointEvent]]:
    """Feed one window per probability (its samples carry its index); events by index."""
    out = []
    for index, probability in enumerate(probabilities, start=first):
        window = np.full(WINDOW, index, np.float32)
        out.extend((index, event) for event in endpointer.feed(window, probability))
    return out


def endpointer(tentative_ms: int | None = None, **settings: float) -> Endpointer:
    # 96 ms = 3 windows of speech to start, 64 ms = 2 windows of gap allowed, 320 ms =
    # 10 windows of silence to end, 64 ms = 2 windows of pre-roll.
    values = {
        "min_speech_ms": 96,
        "onset_gap_ms": 64,
        "vad_hangover_ms": 320,
        "pre_roll_ms": 64,
        "vad_threshold": 0.5,
        "vad_end_offset": 0.25,
        **settings,
    }
    return Endpointer(AudioConfig(**values), RATE, WINDOW, tentative_ms)  # type: ignore[arg-type]


def test_speech_starts_on_the_window_that_completes_min_speech() -> None:
    events = feed(endpointer(), [0.0] * 4 + [0.9] * 5)
    assert [(i, type(e)) for i, e in events] == [(6, SpeechStarted)]
    assert events[0][1].at_seconds == pytest.approx(4 * 0.032)
    # One window short of min_speech (two windows): still a candidate, nothing yet.
    assert feed(endpointer(min_speech_ms=96), [0.0, 0.9, 0.9]) == []


def test_the_start_and_end_thresholds_are_inclusive() -> None:
    # 0.5 is the start threshold itself; 0.25 (= 0.5 - 0.25) the end threshold itself.
    events = feed(endpointer(), [0.5] * 3 + [0.25] * 20 + [0.2] * 10)
    assert [(i, type(e)) for i, e in events] == [(2, SpeechStarted), (32, SpeechEnded)]
    assert events[1][1].at_seconds == pytest.approx(23 * 0.032)
    # Just under the start threshold starts nothing.
    assert feed(endpointer(), [0.49] * 10) == []


def test_an_onset_survives_a_gap_of_onset_gap_ms_but_not_longer() -> None:
    kept = feed(endpointer(), [0.9, 0.0, 0.0, 0.9, 0.9])  # two silent windows: 64 ms
    assert [(i, type(e)) for i, e in kept] == [(4, SpeechStarted)]
    assert kept[0][1].at_seconds == 0.0
    dropped = feed(endpointer(), [0.9, 0.0, 0.0, 0.0, 0.9, 0.9])  # three: 96 ms
    assert dropped == []


def test_an_abandoned_onset_returns_to_the_pre_roll() -> None:
    point = endpointer(pre_roll_ms=64)
    # A one-window click (index 2), abandoned after three silent windows (3, 4, 5); its
    # windows go back to the pre-roll history, so the next onset (6) keeps 4 and 5.
    events = feed(point, [0.0, 0.0, 0.9, 0.0, 0.0, 0.0] + [0.9] * 3 + [0.0] * 10)
    kinds = [(i, type(e)) for i, e in events]
    assert kinds == [(8, SpeechStarted), (18, SpeechEnded)]
    utterance = events[1][1].utterance
    assert sorted(set(utterance.samples.astype(int).tolist())) == [4, 5, 6, 7, 8]
    assert utterance.start_seconds == pytest.approx(4 * 0.032)
    assert utterance.onset_seconds == pytest.approx(6 * 0.032)


def test_speech_ends_after_exactly_the_hangover() -> None:
    events = feed(endpointer(), [0.9] * 5 + [0.0] * 12)
    assert [(i, type(e)) for i, e in events] == [(2, SpeechStarted), (14, SpeechEnded)]
    ended = events[1][1]
    assert ended.at_seconds == pytest.approx(5 * 0.032)
    assert ended.utterance.end_seconds == pytest.approx(5 * 0.032)
    assert ended.utterance.sample_rate == RATE
    # The utterance stops at the last speech window: none of the hangover is kept.
    assert ended.utterance.samples.astype(int).tolist() == np.repeat(range(5), WINDOW).tolist()
    assert ended.utterance.duration_seconds == pytest.approx(5 * 0.032)
    assert endpointer().hangover_ms == 320


@pytest.mark.parametrize(("pre_roll_ms", "windows"), [(0, 1), (32, 1), (33, 2), (96, 3)])
def test_pre_roll_is_rounded_up_to_whole_windows(pre_roll_ms: int, windows: int) -> None:
    events = feed(endpointer(pre_roll_ms=pre_roll_ms), [0.0] * 5 + [0.9] * 3 + [0.0] * 10)
    utterance = events[-1][1].utterance
    assert utterance.start_seconds == pytest.approx((5 - windows) * 0.032)
    assert utterance.samples[0] == 5 - windows


def test_the_pre_roll_never_reaches_back_into_the_previous_utterance() -> None:
    point = endpointer(pre_roll_ms=96)
    first = feed(point, [0.9] * 3 + [0.0] * 10)
    assert isinstance(first[-1][1], SpeechEnded) and first[-1][0] == 12
    second = feed(point, [0.9] * 3 + [0.0] * 10, first=13)
    utterance = second[-1][1].utterance
    # Speech resumed right after the end: the history was cleared, so no pre-roll.
    assert utterance.start_seconds == pytest.approx(13 * 0.032)
    assert int(utterance.samples[0]) == 13


def test_the_keep_audio_is_what_the_utterance_holds() -> None:
    point = endpointer()
    events: list[EndpointEvent] = []
    for index, probability in enumerate([0.9] * 3 + [0.0] * 10):
        kept = np.full(WINDOW, -1.0, np.float32)  # the same stretch, as recognition hears it
        events += point.feed(np.full(WINDOW, index, np.float32), probability, kept)
    assert isinstance(events[-1], SpeechEnded)
    assert set(events[-1].utterance.samples.tolist()) == {-1.0}


def test_a_long_utterance_is_cut_at_max_audio_length() -> None:
    point = endpointer(max_audio_length_seconds=0.32, pre_roll_ms=0)  # 10 windows
    events = feed(point, [0.9] * 25)
    assert [(i, type(e)) for i, e in events] == [
        (2, SpeechStarted),
        (9, SpeechEnded),
        (12, SpeechStarted),
        (19, SpeechEnded),
        (22, SpeechStarted),
    ]
    assert events[1][1].utterance.duration_seconds == pytest.approx(0.32)


def test_a_pause_is_reported_once_per_silence_at_the_last_speech() -> None:
    point = endpointer(tentative_ms=64)
    events = feed(point, [0.9] * 4 + [0.0] * 3 + [0.9] * 2 + [0.0] * 12)
    kinds = [(i, type(e)) for i, e in events]
    assert kinds == [
        (2, SpeechStarted),
        (5, SpeechPaused),
        (10, SpeechPaused),
        (18, SpeechEnded),
    ]
    assert events[1][1].at_seconds == pytest.approx(4 * 0.032)
    assert events[2][1].at_seconds == pytest.approx(9 * 0.032)
    assert not any(
        isinstance(e, SpeechPaused) for _, e in feed(endpointer(), [0.9] * 4 + [0.0] * 9)
    )


def test_the_state_is_visible_while_speaking() -> None:
    point = endpointer()
    assert not point.in_speech and point.speech_seconds == 0.0 and point.end_now() is None
    assert point.utterance_samples == 0 and point.current_utterance().size == 0
    feed(point, [0.0, 0.9, 0.9, 0.9, 0.9, 0.0, 0.0])
    assert point.in_speech
    assert point.position_seconds == pytest.approx(7 * 0.032)
    assert point.speech_seconds == pytest.approx(6 * 0.032)  # since the onset (window 1)
    assert point.silence_seconds == pytest.approx(2 * 0.032)
    # Pre-roll (window 0) up to the last speech window (4).
    assert point.utterance_samples == 5 * WINDOW
    assert point.current_utterance().astype(int).tolist() == np.repeat(range(5), WINDOW).tolist()
    ended = point.end_now()
    assert isinstance(ended, SpeechEnded) and ended.at_seconds == pytest.approx(5 * 0.032)
    assert not point.in_speech and point.silence_seconds == 0.0
    assert point.position_seconds == pytest.approx(7 * 0.032)  # time goes on


def test_flush_finishes_speech_and_drops_a_candidate() -> None:
    point = endpointer()
    feed(point, [0.9] * 4)
    (ended,) = point.flush()
    assert isinstance(ended, SpeechEnded) and ended.at_seconds == pytest.approx(4 * 0.032)
    candidate = endpointer()
    feed(candidate, [0.9, 0.9])
    assert candidate.flush() == []
    # The dropped candidate's two windows do not count towards the next onset.
    assert feed(candidate, [0.9], first=2) == []


# -- echo cancellation, noise suppression, VAD -----------------------------------------


def test_the_bundled_speexdsp_is_found() -> None:
    path = _bundled_speexdsp()
    assert path is not None and Path(path).name.startswith("libspeexdsp")
    assert Path(path).is_file()


def test_the_echo_level_follows_the_playback_within_the_tail() -> None:
    canceller = EchoCanceller(RATE, FRAME_SAMPLES, tail_ms=50)  # five 10 ms frames
    try:
        assert canceller.echo_level == 0.0
        tone = 0.5 * np.sin(2 * np.pi * 500 * np.arange(FRAME_SAMPLES) / RATE)
        canceller.add_playback(tone)
        out = canceller.process(np.zeros(FRAME_SAMPLES, np.float32))
        assert out.dtype == np.float32 and len(out) == FRAME_SAMPLES
        rms = float(np.sqrt(np.mean(np.round(tone * 32767) ** 2))) / 32768
        assert canceller.echo_level == pytest.approx(rms, rel=1e-6)
        for _ in range(4):  # still within the 50 ms tail
            canceller.process(np.zeros(FRAME_SAMPLES, np.float32))
        assert canceller.echo_level == pytest.approx(rms, rel=1e-6)
        canceller.process(np.zeros(FRAME_SAMPLES, np.float32))
        assert canceller.echo_level == 0.0
        # Half a frame of playback: the reference is padded with silence.
        canceller.add_playback(tone[: FRAME_SAMPLES // 2])
        canceller.process(np.zeros(FRAME_SAMPLES, np.float32))
        half = float(np.sqrt(np.sum(np.round(tone[:80] * 32767) ** 2) / FRAME_SAMPLES)) / 32768
        assert canceller.echo_level == pytest.approx(half, rel=1e-6)
    finally:
        canceller.close()


@pytest.mark.parametrize(
    ("level", "expected"), [(0.0, 0), (0.1, 0), (0.2, 1), (0.5, 2), (0.7, 3), (1.0, 4), (3.0, 4)]
)
def test_noise_reduction_level_maps_to_webrtc_levels(level: float, expected: int) -> None:
    assert suppression_level(level) == expected
    assert suppression_level(-1.0) == 0 and MAX_SUPPRESSION_LEVEL == 4


def test_noise_suppression_removes_steady_noise() -> None:
    rng = np.random.default_rng(7)
    noise = (0.05 * rng.standard_normal(RATE)).astype(np.float32)
    strong, off = NoiseGainFilter(4, 0), NoiseGainFilter(0, 0)
    assert strong.active and not off.active and NoiseGainFilter(0, 3).active
    frames = noise.reshape(-1, FRAME_SAMPLES)
    cleaned = np.concatenate([strong.process(f) for f in frames])
    untouched = np.concatenate([off.process(f) for f in frames])
    tail = slice(RATE // 2, RATE)  # once the estimator has settled
    assert np.mean(cleaned[tail] ** 2) < 0.1 * np.mean(noise[tail] ** 2)
    assert np.mean(untouched[tail] ** 2) > 0.5 * np.mean(noise[tail] ** 2)
    with pytest.raises(ValueError, match="160"):
        strong.process(noise[:100])


def test_vad_hears_speech_and_not_silence_and_resets() -> None:
    vad = VoiceActivityDetector()
    assert vad.window_samples == WINDOW and vad.sample_rate == RATE
    sentence = speech()
    windows = [sentence[i : i + WINDOW] for i in range(0, len(sentence) - WINDOW + 1, WINDOW)]
    first = [vad.probability(w) for w in windows]
    assert max(first) > 0.9 and vad.probability(np.zeros(WINDOW, np.float32)) < 0.1
    vad.reset()
    assert [vad.probability(w) for w in windows] == first  # the same state after a reset


# -- the front end -----------------------------------------------------------------------

OFF = AudioConfig(
    enable_vad=False,
    enable_noise_reduction=False,
    enable_echo_cancellation=False,
    enable_auto_gain_control=False,
)


def test_without_vad_every_window_of_512_samples_is_speech() -> None:
    frontend = StreamingFrontEnd(OFF, RATE)
    events = frontend.process(np.full(RATE, 0.1, np.float32)) + frontend.flush()
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    # Whole 512-sample windows only: 31 of them in one second.
    assert events[1].at_seconds == 31 * 512 / RATE
    assert frontend.endpointer is frontend._endpointer


def test_residual_echo_is_gated_below_the_playback_reference() -> None:
    def heard(gate_db: float, near_rms: float, playing: float) -> bool:
        frontend = StreamingFrontEnd(replace(OFF, echo_gate_db=gate_db), RATE)
        near = np.full(RATE // 2, near_rms, np.float32)
        reference = np.full(RATE // 2, playing, np.float32)
        return bool(frontend.segment(near, near, reference) + frontend.flush())

    # 20 dB: anything under a tenth of the playback's level is its echo.
    assert not heard(20.0, 0.05, 0.6)
    assert heard(20.0, 0.05, 0.4)
    assert not heard(0.5, 0.5, 0.6)  # half a dB: just under the playback is echo
    assert heard(0.0, 0.05, 0.6)  # 0 dB switches the gate off
    assert heard(20.0, 0.00001, 0.0009)  # Coda is silent: nothing is echo
    assert not heard(20.0, 0.00001, 0.0011)
    # Without a reference (a whole message) nothing is playing.
    frontend = StreamingFrontEnd(replace(OFF, echo_gate_db=20.0), RATE)
    quiet = np.full(RATE // 2, 0.00001, np.float32)
    assert [type(e) for e in frontend.segment(quiet, quiet)] == [SpeechStarted]


def test_playback_gates_a_quiet_microphone_through_the_canceller() -> None:
    config = replace(OFF, enable_echo_cancellation=True, echo_gate_db=20.0)
    mic = np.full(RATE // 2, 0.001, np.float32)
    alone = StreamingFrontEnd(config, RATE)
    assert [type(e) for e in alone.process(mic) + alone.flush()] == [SpeechStarted, SpeechEnded]
    alone.close()
    playing = StreamingFrontEnd(config, RATE, playback_rate=24000)
    tone = 0.5 * np.sin(2 * np.pi * 300 * np.arange(24000 // 2) / 24000)
    events = []
    for index in range(50):  # 10 ms of playback beside each 10 ms of microphone
        playing.add_playback(tone[index * 240 : (index + 1) * 240])
        events += playing.process(mic[index * 160 : (index + 1) * 160])
    assert events + playing.flush() == []
    playing.close()


def test_utterances_carry_the_audio_recognition_asked_for() -> None:
    near = np.full(RATE // 2, 0.2, np.float32)
    for clean, expected in ((False, 0.2), (True, 0.1)):
        frontend = StreamingFrontEnd(replace(OFF, clean_for_recognition=clean), RATE)
        events = frontend.segment(near * 0.5, near) + frontend.flush()
        utterance = events[-1].utterance
        assert utterance.samples == pytest.approx(np.full(len(utterance.samples), expected))


def test_a_pause_inside_speech_is_reported_when_asked() -> None:
    sentence = speech("01.wav")  # "Hello ..." then a ~200 ms pause, then the rest
    mic = np.concatenate([sentence, np.zeros(RATE, np.float32)])
    paused = StreamingFrontEnd(AudioConfig(), RATE, tentative_end_ms=100)
    kinds = [type(e) for e in paused.process(mic) + paused.flush()]
    assert SpeechPaused in kinds and kinds[-1] is SpeechEnded
    plain = StreamingFrontEnd(AudioConfig(), RATE)
    assert SpeechPaused not in [type(e) for e in plain.process(mic) + plain.flush()]


def test_each_stage_is_timed_under_its_name() -> None:
    mic = np.concatenate([speech(), np.zeros(RATE // 2, np.float32)])
    captured = resample(mic, RATE, 48000)
    frontend = StreamingFrontEnd(AudioConfig(), 48000)
    started = time.perf_counter()
    for index in range(0, len(captured) - 959, 960):
        frontend.process(captured[index : index + 960])
    elapsed = time.perf_counter() - started
    frontend.close()
    assert set(frontend.stage_seconds) == {"resample", "echo", "denoise", "vad", "endpoint"}
    for stage, spent in frontend.stage_seconds.items():
        assert 0.0 < spent <= elapsed, stage  # a share of the time actually spent


def _message(*parts: np.ndarray | float) -> np.ndarray:
    """Speech and silences (seconds), at 16 kHz, one sample longer than whole frames."""
    pieces = [
        p if isinstance(p, np.ndarray) else np.zeros(int(p * RATE), np.float32) for p in parts
    ]
    return np.concatenate([*pieces, np.zeros(1, np.float32)])


def test_a_message_is_trimmed_from_the_first_onset_to_the_last_end() -> None:
    first, second = speech("01.wav"), speech("02.wav")
    message = _message(1.0, first, 1.5, second, 1.0)
    tight = clean_message(message, AudioConfig(trim_padding_ms=0))
    padded = clean_message(message, AudioConfig(trim_padding_ms=150))
    # Both sentences and the gap between them are kept, and nothing of the outer silence.
    assert len(first) + 1.5 * RATE < len(tight) < len(first) + len(second) + 1.5 * RATE
    # 150 ms more on each side, and the original samples (not the cleaned ones).
    assert len(padded) == len(tight) + 2 * 2400
    assert np.array_equal(padded[2400:-2400], tight)
    start = int(np.flatnonzero(message == tight[0])[0])
    assert np.array_equal(message[start : start + len(tight)], tight)
    assert RATE <= start <= RATE + 0.4 * RATE  # the first word, not before the silence
    # Recognition may hear the cleaned audio instead: the same stretch, other samples.
    cleaned = clean_message(message, AudioConfig(trim_padding_ms=0, clean_for_recognition=True))
    assert len(cleaned) == len(tight) and not np.array_equal(cleaned, tight)


def test_trimming_stops_at_the_ends_of_the_message() -> None:
    sentence = speech("03.wav")
    message = _message(sentence)
    wide = clean_message(message, AudioConfig(trim_padding_ms=1000))
    assert np.array_equal(wide, message)  # the padding reaches past both ends
    # Without VAD nothing is trimmed, cleaned or not.
    assert np.array_equal(clean_message(message, replace(OFF, trim_padding_ms=0)), message)
    noisy = replace(OFF, enable_noise_reduction=True, clean_for_recognition=True)
    assert len(clean_message(message, noisy)) == len(message)
    with pytest.raises(ValidationError) as raised:
        clean_message(np.zeros(RATE + 1, np.float32), AudioConfig())
    assert str(raised.value) == "no speech was detected in the audio (voice activity detection)"


def test_clean_message_uses_the_detector_it_is_given() -> None:
    vad = VoiceActivityDetector()
    window = speech()[:WINDOW]
    clean_message(_message(speech()), AudioConfig(), vad)
    after = vad.probability(window)
    vad.reset()
    assert after != vad.probability(window)  # its state moved: it heard the message


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def test_noise_reduction_and_gain_control_each_obey_their_switch() -> None:
    noise = (0.05 * np.random.default_rng(3).standard_normal(RATE)).astype(np.float32)

    def cleaned(config: AudioConfig) -> np.ndarray:
        frontend = StreamingFrontEnd(config, RATE)
        return np.concatenate([frontend.denoise(f) for f in noise.reshape(-1, FRAME_SAMPLES)])

    settled = slice(RATE // 2, RATE)
    # Suppression alone quiets steady noise; gain control alone lifts it; off, untouched.
    assert _rms(cleaned(replace(OFF, enable_noise_reduction=True))[settled]) < 0.3 * _rms(noise)
    assert _rms(cleaned(replace(OFF, enable_auto_gain_control=True))[settled]) > 1.5 * _rms(noise)
    assert np.array_equal(cleaned(OFF), noise)


def test_the_gate_sits_exactly_at_echo_gate_db() -> None:
    def gated(near_rms: float) -> bool:
        frontend = StreamingFrontEnd(replace(OFF, echo_gate_db=20.0), RATE)
        near = np.full(RATE // 2, near_rms, np.float32)
        return not frontend.segment(near, near, np.full(RATE // 2, 0.6, np.float32))

    # 20 dB below 0.6 is 0.06: a little under it is echo, a little over it is speech.
    assert gated(0.057) and not gated(0.063)


def test_without_a_canceller_nothing_counts_as_playing() -> None:
    config = replace(OFF, echo_gate_db=20.0)
    frontend = StreamingFrontEnd(config, RATE)
    frontend.add_playback(np.full(2400, 0.5, np.float32))  # no canceller: ignored
    events = frontend.process(np.full(RATE // 2, 0.001, np.float32)) + frontend.flush()
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]


def test_vad_reads_any_float_window_as_float32() -> None:
    vad = VoiceActivityDetector()
    window = speech()[WINDOW * 8 : WINDOW * 9]
    as32 = vad.probability(window)
    vad.reset()
    assert vad.probability(window.astype(np.float64)) == pytest.approx(as32, abs=1e-6)


def test_endpointing_counts_single_samples_at_any_rate() -> None:
    # One-sample windows at 22.05 kHz: every boundary lands on an exact sample.
    config = AudioConfig(
        min_speech_ms=96, onset_gap_ms=64, vad_hangover_ms=320, pre_roll_ms=10
    )  # 2116.8, 1411.2, 7056 and 220.5 samples
    point = Endpointer(config, 22050, 1, tentative_end_ms=64)
    probabilities = [0.0] * 300 + [0.9] * 3000 + [0.0] * 8000
    events = []
    for index, probability in enumerate(probabilities):
        events += [(index, e) for e in point.feed(np.full(1, index, np.float32), probability)]
    kinds = [(i, type(e)) for i, e in events]
    assert kinds == [
        (300 + 2116 - 1, SpeechStarted),  # the 2116th speech sample confirms it
        (3300 + 1411 - 1, SpeechPaused),
        (3300 + 7056 - 1, SpeechEnded),
    ]
    utterance = events[-1][1].utterance
    assert int(utterance.samples[0]) == 300 - 221  # the pre-roll rounded up to whole samples
    assert len(utterance.samples) == 221 + 3000
    # A gap of 1411 samples keeps an onset; 1412 abandons it.
    for gap, started in ((1411, True), (1412, False)):
        point = Endpointer(config, 22050, 1)
        run = [0.9] * 2000 + [0.0] * gap + [0.9] * 200  # 2200 speech samples in all
        fed = [e for p in run for e in point.feed(np.zeros(1, np.float32), p)]
        assert any(isinstance(e, SpeechStarted) for e in fed) is started
    assert endpointer().current_utterance().dtype == np.float32


def test_a_fresh_chunker_returns_float32_frames() -> None:
    assert FrameChunker(2).push(np.array([1, 2], np.float32))[0].dtype == np.float32


def test_the_canceller_points_speexdsp_at_the_bundled_library(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundled = _bundled_speexdsp()
    assert bundled is not None
    monkeypatch.delenv("SPEEXDSP_LIB", raising=False)
    EchoCanceller(RATE, FRAME_SAMPLES, 200).close()
    assert os.environ["SPEEXDSP_LIB"] == bundled
    # A library the user chose is kept.
    chosen = str(Path(bundled).parent / "." / Path(bundled).name)
    monkeypatch.setenv("SPEEXDSP_LIB", chosen)
    EchoCanceller(RATE, FRAME_SAMPLES, 200).close()
    assert os.environ["SPEEXDSP_LIB"] == chosen


def test_a_one_frame_tail_forgets_the_playback_after_one_frame() -> None:
    canceller = EchoCanceller(RATE, FRAME_SAMPLES, tail_ms=10)
    try:
        canceller.add_playback(np.full(FRAME_SAMPLES, 0.5, np.float32))
        canceller.process(np.zeros(FRAME_SAMPLES, np.float32))
        assert canceller.echo_level == pytest.approx(16384 / 32768)
        canceller.process(np.zeros(FRAME_SAMPLES, np.float32))
        assert canceller.echo_level == 0.0
    finally:
        canceller.close()
