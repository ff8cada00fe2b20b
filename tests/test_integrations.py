"""Memory, personality, tools and the LLM manager, end to end with the real embedded models."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from coda.integrations.memory import VoiceMemory
from coda.integrations.personality import VoicePersonalityIntegration
from coda.personality.store import SQLiteTraitStore
from coda.tools.registry import Tool, ToolRegistry
from coda.voice import (
    LLMMessage,
    TimeoutError,
    VoiceConfig,
    VoiceLLMManagerConfig,
    VoiceLLMManagerIntegration,
    VoiceMemoryConfig,
    VoiceMemoryIntegration,
    VoiceMessage,
    VoiceProcessingConfig,
    VoiceProcessor,
    VoiceResponse,
)
from tests.conftest import Speak, Transcribe, wer

Numbers = dict[str, float]


@pytest.fixture(scope="session")
async def processor(base_config: VoiceConfig, store_dir: Path) -> AsyncIterator[VoiceProcessor]:
    """A processor with every integration, its tables in its own SQLite file."""
    config = replace(base_config, store_path=str(store_dir / "integrations.sqlite3"))
    voice = VoiceProcessor(VoiceProcessingConfig(), config)
    await voice.start()
    yield voice
    await voice.stop()


def said(text: str) -> VoiceMessage:
    return VoiceMessage(f"c-{time.monotonic_ns()}", b"", text_content=text)


# -- memory -----------------------------------------------------------------------------


async def test_memory_carries_across_conversations(
    processor: VoiceProcessor, speak: Speak, transcribe: Transcribe
) -> None:
    await processor.process_with_integrations(
        VoiceMessage("mem-1", await speak("My dog is called Bella."))
    )
    await processor.process_with_integrations(said("I live in Lisbon."))
    response = await processor.process_with_integrations(
        VoiceMessage("mem-2", await speak("What is my dog called?"))
    )
    assert "bella" in response.text_content.lower()
    # The audio says the reply (an independent recognizer may hear "Bella" as "Bill").
    assert wer(response.text_content, await transcribe(response.audio_data or b"")) <= 0.25
    used = [m["text"] for m in response.metadata["memories"]]
    assert used == ["My dog is called Bella."]  # Lisbon is irrelevant: kept out


async def test_memories_merge_and_scope(tmp_path: Path) -> None:
    memory = VoiceMemoryIntegration(VoiceMemory.at(tmp_path / "m.sqlite3"), VoiceMemoryConfig())
    reply = VoiceResponse("x", "ok")
    for text in ("My dog is called Bella.", "My dog is called Bella!", "I like jazz."):
        await memory.learn_from_voice_interaction(said(text), reply)
    assert await memory.memory_manager.store.count("user:user") == 2
    assert memory.get_integration_stats()["merged"] == 1
    (found,) = await memory.search("user:user", "What is my dog called?", 5)
    assert found["importance"] > 0.5  # mentioned twice
    # Another speaker, or conversation scope, does not see them.
    other = replace(said("What is my dog called?"), speaker="bob")
    assert (await memory.enhance_voice_context(other))["memories"] == []
    per_conversation = VoiceMemoryIntegration(
        memory.memory_manager, VoiceMemoryConfig(scope="conversation")
    )
    assert (await per_conversation.enhance_voice_context(said("My dog?")))["memories"] == []
    await memory.close()


# -- tools ------------------------------------------------------------------------------


async def test_calculator_answers_seventeen_times_twenty_three(
    processor: VoiceProcessor, speak: Speak, transcribe: Transcribe
) -> None:
    response = await processor.process_with_integrations(
        VoiceMessage("tools-1", await speak("What is 17 times 23?"))
    )
    (result,) = response.metadata["tool_results"]
    assert result["tool_name"] == "calculator" and result["success"]
    assert result["result"]["result"] == 391
    assert "391" in response.text_content
    heard = (await transcribe(response.audio_data or b"")).lower().replace(",", "")
    assert "391" in heard or "three hundred ninety" in heard


def said_time(hours: int, minutes: int) -> str:
    """A pattern for the time ``hours:minutes`` as a reply may write it: 14:05, or 2:05 PM."""
    twelve, half = hours % 12 or 12, "p" if hours >= 12 else "a"
    alone = r"(?<![\d:]){}(?![\d:])"
    return "|".join(
        [
            alone.format(f"{hours:02d}:{minutes:02d}"),
            alone.format(f"{hours}:{minutes:02d}"),
            alone.format(f"{twelve}:{minutes:02d}") + rf"\s*{half}\.?\s?m\b",
        ]
    )


async def test_clock_tells_the_time(processor: VoiceProcessor) -> None:
    before = datetime.now().astimezone().replace(microsecond=0)
    response = await processor.process_with_integrations(said("What time is it?"))
    after = datetime.now().astimezone()
    (result,) = response.metadata["tool_results"]
    assert result["tool_name"] == "get_datetime" and result["success"]
    # The tool read this machine's clock: its time lies between the test's own readings.
    told = datetime.fromisoformat(result["result"]["iso"])
    assert before <= told <= after, (before, told, after)
    assert result["result"]["time"] == f"{told:%H:%M}"
    # The reply says that time: hours and minutes together, not a digit found anywhere.
    pattern = said_time(told.hour, told.minute)
    assert re.search(pattern, response.text_content, re.IGNORECASE), response.text_content


async def test_planner_asks_the_llm_for_a_schema_valid_call(processor: VoiceProcessor) -> None:
    tools = processor.integrations.tools
    assert tools is not None
    words = "Work out 17 multiplied by 23 for me."
    planned = await tools.plan(words, await tools.suggest(words))
    assert planned is not None and planned[0] == "calculator"
    result = await tools.tools_manager.call(*planned)
    assert result.success and result.result["result"] == 391


async def test_failing_tool_gets_a_graceful_answer(processor: VoiceProcessor) -> None:
    def failing_weather_service(city: str) -> str:
        """Injects a fault: the weather service behind the tool is down."""
        raise RuntimeError("the weather service is down")

    tools = processor.integrations.tools
    assert tools is not None
    shared = tools.tools_manager
    # A registry of this test's own: the session's registry never holds the failing tool.
    tools.tools_manager = ToolRegistry(shared.tools)
    tools.tools_manager.register(
        Tool(
            "get_weather",
            "Current weather in a city.",
            {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            failing_weather_service,
            keywords=("weather",),
        )
    )
    try:
        response = await processor.process_with_integrations(said("What is the weather in Paris?"))
    finally:
        tools.tools_manager = shared
    (result,) = response.metadata["tool_results"]
    assert result["tool_name"] == "get_weather" and result["arguments"] == {"city": "Paris"}
    assert not result["success"] and "weather service is down" in result["error"]
    assert response.text_content.strip() and response.audio_data  # spoken, not crashed
    assert "get_weather" not in shared


async def test_process_function_calls_replaces_the_answer(processor: VoiceProcessor) -> None:
    tools = processor.integrations.tools
    assert tools is not None
    message = said("What is 12 times 12?")
    unchanged, none = await tools.process_function_calls(said("Hello!"), VoiceResponse("x", "Hi"))
    assert none == [] and unchanged.text_content == "Hi"
    response, results = await tools.process_function_calls(message, VoiceResponse("x", "..."))
    assert [r.result["result"] for r in results] == [144]
    assert "144" in response.text_content


# -- personality ------------------------------------------------------------------------

PROMPTS = ("Tell me about the ocean.", "Tell me about mountains.", "Tell me about coffee.")


async def _mean_words(processor: VoiceProcessor, speaker: str) -> float:
    counts = []
    for prompt in PROMPTS:
        message = replace(said(prompt), speaker=speaker)
        response = await processor.process_with_integrations(
            message, include_memory=False, include_tools=False
        )
        counts.append(len(response.text_content.split()))
        # The reply is shaped before it is stored: the history holds what was said.
        state = await processor.manager.get_conversation_state(message.conversation_id)
        assert state is not None and state.turns[-1].assistant_text == response.text_content
        assert "personality" in response.metadata
    return float(np.mean(counts))


async def test_feedback_too_long_shortens_replies(
    processor: VoiceProcessor, store_dir: Path
) -> None:
    before = await _mean_words(processor, "pat")
    await processor.process_with_integrations(
        replace(said("Thanks."), speaker="pat"),
        include_memory=False,
        include_tools=False,
        user_feedback={"too_long": True},
    )
    after = await _mean_words(processor, "pat")
    assert after <= 0.7 * before, (before, after)
    # The traits persist: a new store over the same file reads them.
    store = SQLiteTraitStore(store_dir / "integrations.sqlite3")
    traits = await store.load("user:pat")
    await store.close()
    assert traits.verbosity == pytest.approx(0.1)


async def test_personality_learns_from_the_users_words(tmp_path: Path) -> None:
    personality = VoicePersonalityIntegration(SQLiteTraitStore(tmp_path / "p.sqlite3"))
    reply = VoiceResponse("x", "ok")
    await personality.learn_from_voice_interaction(said("Shorter please."), reply)
    await personality.learn_from_voice_interaction(
        said("Okay."), dataclasses.replace(reply, metadata={"interrupted": True})
    )
    traits = await personality.traits(said("hi"))
    assert traits.verbosity == pytest.approx(0.5 - 0.2 - 0.1)
    assert "one short sentence" in traits.instructions()
    await personality.close()


async def test_adaptation_trims_and_respeaks(processor: VoiceProcessor, tmp_path: Path) -> None:
    tts = processor.manager.engine.tts
    personality = VoicePersonalityIntegration(SQLiteTraitStore(tmp_path / "p.sqlite3"), tts=tts)
    await personality.learn_from_voice_interaction(
        said("hi"), VoiceResponse("x", "ok"), user_feedback={"too_long": True}
    )
    long_text = "The sea is big. It is blue. Fish live there. Boats sail on it."
    assert tts is not None
    from coda.audio.encode import encode_wav

    speech = await tts.synthesize(long_text)
    response = VoiceResponse(
        "x", long_text, encode_wav(speech.samples, speech.sample_rate), confidence_score=1.0
    )
    adapted = await personality.adapt_voice_response(response, said("hi"))
    assert adapted.text_content == "The sea is big."
    assert adapted.metadata["personality"]["trimmed_sentences"] == 3
    assert adapted.audio_data is not None and len(adapted.audio_data) < 0.5 * len(
        response.audio_data or b""
    )
    await personality.close()


# -- LLM manager ------------------------------------------------------------------------


async def test_llm_manager_limits_and_history(processor: VoiceProcessor) -> None:
    short = VoiceLLMManagerIntegration(
        processor.manager, VoiceLLMManagerConfig(voice_response_max_tokens=6)
    )
    message = said("Tell me a long story about a dragon.")
    response = await short.generate_voice_response(message)
    assert response.metadata["llm"]["finish_reason"] == "length"
    history = await short.get_conversation_history(message.conversation_id)
    assert history == [
        LLMMessage("user", "Tell me a long story about a dragon."),
        LLMMessage("assistant", response.text_content),
    ]
    pieces = [r async for r in short.generate_streaming_voice_response(said("Hello there!"))]
    assert pieces[-1].metadata["is_final"] and all(not p.metadata["is_final"] for p in pieces[:-1])
    hasty = VoiceLLMManagerIntegration(
        processor.manager, VoiceLLMManagerConfig(voice_timeout_seconds=0.01)
    )
    with pytest.raises(TimeoutError, match="no voice reply"):
        await hasty.generate_voice_response(said("Tell me about the moon."))
