"""Every public name of the spec imports from coda.voice, with the spec's fields and defaults."""

from __future__ import annotations

import builtins
import dataclasses

import pytest

import coda.voice as voice

SPEC_NAMES = [
    # facades and interface
    "VoiceManager",
    "VoiceProcessor",
    "VoiceManagerInterface",
    # data
    "VoiceMessage",
    "VoiceResponse",
    "VoiceStreamChunk",
    "ConversationState",
    "LLMMessage",
    "ToolResult",
    # enums
    "VoiceProcessingMode",
    "ConflictResolutionStrategy",
    "SyncEventType",
    # configs
    "VoiceConfig",
    "AudioConfig",
    "MoshiConfig",
    "LLMConfig",
    "VoiceProcessingConfig",
    "VoiceMemoryConfig",
    "VoicePersonalityConfig",
    "VoiceToolsConfig",
    "VoiceLLMManagerConfig",
    "VoiceConversationSyncConfig",
    # integrations
    "VoiceMemoryIntegration",
    "VoicePersonalityIntegration",
    "VoiceToolsIntegration",
    "VoiceLLMManagerIntegration",
    "VoiceConversationSync",
    # errors
    "VoiceProcessingError",
    "AudioProcessingError",
    "MoshiConnectionError",
    "LLMIntegrationError",
    "SyncError",
    "ValidationError",
    "ConfigurationError",
    "ConversationError",
    "VoiceInitializationError",
    "VRAMAllocationError",
    "TimeoutError",
]


def test_every_spec_name_imports_from_coda_voice() -> None:
    missing = [name for name in SPEC_NAMES if not hasattr(voice, name)]
    assert missing == []
    assert set(SPEC_NAMES) <= set(voice.__all__)


def _defaults(cls: type) -> dict[str, object]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
    return out


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (
            voice.AudioConfig,
            {
                "sample_rate": 24000,
                "channels": 1,
                "format": "wav",
                "bit_depth": 16,
                "enable_vad": True,
                "enable_noise_reduction": True,
                "enable_echo_cancellation": True,
                "enable_auto_gain_control": True,
                "vad_threshold": 0.5,
                "noise_reduction_level": 0.7,
                "max_audio_length_seconds": 30.0,
            },
        ),
        (
            voice.VoiceConfig,
            {
                "llm": None,
                "default_mode": voice.VoiceProcessingMode.ADAPTIVE,
                "enable_streaming": True,
                "max_conversation_length": 100,
                "enable_caching": True,
                "enable_optimization": True,
                "max_concurrent_conversations": 10,
                "enable_memory_integration": True,
                "enable_personality_integration": True,
                "enable_tools_integration": True,
                "enable_analytics": True,
                "log_level": "INFO",
                "metrics_enabled": True,
            },
        ),
        (
            voice.VoiceProcessingConfig,
            {
                "default_mode": voice.VoiceProcessingMode.ADAPTIVE,
                "enable_moshi": True,
                "enable_external_llm": True,
                "enable_hybrid_processing": True,
                "max_latency_ms": 1000.0,
                "enable_parallel_processing": True,
                "vram_limit_gb": 32.0,
                "sample_rate": 24000,
                "channels": 1,
                "chunk_size": 1024,
                "enable_streaming": True,
                "enable_memory_integration": True,
                "enable_personality_integration": True,
                "enable_tools_integration": True,
                "enable_conversation_sync": True,
            },
        ),
        (
            voice.VoiceMemoryConfig,
            {
                "enable_context_injection": True,
                "max_relevant_memories": 10,
                "memory_relevance_threshold": 0.7,
                "enable_learning": True,
                "learning_rate": 0.1,
            },
        ),
        (
            voice.VoicePersonalityConfig,
            {
                "enable_personality_injection": True,
                "enable_response_adaptation": True,
                "enable_personality_learning": True,
                "voice_confidence_factor": 1.2,
                "voice_engagement_factor": 1.1,
                "adjustment_sensitivity": 0.1,
            },
        ),
        (
            voice.VoiceToolsConfig,
            {
                "enable_tool_injection": True,
                "enable_function_calling": True,
                "auto_execute_tools": True,
                "max_tools_in_context": 10,
                "tool_relevance_threshold": 0.6,
            },
        ),
        (
            voice.VoiceLLMManagerConfig,
            {
                "llm_provider": "ollama",
                "llm_model": "gemma3:1b",
                "voice_response_max_tokens": 300,
                "voice_temperature": 0.8,
                "enable_streaming_for_voice": True,
                "voice_timeout_seconds": 8.0,
            },
        ),
        (
            voice.VoiceConversationSyncConfig,
            {
                "sync_enabled": True,
                "real_time_sync": True,
                "bidirectional_sync": True,
                "conflict_resolution_strategy": voice.ConflictResolutionStrategy.VOICE_PRIORITY,
            },
        ),
    ],
)
def test_config_defaults_match_the_spec(cls: type, expected: dict[str, object]) -> None:
    defaults = _defaults(cls)
    assert {name: defaults.get(name, "<missing>") for name in expected} == expected


def test_message_and_response_fields() -> None:
    message = voice.VoiceMessage(conversation_id="conv_1", audio_data=b"")
    other = voice.VoiceMessage(conversation_id="conv_1", audio_data=b"")
    assert message.message_id != other.message_id and message.message_id.startswith("msg_")
    assert message.speaker == "user"
    assert message.processing_mode is voice.VoiceProcessingMode.ADAPTIVE
    assert (message.sample_rate, message.channels, message.duration_seconds, message.format) == (
        None,
        None,
        None,
        None,
    )
    explicit = voice.VoiceMessage(message_id="msg_001", conversation_id="c", audio_data=b"x")
    assert explicit.message_id == "msg_001"

    response = voice.VoiceResponse(
        conversation_id="c",
        text_content="hi",
        confidence_score=0.9,
        relevance_score=0.7,
        coherence_score=0.8,
    )
    assert response.get_quality_metrics() == {
        "confidence_score": 0.9,
        "relevance_score": 0.7,
        "coherence_score": 0.8,
    }
    assert response.is_high_quality(0.8) and not response.is_high_quality(0.81)
    assert not voice.VoiceResponse("c", "hi").is_high_quality(0.0)


def test_enums() -> None:
    assert [m.value for m in voice.VoiceProcessingMode] == [
        "moshi_only",
        "llm_enhanced",
        "hybrid",
        "adaptive",
    ]
    assert [m.value for m in voice.ConflictResolutionStrategy] == [
        "voice_priority",
        "conversation_priority",
        "timestamp_priority",
        "merge",
    ]
    assert [m.value for m in voice.SyncEventType] == [
        "voice_message_added",
        "voice_response_added",
        "conversation_state_updated",
        "sync_conflict_detected",
        "sync_completed",
    ]
    assert voice.VoiceProcessingMode("hybrid") is voice.VoiceProcessingMode.HYBRID


def test_exception_hierarchy() -> None:
    for name in SPEC_NAMES:
        obj = getattr(voice, name)
        if isinstance(obj, type) and name.endswith("Error"):
            assert issubclass(obj, voice.VoiceProcessingError), name
    assert issubclass(voice.TimeoutError, builtins.TimeoutError)
    assert voice.TimeoutError is not builtins.TimeoutError


def test_audio_config_validate() -> None:
    voice.AudioConfig().validate()
    for bad in (
        {"sample_rate": 22050},
        {"channels": 3},
        {"format": "aac"},
        {"bit_depth": 8},
        {"vad_threshold": 1.5},
        {"max_audio_length_seconds": 0.0},
    ):
        with pytest.raises(voice.ConfigurationError):
            voice.AudioConfig(**bad).validate()  # type: ignore[arg-type]


def test_unknown_llm_provider_is_a_configuration_error() -> None:
    with pytest.raises(voice.ConfigurationError, match="llm.provider"):
        voice.VoiceManager(voice.VoiceConfig(llm=voice.LLMConfig(provider="gpt-magic")))


async def test_processor_needs_start_before_integrations() -> None:
    processor = voice.VoiceProcessor()
    with pytest.raises(voice.VoiceInitializationError, match="initialize"):
        await processor.process_with_integrations(voice.VoiceMessage("c", b"", text_content="hi"))
