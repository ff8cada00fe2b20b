"""The spec's data types: messages, responses, stream chunks, conversation state, enums."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from coda.audio.decode import RAW_FORMATS, RawFormat, probe_audio
from coda.core.config import AudioConfig
from coda.core.enums import ConflictResolutionStrategy, SyncEventType, VoiceProcessingMode
from coda.core.errors import ValidationError
from coda.core.ids import check_conversation_id

__all__ = [
    "ConflictResolutionStrategy",
    "ConversationState",
    "ConversationTurn",
    "LLMMessage",
    "SyncEventType",
    "ToolResult",
    "VoiceMessage",
    "VoiceProcessingMode",
    "VoiceResponse",
    "VoiceStreamChunk",
    "new_id",
]


def new_id(prefix: str) -> str:
    """A fresh unique identifier such as ``msg_3f2a...``."""
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass
class VoiceMessage:
    """Voice message containing audio data and processing metadata.

    Attributes:
        conversation_id: Unique identifier for the conversation.
        audio_data: Raw audio data in bytes (WAV format preferred). May be empty
            only when ``text_content`` is given.
        text_content: Optional transcribed text content; when given, speech
            recognition is skipped and this text is the user's turn.
        timestamp: When the message was created.
        speaker: Speaker identifier (default: "user").
        processing_mode: Preferred processing mode.
        metadata: Additional metadata for processing.
        message_id: Unique id of this message (default: a fresh one).
        sample_rate: Populated by ``validate()``: the input's rate in Hz.
        channels: Populated by ``validate()``.
        duration_seconds: Populated by ``validate()``.
        format: Populated by ``validate()`` ("wav", "flac", ...).
    """

    conversation_id: str
    audio_data: bytes
    text_content: str | None = None
    timestamp: float = field(default_factory=time.time)
    speaker: str = "user"
    processing_mode: VoiceProcessingMode = VoiceProcessingMode.ADAPTIVE
    metadata: dict[str, Any] = field(default_factory=dict)

    # Audio metadata (auto-populated during validation)
    sample_rate: int | None = None
    channels: int | None = None
    duration_seconds: float | None = None
    format: str | None = None

    message_id: str = field(default_factory=lambda: new_id("msg"))

    def raw_format(self) -> RawFormat | None:
        """The declared raw PCM format, when ``format`` names one (e.g. "pcm_s16le").

        Raises:
            ValidationError: If raw PCM is declared without its rate and channels.
        """
        if self.format not in RAW_FORMATS:
            return None
        if not self.sample_rate or not self.channels:
            raise ValidationError(
                f"raw {self.format} audio needs sample_rate and channels on the message"
            )
        return RawFormat(self.format, self.sample_rate, self.channels)

    def validate(self, policy: AudioConfig | None = None) -> None:
        """Validate the voice message data and populate the audio metadata.

        Headerless PCM is accepted when ``format`` declares it (one of
        ``coda.audio.decode.RAW_FORMATS``) together with ``sample_rate`` and ``channels``.

        Args:
            policy: The ``AudioConfig`` whose input policy applies (None: defaults).

        Raises:
            ValidationError: If message data is invalid.
        """
        check_conversation_id(self.conversation_id)
        if not isinstance(self.audio_data, bytes | bytearray | memoryview):
            raise ValidationError(f"audio_data must be bytes, got {type(self.audio_data).__name__}")
        if not self.audio_data:
            if self.text_content and self.text_content.strip():
                return
            raise ValidationError("audio_data is empty and no text_content was given")
        raw = self.raw_format()
        info = probe_audio(bytes(self.audio_data), policy, raw)
        self.sample_rate = info.sample_rate
        self.channels = info.channels
        self.duration_seconds = info.duration_seconds
        if raw is None:
            self.format = info.format

    def get_audio_metadata(self) -> dict[str, Any]:
        """Get audio metadata from the audio data.

        Returns:
            Dictionary containing audio format information.

        Raises:
            ValidationError: If the audio cannot be read.
        """
        return probe_audio(bytes(self.audio_data), raw=self.raw_format()).as_dict()


@dataclass
class VoiceResponse:
    """Voice response containing processed audio and text.

    Attributes:
        conversation_id: Conversation this response belongs to.
        text_content: Generated text response.
        audio_data: Generated audio response (optional), in ``AudioConfig``'s format,
            bit depth, channels and sample rate (WAV by default).
        timestamp: When the response was generated.
        processing_time: Time taken to process (milliseconds).
        confidence_score: Confidence in the response quality (0.0-1.0).
        processing_mode: Mode used for processing.
        metadata: Additional response metadata (transcript, timings_ms, ...).
        relevance_score: How well the reply addresses the question (0.0-1.0).
        coherence_score: How complete and well-formed the reply is (0.0-1.0).
        audio_quality_score: Level and clipping of the reply audio (0.0-1.0).
    """

    conversation_id: str
    text_content: str
    audio_data: bytes | None = None
    timestamp: float = field(default_factory=time.time)
    processing_time: float | None = None
    confidence_score: float | None = None
    processing_mode: VoiceProcessingMode | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    # Response quality metrics
    relevance_score: float | None = None
    coherence_score: float | None = None
    audio_quality_score: float | None = None

    def get_quality_metrics(self) -> dict[str, float]:
        """Get all quality metrics for the response.

        Returns:
            Dictionary of the quality metrics that were computed.
        """
        metrics = {
            "confidence_score": self.confidence_score,
            "relevance_score": self.relevance_score,
            "coherence_score": self.coherence_score,
            "audio_quality_score": self.audio_quality_score,
        }
        return {name: value for name, value in metrics.items() if value is not None}

    def is_high_quality(self, threshold: float = 0.8) -> bool:
        """Check if response meets quality threshold.

        Args:
            threshold: Quality threshold (0.0-1.0), compared with the mean metric.

        Returns:
            True if the mean of the computed metrics is at least ``threshold``.
        """
        metrics = self.get_quality_metrics()
        if not metrics:
            return False
        return sum(metrics.values()) / len(metrics) >= threshold


@dataclass
class VoiceStreamChunk:
    """One piece of a streamed answer.

    Attributes:
        conversation_id: Conversation the chunk belongs to.
        sequence: Position of the chunk in its stream, from 0.
        kind: "transcript" (the user's words), "text" (a reply text delta),
            "audio" (a synthesized piece of the reply) or "final".
        text_content: Text of this chunk (transcript, delta, or sentence spoken).
        audio_data: This piece of the reply, for "audio" chunks (and, without
            streaming, the final one), encoded as ``AudioConfig`` says.
        is_final: True on the last chunk of the stream.
        timestamp: When the chunk was produced.
        elapsed_ms: Milliseconds since the turn started.
        metadata: For the final chunk: the whole reply's timings and scores.
    """

    conversation_id: str
    sequence: int
    kind: str
    text_content: str | None = None
    audio_data: bytes | None = None
    is_final: bool = False
    timestamp: float = field(default_factory=time.time)
    elapsed_ms: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class ConversationTurn:
    """One finished exchange: what the user said and what Coda answered.

    ``context`` is the extra text the reply was made with (memories, tool results).
    It stays with the turn in memory, so later prompts render this turn as the
    LLM saw it and its cached prefix stays valid; the store does not keep it.
    """

    user_text: str
    assistant_text: str
    mode: VoiceProcessingMode
    timestamp: float = field(default_factory=time.time)
    message_id: str | None = None
    context: str | None = None


@dataclass
class ConversationState:
    """State of one voice conversation.

    Attributes:
        conversation_id: Unique id.
        is_active: False once the conversation has ended.
        current_mode: Mode of the latest turn (None before the first).
        turns: Finished turns, oldest first (bounded by ``max_conversation_length``).
        started_at: Start time (epoch seconds).
        last_activity: Time of the latest turn or change.
        ended_at: End time, once ended.
        metrics: Running figures (turn count, mean latency, ...).
        summary: What the turns no longer held in ``turns`` said, summarized
            (empty until the history first outgrows ``max_conversation_length``).
        owner: Who may use it through the server: the API key (tenant) that
            created it; None for one started here, through the Python API or the CLI.
    """

    conversation_id: str
    is_active: bool = True
    current_mode: VoiceProcessingMode | None = None
    turns: list[ConversationTurn] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    last_activity: float = field(default_factory=time.time)
    ended_at: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    owner: str | None = None

    def owned_by(self, tenant: str) -> bool:
        """Whether ``tenant`` may use this conversation (its owner's, or nobody's)."""
        return self.owner is None or self.owner == tenant

    @property
    def turn_count(self) -> int:
        """Number of turns kept in this state."""
        return len(self.turns)


@dataclass
class LLMMessage:
    """One chat message sent to a language model."""

    role: str
    content: str

    def as_dict(self) -> dict[str, str]:
        """The message in the OpenAI/Ollama wire shape."""
        return {"role": self.role, "content": self.content}


@dataclass
class ToolResult:
    """Outcome of one tool call made during a voice turn."""

    tool_name: str
    arguments: dict[str, Any]
    success: bool
    result: Any = None
    error: str | None = None
    duration_ms: float = 0.0
    call_id: str = field(default_factory=lambda: new_id("call"))
