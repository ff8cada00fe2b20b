"""The contracts every provider implements: one small protocol per role.

Providers load lazily in ``load()`` (called once from the engine's
``initialize()``), run inference off the event loop, and free their models in
``close()``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from coda.core.models import LLMMessage


@dataclass(frozen=True)
class Transcript:
    """What speech recognition heard.

    Attributes:
        text: The recognized words.
        confidence: Mean token probability times speech probability, in [0, 1].
        language: Detected or configured language code.
        audio_seconds: Duration of the recognized audio.
    """

    text: str
    confidence: float
    language: str
    audio_seconds: float


@dataclass(frozen=True)
class SpeechAudio:
    """Synthesized speech: mono float32 samples in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_seconds(self) -> float:
        """Duration in seconds."""
        return len(self.samples) / self.sample_rate


@dataclass
class GenerationStats:
    """Filled in by a language model while it streams."""

    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class GenerationRequest:
    """One chat completion request.

    ``json_schema`` constrains the reply to JSON matching the schema (grammar-
    constrained decoding where the engine supports it).
    """

    messages: Sequence[LLMMessage]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None = None
    json_schema: dict[str, Any] | None = None


@runtime_checkable
class SpeechToText(Protocol):
    """Speech recognition: 16 kHz mono audio in, text out."""

    name: str
    sample_rate: int

    async def load(self) -> None:
        """Load the model (once)."""

    async def transcribe(self, samples: np.ndarray) -> Transcript:
        """Recognize the speech in ``samples`` (float32 mono at ``sample_rate``)."""
        ...

    async def close(self) -> None:
        """Free the model."""


@runtime_checkable
class TextToSpeech(Protocol):
    """Speech synthesis: text in, audio out."""

    name: str

    async def load(self) -> None:
        """Load the voice (once)."""

    async def synthesize(self, text: str, speaking_rate: float = 1.0) -> SpeechAudio:
        """Speak ``text``, ``speaking_rate`` times faster than the voice's own pace."""
        ...

    async def close(self) -> None:
        """Free the voice."""


@runtime_checkable
class LanguageModel(Protocol):
    """A chat model that streams its reply."""

    name: str
    model: str

    async def load(self) -> None:
        """Load the model or check the server answers (raises LLMIntegrationError)."""

    def stream(
        self, request: GenerationRequest, stats: GenerationStats
    ) -> AsyncGenerator[str, None]:
        """Yield the reply's text deltas; fill ``stats`` as it goes."""
        ...

    async def close(self) -> None:
        """Free the model or the connection."""


@runtime_checkable
class SpeechToSpeech(Protocol):
    """A full-duplex speech model (Moshi): audio in, audio and text out."""

    name: str
    finish_reason: str | None

    async def load(self) -> None:
        """Connect or load."""

    def respond(self, samples: np.ndarray, sample_rate: int) -> AsyncIterator[SpeechAudio | str]:
        """Stream the reply to one utterance: audio pieces and text pieces."""
        ...

    async def close(self) -> None:
        """Disconnect or free."""
