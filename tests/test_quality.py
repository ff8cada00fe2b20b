"""Quality scores respond to the signals they measure."""

from __future__ import annotations

import numpy as np

from coda.modes import quality


def test_relevance_prefers_on_topic_answers() -> None:
    question = "What is the capital of France?"
    on_topic = quality.relevance(question, "The capital of France is Paris.")
    off_topic = quality.relevance(question, "I like turtles.")
    assert on_topic == 1.0
    assert off_topic < 0.5
    assert quality.relevance(question, "") == 0.0


def test_coherence_penalizes_truncation_and_repetition() -> None:
    clean = quality.coherence("The capital of France is Paris.", "stop")
    truncated = quality.coherence("The capital of France is", "length")
    looping = quality.coherence("I am here I am here I am here I am here.", "stop")
    assert clean == 1.0
    assert truncated < 0.6
    assert looping < 0.6
    assert quality.coherence("", "stop") == 0.0


def test_audio_quality_penalizes_clipping_quietness_and_silence() -> None:
    rate = 24000
    t = np.arange(rate) / rate
    speech_like = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    good = quality.audio_quality(speech_like, rate)
    clipped = quality.audio_quality(np.clip(speech_like * 10, -1, 1), rate)
    quiet = quality.audio_quality(speech_like * 0.003, rate)
    mostly_silent = quality.audio_quality(
        np.concatenate([speech_like[:2400], np.zeros(21600)]), rate
    )
    assert good > 0.9
    assert clipped < good and quiet < 0.2 and mostly_silent < 0.2
    assert quality.audio_quality(np.zeros(0, np.float32), rate) == 0.0
