"""Endpointing: turn per-window speech probabilities into utterances.

Time is counted in samples, so the logic is exact and testable without a clock.
A speech onset is confirmed only after ``min_speech_ms`` of speech, allowing gaps
of up to ``onset_gap_ms`` (a click or a short "mm" never starts a turn); the
utterance keeps ``pre_roll_ms`` of audio before the onset so the first syllable
survives; it ends after
``vad_hangover_ms`` below the end threshold (``vad_threshold - vad_end_offset``)
or when it reaches ``max_audio_length_seconds``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from coda.core.config import AudioConfig


@dataclass(frozen=True)
class SpeechStarted:
    """Speech was confirmed; ``at_seconds`` is its onset in the stream."""

    at_seconds: float


@dataclass(frozen=True)
class Utterance:
    """One stretch of speech, with its pre-roll, as float32 samples.

    ``start_seconds`` is where ``samples`` begin (the pre-roll included);
    ``onset_seconds`` is where speech was detected.
    """

    samples: np.ndarray
    sample_rate: int
    start_seconds: float
    onset_seconds: float
    end_seconds: float

    @property
    def duration_seconds(self) -> float:
        """Length of ``samples`` in seconds."""
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class SpeechEnded:
    """Speech ended at ``at_seconds`` (end of the last speech window)."""

    at_seconds: float
    utterance: Utterance


@dataclass(frozen=True)
class SpeechPaused:
    """Silence began inside speech (the tentative end): recognition may start now."""

    at_seconds: float


EndpointEvent = SpeechStarted | SpeechPaused | SpeechEnded


class Endpointer:
    """A small state machine over VAD windows: idle → candidate → speech → idle."""

    def __init__(
        self,
        config: AudioConfig,
        sample_rate: int,
        window_samples: int,
        tentative_end_ms: int | None = None,
    ) -> None:
        self._rate = sample_rate
        self._window = window_samples
        self._start_threshold = config.vad_threshold
        self._end_threshold = config.vad_threshold - config.vad_end_offset
        self._min_speech = config.min_speech_ms * sample_rate // 1000
        self._onset_gap = config.onset_gap_ms * sample_rate // 1000
        self._hangover = config.vad_hangover_ms * sample_rate // 1000
        # None: no pause events; else silence (ms) inside speech that emits one.
        self._tentative = (
            None if tentative_end_ms is None else tentative_end_ms * sample_rate // 1000
        )
        self._max_samples = int(config.max_audio_length_seconds * sample_rate)
        pre_roll_windows = -(-config.pre_roll_ms * sample_rate // 1000 // window_samples)
        self._pre_roll_windows = max(1, pre_roll_windows)
        self._history: deque[np.ndarray] = deque(maxlen=self._pre_roll_windows)
        self._position = 0  # samples seen so far
        self.reset()

    def reset(self) -> None:
        """Back to idle, dropping any speech in progress."""
        self._state = "idle"
        self._onset = 0
        self._last_speech_end = 0
        self._speech_run = 0
        self._silence_run = 0
        self._paused = False
        self._collected: list[np.ndarray] = []
        self._collected_start = 0

    @property
    def in_speech(self) -> bool:
        """True between a confirmed onset and its end."""
        return self._state == "speech"

    @property
    def position_seconds(self) -> float:
        """Stream time consumed so far."""
        return self._position / self._rate

    def feed(
        self, window: np.ndarray, probability: float, keep: np.ndarray | None = None
    ) -> list[EndpointEvent]:
        """Advance by one VAD window and its speech probability.

        Args:
            window: The audio the probability was computed on.
            probability: Speech probability of ``window``.
            keep: The same stretch as it should appear in utterances (default: ``window``).
        """
        window = window if keep is None else keep
        start = self._position
        self._position += len(window)
        events: list[EndpointEvent] = []
        if self._state == "idle":
            if probability >= self._start_threshold:
                self._state = "candidate"
                self._onset = start
                self._collected = list(self._history)
                self._collected_start = start - sum(len(w) for w in self._history)
                self._speech_run = 0
                self._silence_run = 0
            else:
                self._history.append(window)
                return events
        self._collected.append(window)
        if probability >= self._end_threshold:
            self._speech_run += len(window)
            self._silence_run = 0
            self._paused = False
            self._last_speech_end = self._position
        else:
            self._silence_run += len(window)
        if self._state == "candidate":
            if self._speech_run >= self._min_speech:
                self._state = "speech"
                events.append(SpeechStarted(self._onset / self._rate))
            elif self._silence_run > self._onset_gap:
                self._abandon()
                return events
        if self._state == "speech":
            too_long = self._position - self._collected_start >= self._max_samples
            if self._silence_run >= self._hangover or too_long:
                events.append(self._finish())
            elif (
                self._tentative is not None
                and not self._paused
                and self._silence_run >= self._tentative
            ):
                self._paused = True
                events.append(SpeechPaused(self._last_speech_end / self._rate))
        return events

    @property
    def hangover_ms(self) -> int:
        """The silence after which an utterance ends on its own, in ms."""
        return self._hangover * 1000 // self._rate

    @property
    def silence_seconds(self) -> float:
        """Silence since the last speech window (0 when idle or speaking)."""
        return self._silence_run / self._rate if self._state == "speech" else 0.0

    def end_now(self) -> SpeechEnded | None:
        """End the utterance in progress now (the turn is known to be complete)."""
        return self._finish() if self._state == "speech" else None

    @property
    def speech_seconds(self) -> float:
        """How long the current speech has lasted since its onset (0 when idle)."""
        if self._state != "speech":
            return 0.0
        return (self._position - self._onset) / self._rate

    @property
    def utterance_samples(self) -> int:
        """Length of ``current_utterance()``, without building it."""
        return max(0, self._last_speech_end - self._collected_start) if self._collected else 0

    def current_utterance(self) -> np.ndarray:
        """The utterance as it would end now (pre-roll up to the last speech window)."""
        if not self._collected:
            return np.zeros(0, np.float32)
        return np.concatenate(self._collected)[: self.utterance_samples]

    def flush(self) -> list[EndpointEvent]:
        """End the stream: a confirmed utterance in progress is finished."""
        if self._state == "speech":
            return [self._finish()]
        self.reset()
        return []

    def _abandon(self) -> None:
        # Too short to be speech: the windows go back to the pre-roll history.
        for window in self._collected[-self._pre_roll_windows :]:
            self._history.append(window)
        self.reset()

    def _finish(self) -> SpeechEnded:
        utterance = Utterance(
            self.current_utterance(),
            self._rate,
            self._collected_start / self._rate,
            self._onset / self._rate,
            self._last_speech_end / self._rate,
        )
        event = SpeechEnded(self._last_speech_end / self._rate, utterance)
        self._history.clear()
        self.reset()
        return event
