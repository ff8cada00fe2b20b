"""Configuration dataclasses: the spec's, plus the provider settings the spec leaves open.

Every tunable lives here with its unit; nothing downstream hard-codes a threshold.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from coda.core.enums import VoiceProcessingMode
from coda.core.errors import ConfigurationError
from coda.core.integration_config import (
    VoiceConversationSyncConfig,
    VoiceMemoryConfig,
    VoicePersonalityConfig,
    VoiceToolsConfig,
)
from coda.core.provider_config import LLMConfig, MoshiConfig, STTConfig, TTSConfig
from coda.core.streaming_config import StreamingConfig
from coda.store.location import StoreLocation, parse_store

__all__ = [
    "AudioConfig",
    "LLMConfig",
    "MoshiConfig",
    "STTConfig",
    "StreamingConfig",
    "TTSConfig",
    "VoiceConfig",
    "VoiceProcessingConfig",
]

SUPPORTED_SAMPLE_RATES = (16000, 24000, 44100, 48000)
SUPPORTED_FORMATS = ("wav", "mp3", "flac")
SUPPORTED_BIT_DEPTHS = (16, 24, 32)
INPUT_ENCODINGS = (
    "PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE",
    "ULAW", "ALAW", "VORBIS", "OPUS", "MPEG_LAYER_III",
)  # fmt: skip


def default_cache_dir() -> Path:
    """Where assembled models live: ``$CODA_CACHE_DIR`` or ``~/.cache/coda``."""
    env = os.environ.get("CODA_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "coda"


def default_data_dir() -> Path:
    """Where conversations persist: ``$CODA_DATA_DIR`` or ``~/.local/share/coda``."""
    env = os.environ.get("CODA_DATA_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "coda"


@dataclass
class AudioConfig:
    """Audio processing configuration.

    Defines audio format, quality settings, and processing options.

    Attributes:
        sample_rate: Audio sample rate in Hz (16000, 24000, 44100, 48000); replies use it.
        channels: Number of audio channels (1=mono, 2=stereo) of the reply audio (the
            voice is in both channels of stereo).
        format: Audio format ("wav", "mp3", "flac") of the reply audio (responses and
            streamed chunks).
        bit_depth: Audio bit depth (16, 24, 32) of WAV and FLAC replies; FLAC holds at
            most 24 bits, and MP3, being compressed, has no bit depth.
        enable_vad: Enable Voice Activity Detection.
        enable_noise_reduction: Enable noise reduction.
        enable_echo_cancellation: Enable echo cancellation.
        enable_auto_gain_control: Enable automatic gain control.
        vad_threshold: Speech probability above which a frame is speech (0-1).
        noise_reduction_level: Strength of noise suppression (0-1).
        max_audio_length_seconds: Longest accepted input message, in seconds.
        min_audio_length_seconds: Shortest accepted input message, in seconds.
        silence_peak_threshold: Peak amplitude (full scale = 1.0) under which input is silent.
        input_sample_rates: Sample rates accepted on input, in Hz (others are refused).
        max_input_channels: Most channels accepted on input (they are mixed to mono).
        input_encodings: libsndfile sample encodings accepted on input.
        max_input_bytes: Largest encoded message accepted, in bytes.
        vad_end_offset: Speech ends when the speech probability falls below
            ``vad_threshold - vad_end_offset`` (hysteresis against flicker).
        vad_hangover_ms: Silence after speech before the utterance ends, in ms.
        min_speech_ms: Shortest speech that counts (a cough or "mm" is shorter), in ms.
        onset_gap_ms: Gaps up to this long (ms) while an onset is being confirmed do
            not cancel it (a soft consonant, a window gated as echo).
        pre_roll_ms: Audio kept from before the detected onset, in ms, so the
            first syllable is not clipped.
        trim_padding_ms: Silence kept around speech when a message is trimmed, in ms.
        echo_tail_ms: Longest echo path the canceller models, in ms.
        echo_gate_db: While Coda plays, audio more than this many dB below the
            playback reference after cancellation is taken as residual echo and
            never counts as speech (0 disables the gate).
        agc_target_dbfs: Automatic gain control target, in dB below full scale.
        clean_for_recognition: Whether speech recognition hears the noise-suppressed,
            gain-controlled audio (True) or the echo-cancelled audio before them
            (False). Suppression and gain always feed voice activity detection. On
            Whisper tiny.en they did not help recognition (WER 7.8 % → 9.4 % clean,
            14.1 % → 17.2 % at 10 dB SNR white noise), so by default it hears the
            audio without them.
    """

    sample_rate: int = 24000
    channels: int = 1
    format: str = "wav"
    bit_depth: int = 16

    # Audio processing features
    enable_vad: bool = True
    enable_noise_reduction: bool = True
    enable_echo_cancellation: bool = True
    enable_auto_gain_control: bool = True

    # Quality settings
    vad_threshold: float = 0.5
    noise_reduction_level: float = 0.7
    max_audio_length_seconds: float = 30.0
    min_audio_length_seconds: float = 0.1
    silence_peak_threshold: float = 1e-3

    # Input policy
    input_sample_rates: tuple[int, ...] = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
    max_input_channels: int = 2
    input_encodings: tuple[str, ...] = INPUT_ENCODINGS
    max_input_bytes: int = 64 * 1024 * 1024

    # Front-end tunables
    vad_end_offset: float = 0.15
    vad_hangover_ms: int = 400
    min_speech_ms: int = 200
    onset_gap_ms: int = 64
    pre_roll_ms: int = 250
    trim_padding_ms: int = 150
    echo_tail_ms: int = 200
    echo_gate_db: float = 30.0
    agc_target_dbfs: int = 3
    clean_for_recognition: bool = False

    def validate(self) -> None:
        """Validate audio configuration.

        Raises:
            ConfigurationError: If configuration is invalid.
        """
        if self.sample_rate not in SUPPORTED_SAMPLE_RATES:
            raise ConfigurationError(
                f"sample_rate {self.sample_rate} Hz is not supported; "
                f"use one of {SUPPORTED_SAMPLE_RATES}"
            )
        if self.channels not in (1, 2):
            raise ConfigurationError(f"channels must be 1 or 2, got {self.channels}")
        if self.format not in SUPPORTED_FORMATS:
            raise ConfigurationError(
                f"format must be one of {SUPPORTED_FORMATS}, got {self.format!r}"
            )
        if self.bit_depth not in SUPPORTED_BIT_DEPTHS:
            raise ConfigurationError(
                f"bit_depth must be one of {SUPPORTED_BIT_DEPTHS}, got {self.bit_depth}"
            )
        if self.format == "flac" and self.bit_depth > 24:
            raise ConfigurationError("FLAC holds at most 24 bits: use bit_depth 16 or 24, or wav")
        for name in ("vad_threshold", "noise_reduction_level"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigurationError(f"{name} must be within [0, 1], got {value}")
        tunables = (
            "vad_hangover_ms",
            "min_speech_ms",
            "onset_gap_ms",
            "pre_roll_ms",
            "trim_padding_ms",
        )
        for name in tunables:
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must not be negative")
        if not 0 <= self.vad_end_offset < self.vad_threshold:
            raise ConfigurationError("need 0 <= vad_end_offset < vad_threshold")
        if not 0 <= self.agc_target_dbfs <= 31:
            raise ConfigurationError("agc_target_dbfs must be within [0, 31]")
        if not 0 < self.min_audio_length_seconds < self.max_audio_length_seconds:
            raise ConfigurationError(
                "need 0 < min_audio_length_seconds < max_audio_length_seconds, got "
                f"{self.min_audio_length_seconds} and {self.max_audio_length_seconds}"
            )


@dataclass
class VoiceConfig:
    """Comprehensive configuration for voice processing system.

    This class contains all configuration options for audio processing,
    model settings, performance tuning, and integration settings.

    ``enable_caching`` keeps the LLM's evaluated conversation prefix between turns
    (each turn evaluates only its new tokens) and reuses synthesized audio of
    repeated sentences. ``enable_optimization`` warms every model in
    ``initialize()`` so the first turn is as fast as the rest, and fits Whisper's
    window to the utterance. ``max_conversation_length`` bounds the turns kept in
    memory and sent to the LLM (the oldest are dropped first; the store keeps them
    all). ``max_concurrent_conversations`` bounds the conversations held in memory:
    an idle one is released (and reloaded from the store on its next message);
    when all are mid-turn, a new one gets ``ConversationError``.

    The integrations are part of every turn, whatever the entry point:
    ``enable_memory_integration`` recalls what the speaker said before and learns
    new facts, ``enable_personality_integration`` shapes the reply to the speaker's
    traits and learns from feedback, ``enable_tools_integration`` calls the tool a
    request needs, and ``enable_conversation_sync`` mirrors each turn into the text
    store. ``enable_analytics`` keeps per-conversation figures (turns, modes,
    interruptions, mean first audio) for ``get_stats()["analytics"]``;
    ``metrics_enabled`` turns the server's Prometheus collection (``/metrics``) on.
    ``log_level`` is the level of the ``coda`` loggers (process-wide: the last
    ``VoiceManager`` made sets it).

    Example:
        >>> config = VoiceConfig(
        ...     audio=AudioConfig(sample_rate=24000),
        ...     moshi=MoshiConfig(device="cuda"),
        ...     llm=LLMConfig(provider="ollama")
        ... )
    """

    # Core configuration
    audio: AudioConfig = field(default_factory=AudioConfig)
    moshi: MoshiConfig = field(default_factory=MoshiConfig)
    llm: LLMConfig | None = None

    # Processing settings
    default_mode: VoiceProcessingMode = VoiceProcessingMode.ADAPTIVE
    enable_streaming: bool = True
    max_conversation_length: int = 100

    # Performance settings
    enable_caching: bool = True
    enable_optimization: bool = True
    max_concurrent_conversations: int = 10

    # Integration settings
    enable_memory_integration: bool = True
    enable_personality_integration: bool = True
    enable_tools_integration: bool = True

    # Monitoring and logging
    enable_analytics: bool = True
    log_level: str = "INFO"
    metrics_enabled: bool = True

    # Providers and storage (not in the spec's listing; documented above)
    stt: STTConfig = field(default_factory=STTConfig)
    tts: TTSConfig = field(default_factory=TTSConfig)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    store_path: str | None = None
    """Where conversations, memories, traits and text conversations persist: an
    SQLite file or ``sqlite:///path`` (None: ``default_data_dir()/coda.sqlite3``), or
    ``postgresql://user@host/db``, which several Coda instances can share."""
    model_cache_dir: str | None = None
    """Folder for assembled models (None: ``default_cache_dir()/models``)."""
    auto_start_conversations: bool = True
    """A message to an unknown conversation id starts it (False: ConversationError)."""
    secondary_llm: LLMConfig | None = None
    """A second language model: ``hybrid`` races it too (with Moshi, if configured)."""
    background_llm: LLMConfig | None = None
    """The model for background work (reading facts, summarizing old turns); None:
    a second instance of the embedded model (its own cache, so the voice model's
    cached prompt survives), or the same server for a remote one."""
    summarize_history: bool = True
    """Turns that outgrow ``max_conversation_length`` are summarized, not dropped."""
    max_latency_ms: float = 1000.0
    """Hybrid's budget for waiting on the better answer; adaptive avoids modes
    measured slower than this, in ms."""
    vram_limit_gb: float = 32.0
    """GPU memory that all of Coda's components together may reserve, in GiB."""
    allow_mode_fallback: bool = False
    """An explicitly requested mode that cannot answer falls back to the cascade
    (recorded in metadata) instead of raising."""
    enable_conversation_sync: bool = True
    """Mirror every finished turn into the text conversation store (``coda.sync``)."""
    memory: VoiceMemoryConfig = field(default_factory=VoiceMemoryConfig)
    """Memory integration settings (used when ``enable_memory_integration``)."""
    personality: VoicePersonalityConfig = field(default_factory=VoicePersonalityConfig)
    """Personality integration settings (used when ``enable_personality_integration``)."""
    tools: VoiceToolsConfig = field(default_factory=VoiceToolsConfig)
    """Tools integration settings (used when ``enable_tools_integration``)."""
    sync: VoiceConversationSyncConfig = field(default_factory=VoiceConversationSyncConfig)
    """Conversation sync settings (used when ``enable_conversation_sync``)."""
    enable_hybrid_processing: bool = True
    """Offer ``hybrid`` when two responders are configured (False: never race them)."""
    enable_parallel_processing: bool = True
    """Hybrid runs its candidates at once (True) or one after another, stopping
    once one has answered within ``max_latency_ms`` (False: less CPU, more latency)."""
    stream_chunk_samples: int = 0
    """``process_streaming`` splits each spoken piece into audio chunks of at most
    this many samples (0: one chunk per clause)."""
    background_queue_size: int = 256
    """After-commit work (learning, sync) waiting at most; past it a job is dropped,
    logged and counted, so the next turn is never delayed."""
    learning_wait_ms: float = 500.0
    """A speaker's next turn waits at most this long (ms) for what their previous
    turn is still teaching the memory (background learning), then goes on."""

    def validate(self) -> None:
        """Validate the whole configuration.

        Raises:
            ConfigurationError: If any value is invalid.
        """
        self.audio.validate()
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigurationError(
                f"log_level must be one of {LOG_LEVELS}, got {self.log_level!r}"
            )
        if self.max_conversation_length < 1:
            raise ConfigurationError("max_conversation_length must be at least 1")
        if self.vram_limit_gb < 0:
            raise ConfigurationError("vram_limit_gb must not be negative")
        if self.moshi.max_response_seconds <= 0 or self.moshi.flow_window_frames < 1:
            raise ConfigurationError("need moshi.max_response_seconds > 0, flow_window_frames >= 1")
        if self.stream_chunk_samples < 0 or self.background_queue_size < 1:
            raise ConfigurationError("need stream_chunk_samples >= 0, background_queue_size >= 1")
        if self.max_concurrent_conversations < 1:
            raise ConfigurationError("max_concurrent_conversations must be at least 1")
        self.streaming.validate()
        self.store_location()
        llms = (("llm", self.llm), ("secondary_llm", self.secondary_llm),
                ("background_llm", self.background_llm))  # fmt: skip
        for name, llm in llms:
            if llm is not None and llm.provider not in LLM_PROVIDER_NAMES:
                raise ConfigurationError(
                    f"{name}.provider {llm.provider!r} is unknown; use one of {LLM_PROVIDER_NAMES}"
                )

    def store_location(self) -> StoreLocation:
        """Where everything persists (``store_path`` parsed).

        Raises:
            ConfigurationError: If ``store_path`` is a URL of an unsupported scheme.
        """
        return parse_store(self.store_path or "", default_data_dir() / "coda.sqlite3")

    def resolved_model_dir(self) -> Path:
        """The folder assembled models are cached in."""
        return (
            Path(self.model_cache_dir) if self.model_cache_dir else default_cache_dir() / "models"
        )


LLM_PROVIDER_NAMES = ("auto", "llamacpp", "ollama", "openai")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass
class VoiceProcessingConfig:
    """Configuration of the ``VoiceProcessor`` facade (mapped onto a ``VoiceConfig``)."""

    # Processing modes
    default_mode: VoiceProcessingMode = VoiceProcessingMode.ADAPTIVE
    enable_moshi: bool = True
    enable_external_llm: bool = True
    enable_hybrid_processing: bool = True

    # Performance settings
    max_latency_ms: float = 1000.0
    enable_parallel_processing: bool = True
    vram_limit_gb: float = 32.0

    # Audio settings
    sample_rate: int = 24000
    channels: int = 1
    chunk_size: int = 1024
    enable_streaming: bool = True

    # Integration settings
    enable_memory_integration: bool = True
    enable_personality_integration: bool = True
    enable_tools_integration: bool = True
    enable_conversation_sync: bool = True
