"""Settings of the spec's integrations (memory, personality, tools, LLM manager, sync)."""

from __future__ import annotations

from dataclasses import dataclass

from coda.core.enums import ConflictResolutionStrategy


@dataclass
class VoiceMemoryConfig:
    """Memory integration settings.

    Attributes:
        enable_context_injection: Put relevant memories into the LLM's context.
        max_relevant_memories: At most this many per turn.
        memory_relevance_threshold: Minimum relevance in [0, 1] (a blend of the
            embedding cosine and word overlap; see ``coda.memory.relevance``).
        enable_learning: Learn facts and preferences from what the user says.
        learning_rate: How far each mention or use moves importance towards 1.
        scope: "user" (memories follow the speaker across conversations) or
            "conversation" (each conversation has its own).
        answer_from_memory: A question about the user's own facts is answered
            from memory ("Your sister lives in Lisbon.") or with "you haven't
            told me", not by the LLM's guess (``coda.memory.answers``).
        memory_answer_threshold: The relevance a memory needs to answer alone.
        model_extraction: Statements the rules cannot read go to the background
            language model (``VoiceConfig.background_llm``) after the turn.
    """

    enable_context_injection: bool = True
    max_relevant_memories: int = 10
    memory_relevance_threshold: float = 0.7
    enable_learning: bool = True
    learning_rate: float = 0.1
    scope: str = "user"
    answer_from_memory: bool = True
    memory_answer_threshold: float = 0.8
    model_extraction: bool = True


@dataclass
class VoicePersonalityConfig:
    """Personality integration settings.

    Attributes:
        enable_personality_injection: The speaker's traits, as instructions
            ("Answer in at most 3 short sentences. Be warm."), open the LLM's prompt.
        enable_response_adaptation: The reply is shaped to the traits: cut to the
            sentence budget, spoken at the pace and volume below.
        enable_personality_learning: Feedback, requests in the user's words
            ("shorter please") and interruptions move the traits.
        voice_confidence_factor: The reply's volume is scaled by
            ``factor ** (2 × confidence − 1)``: louder when recognition was sure.
        voice_engagement_factor: The speaking rate is ``factor ** (2 × pace − 1)``:
            faster for a brisk pace trait (1 at the neutral pace 0.5).
        adjustment_sensitivity: One step of a trait change (feedback moves 4 steps,
            a request in the user's words 2, an interruption 1).
    """

    enable_personality_injection: bool = True
    enable_response_adaptation: bool = True
    enable_personality_learning: bool = True
    voice_confidence_factor: float = 1.2
    voice_engagement_factor: float = 1.1
    adjustment_sensitivity: float = 0.1


@dataclass
class VoiceToolsConfig:
    """Tools integration settings.

    Attributes:
        enable_tool_injection: The relevant tools are described to the LLM (so it
            can plan a call); off, only requests a tool's own parser reads are called.
        enable_function_calling: Tools are called at all; off, no turn calls one.
        auto_execute_tools: A chosen call runs at once; off, it is only reported
            (``tool_calls_proposed`` in the response metadata).
        max_tools_in_context: At most this many tools are offered per turn.
        tool_relevance_threshold: A tool is offered only at this relevance or above
            (in [0, 1]; see ``coda.integrations.tools``).
    """

    enable_tool_injection: bool = True
    enable_function_calling: bool = True
    auto_execute_tools: bool = True
    max_tools_in_context: int = 10
    tool_relevance_threshold: float = 0.6


@dataclass
class VoiceLLMManagerConfig:
    """LLM manager integration settings (``VoiceLLMManagerIntegration``).

    Attributes:
        llm_provider: The provider the spec names (the manager's own LLM answers).
        llm_model: The model the spec names.
        voice_response_max_tokens: Token cap of a voice reply.
        voice_temperature: Sampling temperature of a voice reply.
        enable_streaming_for_voice: ``generate_streaming_voice_response`` yields
            each spoken piece as it is ready; off, only the whole reply.
        voice_timeout_seconds: Longest a voice reply may take.
    """

    llm_provider: str = "ollama"
    llm_model: str = "gemma3:1b"
    voice_response_max_tokens: int = 300
    voice_temperature: float = 0.8
    enable_streaming_for_voice: bool = True
    voice_timeout_seconds: float = 8.0


@dataclass
class VoiceConversationSyncConfig:
    """Conversation sync settings."""

    sync_enabled: bool = True
    real_time_sync: bool = True
    bidirectional_sync: bool = True
    conflict_resolution_strategy: ConflictResolutionStrategy = (
        ConflictResolutionStrategy.VOICE_PRIORITY
    )
