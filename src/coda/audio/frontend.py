"""The audio front end: resample → echo cancellation → noise/gain → VAD → endpointing.

``StreamingFrontEnd`` takes live microphone frames (10, 20 or 30 ms at any
accepted rate) and emits speech-start and speech-end events with the cleaned
utterance. ``clean_message`` runs a whole message through the same stages and
trims it to its speech. Each stage obeys its ``AudioConfig`` switch.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import soxr

from coda.audio.denoise import NoiseGainFilter, suppression_level
from coda.audio.echo import EchoCanceller
from coda.audio.endpointing import Endpointer, EndpointEvent, SpeechEnded
from coda.audio.frames import FRAME_SAMPLES, FRONT_END_RATE, FrameChunker
from coda.audio.vad import VoiceActivityDetector
from coda.core.config import AudioConfig
from coda.core.errors import ValidationError

STAGES = ("resample", "echo", "denoise", "vad", "endpoint")
SILENCE_RMS = 1e-3
"""A playback reference quieter than this (-60 dBFS) means Coda is silent."""


class StreamingFrontEnd:
    """Cleans and segments live audio; not thread-safe (one per session).

    Args:
        config: The audio settings (switches and tunables).
        input_rate: Rate of the frames given to ``process``, in Hz.
        playback_rate: Rate of the audio given to ``add_playback``, in Hz.
        vad: A detector to reuse (it is reset); None loads a new one.
        tentative_end_ms: Emit ``SpeechPaused`` after this much silence inside speech.
    """

    def __init__(
        self,
        config: AudioConfig,
        input_rate: int,
        playback_rate: int = 24000,
        vad: VoiceActivityDetector | None = None,
        tentative_end_ms: int | None = None,
    ) -> None:
        if input_rate not in config.input_sample_rates:
            raise ValidationError(
                f"input rate {input_rate} Hz is not supported; "
                f"use one of {config.input_sample_rates}"
            )
        self.config = config
        self.input_rate = input_rate
        self._input = soxr.ResampleStream(input_rate, FRONT_END_RATE, 1, dtype="float32")
        self._playback = soxr.ResampleStream(playback_rate, FRONT_END_RATE, 1, dtype="float32")
        self._frames = FrameChunker(FRAME_SAMPLES)
        self._echo = (
            EchoCanceller(FRONT_END_RATE, FRAME_SAMPLES, config.echo_tail_ms)
            if config.enable_echo_cancellation
            else None
        )
        level = (
            suppression_level(config.noise_reduction_level) if config.enable_noise_reduction else 0
        )
        agc = config.agc_target_dbfs if config.enable_auto_gain_control else 0
        self._denoise = NoiseGainFilter(level, agc) if (level or agc) else None
        self._vad = (vad or VoiceActivityDetector(FRONT_END_RATE)) if config.enable_vad else None
        if self._vad is not None:
            self._vad.reset()
        window = self._vad.window_samples if self._vad else 512
        self._windows = FrameChunker(window)
        self._near = FrameChunker(window)  # echo-cancelled, before suppression and gain
        self._reference = FrameChunker(window)  # per-sample playback reference RMS
        self._gate_ratio = 10 ** (-config.echo_gate_db / 20) if config.echo_gate_db > 0 else 0.0
        self._endpointer = Endpointer(config, FRONT_END_RATE, window, tentative_end_ms)
        self.stage_seconds: dict[str, float] = defaultdict(float)

    @property
    def endpointer(self) -> Endpointer:
        """The endpointing state (is the user speaking, for how long, what so far)."""
        return self._endpointer

    def add_playback(self, samples: np.ndarray) -> None:
        """Tell the echo canceller what Coda is playing now (float, at ``playback_rate``)."""
        if self._echo is not None and samples.size:
            self._echo.add_playback(self._playback.resample_chunk(samples.astype(np.float32)))

    def process(self, frame: np.ndarray) -> list[EndpointEvent]:
        """Feed one captured frame (float32 mono at ``input_rate``); return new events."""
        clock = time.perf_counter
        started = clock()
        audio = self._input.resample_chunk(np.asarray(frame, np.float32))
        self.stage_seconds["resample"] += clock() - started
        events: list[EndpointEvent] = []
        for piece in self._frames.push(audio):
            events.extend(self._process_frame(piece))
        return events

    def _process_frame(self, frame: np.ndarray) -> list[EndpointEvent]:
        echo_free = self.cancel_echo(frame)
        reference = self._echo.echo_level if self._echo is not None else 0.0
        level = np.full(len(frame), reference, np.float32)
        return self.segment(self.denoise(echo_free), echo_free, level)

    def _is_residual_echo(self, near: np.ndarray, reference: np.ndarray) -> bool:
        """Coda is playing and what is left after cancellation is far below it."""
        playing = float(np.max(reference))
        if not self._gate_ratio or playing < SILENCE_RMS:
            return False
        return float(np.sqrt(np.mean(np.square(near)))) < playing * self._gate_ratio

    def cancel_echo(self, frame: np.ndarray) -> np.ndarray:
        """Echo cancellation of one 10 ms 16 kHz frame (a no-op when disabled)."""
        return self._timed("echo", self._echo.process, frame) if self._echo else frame

    def denoise(self, frame: np.ndarray) -> np.ndarray:
        """Noise suppression and gain control of one 10 ms 16 kHz frame."""
        return self._timed("denoise", self._denoise.process, frame) if self._denoise else frame

    def _timed(
        self, stage: str, stage_fn: Callable[[np.ndarray], np.ndarray], frame: np.ndarray
    ) -> np.ndarray:
        started = time.perf_counter()
        out = stage_fn(frame)
        self.stage_seconds[stage] += time.perf_counter() - started
        return out

    def segment(
        self, cleaned: np.ndarray, original: np.ndarray, reference: np.ndarray | None = None
    ) -> list[EndpointEvent]:
        """Voice activity detection on ``cleaned`` audio, and endpointing.

        ``reference`` holds, per sample, the RMS of what Coda was playing; a window
        of ``original`` (echo-cancelled) audio far below it is residual echo and never
        counts as speech.

        Utterances carry ``cleaned`` when ``clean_for_recognition`` is set, else
        ``original`` (the same stretch before suppression and gain).
        """
        clock = time.perf_counter
        events: list[EndpointEvent] = []
        levels = np.zeros(len(cleaned), np.float32) if reference is None else reference
        for window, near, playing in zip(
            self._windows.push(cleaned),
            self._near.push(original),
            self._reference.push(levels),
            strict=True,
        ):
            started = clock()
            probability = self._vad.probability(window) if self._vad else 1.0
            if self._is_residual_echo(near, playing):
                probability = 0.0
            self.stage_seconds["vad"] += clock() - started
            started = clock()
            kept = window if self.config.clean_for_recognition else near
            events.extend(self._endpointer.feed(window, probability, kept))
            self.stage_seconds["endpoint"] += clock() - started
        return events

    def flush(self) -> list[EndpointEvent]:
        """End of stream: finish an utterance in progress."""
        return self._endpointer.flush()

    def close(self) -> None:
        """Free native state."""
        if self._echo is not None:
            self._echo.close()


def clean_message(
    samples: np.ndarray, config: AudioConfig, vad: VoiceActivityDetector | None = None
) -> np.ndarray:
    """Clean a whole 16 kHz message and trim it to its speech (plus padding).

    Runs noise suppression, gain control and VAD as the live path does (there is
    no far end to cancel); the result is the cleaned or the original audio as
    ``clean_for_recognition`` says. Without VAD nothing is trimmed.

    Args:
        samples: The message, mono float32 at 16 kHz.
        config: The audio settings.
        vad: A detector to reuse (not concurrently); None loads one.

    Raises:
        ValidationError: If the VAD finds no speech at all.
    """
    offline = replace(config, enable_echo_cancellation=False)
    frontend = StreamingFrontEnd(offline, FRONT_END_RATE, vad=vad)
    try:
        padded = np.concatenate([samples, np.zeros(-len(samples) % FRAME_SAMPLES, np.float32)])
        cleaned: list[np.ndarray] = []
        events: list[EndpointEvent] = []
        for frame in padded.reshape(-1, FRAME_SAMPLES):
            cleaned.append(frontend.denoise(frame))
            events.extend(frontend.segment(cleaned[-1], frame))
        events.extend(frontend.flush())
    finally:
        frontend.close()
    audio = samples
    if config.clean_for_recognition and cleaned:
        audio = np.concatenate(cleaned)[: len(samples)]
    if not config.enable_vad:
        return audio
    ends = [event for event in events if isinstance(event, SpeechEnded)]
    if not ends:
        raise ValidationError("no speech was detected in the audio (voice activity detection)")
    pad = config.trim_padding_ms * FRONT_END_RATE // 1000
    start = max(0, int(ends[0].utterance.onset_seconds * FRONT_END_RATE) - pad)
    end = min(len(audio), int(ends[-1].at_seconds * FRONT_END_RATE) + pad)
    return audio[start:end]
