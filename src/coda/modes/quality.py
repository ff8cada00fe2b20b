"""Quality scores of a reply, each in [0, 1], computed from measured signals.

- confidence: how sure recognition was of the user's words (Whisper's mean token
  probability times its speech probability; 1.0 when the text was given).
- relevance: the share of the question's content words the reply takes up (a
  lexical proxy, smoothed so an empty question is neutral).
- coherence: the reply ended on its own, ends a sentence, and does not repeat itself.
- audio quality: the reply audio is neither clipped nor too quiet nor mostly silent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_WORD = re.compile(r"[a-z0-9']+")
# fmt: off
STOPWORDS = frozenset((
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "am", "i", "you", "he",
    "she", "it", "we", "they", "me", "my", "your", "our", "their", "his", "her", "its",
    "what", "who", "whom", "which", "when", "where", "why", "how", "do", "does", "did",
    "can", "could", "would", "should", "will", "shall", "of", "to", "in", "on", "at",
    "for", "with", "about", "from", "by", "and", "or", "but", "not", "no", "yes", "so",
    "if", "then", "than", "that", "this", "these", "those", "there", "here", "please",
    "tell", "me", "us", "just", "some", "any",
))
# fmt: on


@dataclass(frozen=True)
class QualityWeights:
    """The scoring's tunables.

    Attributes:
        truncated_factor: Coherence multiplier when the reply hit the token limit.
        unfinished_factor: Coherence multiplier when the reply ends mid-sentence.
        target_rms_dbfs: Loudness (dBFS) at and above which level is fully good.
        quiet_rms_dbfs: Loudness (dBFS) at and below which level scores 0.
        clip_level: Sample magnitude counted as clipped (full scale = 1.0).
        silence_level: Sample magnitude under which a 20 ms frame is silence.
    """

    truncated_factor: float = 0.6
    unfinished_factor: float = 0.85
    target_rms_dbfs: float = -24.0
    quiet_rms_dbfs: float = -50.0
    clip_level: float = 0.999
    silence_level: float = 0.01


DEFAULT_WEIGHTS = QualityWeights()


def content_words(text: str) -> set[str]:
    """Lower-cased words of ``text`` without stopwords."""
    return {w.strip("'") for w in _WORD.findall(text.lower()) if w not in STOPWORDS}


def relevance(question: str, answer: str) -> float:
    """Smoothed share of the question's content words found in the answer."""
    if not answer.strip():
        return 0.0
    asked = content_words(question)
    said = content_words(answer)
    covered = sum(1 for word in asked if word in said or word.rstrip("s") in said)
    return (covered + 1) / (len(asked) + 1)


def coherence(answer: str, finish_reason: str | None, w: QualityWeights = DEFAULT_WEIGHTS) -> float:
    """Ended naturally × ends a sentence × share of distinct word trigrams."""
    words = _WORD.findall(answer.lower())
    if not words:
        return 0.0
    score = w.truncated_factor if finish_reason == "length" else 1.0
    if not answer.rstrip().endswith((".", "!", "?", "…", '"', ")")):
        score *= w.unfinished_factor
    trigrams = list(zip(words, words[1:], words[2:], strict=False))
    if trigrams:
        score *= len(set(trigrams)) / len(trigrams)
    return float(score)


def audio_quality(
    samples: np.ndarray, sample_rate: int, w: QualityWeights = DEFAULT_WEIGHTS
) -> float:
    """(1 - clipped share) × loudness score × share of non-silent 20 ms frames."""
    if samples.size == 0:
        return 0.0
    magnitude = np.abs(samples)
    clipped = float(np.mean(magnitude >= w.clip_level))
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    dbfs = 20.0 * np.log10(max(rms, 1e-9))
    span = w.target_rms_dbfs - w.quiet_rms_dbfs
    level = float(np.clip((dbfs - w.quiet_rms_dbfs) / span, 0.0, 1.0))
    frame = max(1, sample_rate // 50)
    usable = magnitude[: len(magnitude) // frame * frame]
    if usable.size:
        frame_peaks = usable.reshape(-1, frame).max(axis=1)
        voiced = float(np.mean(frame_peaks >= w.silence_level))
    else:
        voiced = float(np.max(magnitude) >= w.silence_level)
    return float(np.clip((1.0 - clipped) * level * voiced, 0.0, 1.0))
