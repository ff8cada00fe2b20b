"""Memory and personality switches, each shown by its effect on real turns.

Every test compares this module's processor (the spec's default settings) with
one of its own that differs in one setting, on the same words and a speaker of
the test's own (memories and traits belong to the speaker).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from coda.personality.store import SQLiteTraitStore
from coda.voice import (
    VoiceConfig,
    VoiceMemoryConfig,
    VoicePersonalityConfig,
    VoicePersonalityIntegration,
    VoiceProcessor,
    VoiceResponse,
)
from tests.test_flags import SHORT, decoded, processor, said

QUIET = VoiceMemoryConfig(model_extraction=False)
"""The spec's memory defaults, without background fact reading by the LLM (not tested here)."""


@pytest.fixture(scope="module")
async def defaults(
    base_config: VoiceConfig, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[VoiceProcessor]:
    """This module's processor with the spec's default integration settings."""
    folder = tmp_path_factory.mktemp("integration-flags")
    async with processor(base_config, folder, memory_config=QUIET) as voice:
        yield voice


async def teach(voice: VoiceProcessor, speaker: str, *facts: str) -> None:
    """Store what ``speaker`` said through the memory integration's learning method."""
    memory = voice.integrations.memory
    assert memory is not None
    for fact in facts:
        await memory.learn_from_voice_interaction(said(fact, speaker), VoiceResponse("x", "Okay."))


def texts(response: VoiceResponse) -> list[str]:
    return [m["text"] for m in response.metadata["memories"]]


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def loudness(response: VoiceResponse) -> tuple[float, float]:
    """RMS level and duration in seconds of the reply audio."""
    samples, rate = decoded(response.audio_data)
    return float(np.sqrt(np.mean(samples**2))), len(samples) / rate


# -- memory -----------------------------------------------------------------------------


async def test_enable_context_injection_recalls_memories_for_the_reply(
    defaults: VoiceProcessor, base_config: VoiceConfig, tmp_path: Path
) -> None:
    question = "What is my dog called?"
    blind_config = replace(QUIET, enable_context_injection=False)
    async with processor(base_config, tmp_path, memory_config=blind_config) as blind:
        for voice in (defaults, blind):
            await teach(voice, "dana", "My dog is called Bella.")
        recalled = await defaults.process_voice_message(said(question, "dana"), context=SHORT)
        withheld = await blind.process_voice_message(said(question, "dana"), context=SHORT)
    assert texts(recalled) == ["My dog is called Bella."]
    assert "bella" in recalled.text_content.lower()
    assert texts(withheld) == [] and not withheld.metadata["answered_from_memory"]
    assert "bella" not in withheld.text_content.lower()


async def test_enable_learning_stores_what_the_user_says(
    defaults: VoiceProcessor, base_config: VoiceConfig, tmp_path: Path
) -> None:
    found = {}
    async with processor(
        base_config, tmp_path, memory_config=replace(QUIET, enable_learning=False)
    ) as forgetful:
        for name, voice in (("learning", defaults), ("not learning", forgetful)):
            await voice.process_voice_message(said("My cat is called Tom.", "eli"), context=SHORT)
            await voice.manager.wait_for_learning()
            memory = voice.integrations.memory
            assert memory is not None
            context = await memory.enhance_voice_context(said("What is my cat called?", "eli"))
            found[name] = [m["text"] for m in context["memories"]]
    assert found == {"learning": ["My cat is called Tom."], "not learning": []}


async def test_max_relevant_memories_bounds_what_is_recalled(
    defaults: VoiceProcessor, base_config: VoiceConfig, tmp_path: Path
) -> None:
    likes = ("jazz", "coffee", "hiking")
    replies = []
    async with processor(
        base_config, tmp_path, memory_config=replace(QUIET, max_relevant_memories=1)
    ) as terse:
        for voice in (defaults, terse):
            await teach(voice, "flo", *(f"I like {thing}." for thing in likes))
            replies.append(await voice.process_voice_message(said("What do I like?", "flo")))
    every, one = replies
    assert len(texts(every)) == 3 and all(thing in every.text_content for thing in likes)
    assert len(texts(one)) == 1 and sum(thing in one.text_content for thing in likes) == 1


async def test_memory_relevance_threshold_decides_what_counts_as_relevant(
    defaults: VoiceProcessor, base_config: VoiceConfig, tmp_path: Path
) -> None:
    facts = ("My dog is called Bella.", "I like hiking.", "I live in Lisbon.", "I like jazz.")
    replies = []
    lenient = replace(QUIET, memory_relevance_threshold=0.2)
    async with processor(base_config, tmp_path, memory_config=lenient) as broad:
        for voice in (defaults, broad):
            await teach(voice, "gil", *facts)
            message = said("Where should I walk my dog?", "gil")
            replies.append(await voice.process_voice_message(message, context=SHORT))
    strict, loose = replies
    assert texts(strict) == ["My dog is called Bella."]  # 0.7: only what is about the dog
    assert set(texts(loose)) == {"My dog is called Bella.", "I like hiking.", "I live in Lisbon."}
    assert all(m["relevance"] >= 0.2 for m in loose.metadata["memories"])  # jazz is not


# -- personality ------------------------------------------------------------------------


async def test_enable_personality_injection_puts_the_style_in_the_prompt(
    defaults: VoiceProcessor, base_config: VoiceConfig, tmp_path: Path
) -> None:
    only_personality = {"max_tokens": 8, "integrations": ["personality"]}
    off = VoicePersonalityConfig(enable_personality_injection=False)
    async with processor(base_config, tmp_path, personality_config=off) as plain:
        styled = await defaults.process_voice_message(
            said("Say hello.", "hana"), None, only_personality
        )
        unstyled = await plain.process_voice_message(
            said("Say hello.", "hana"), None, only_personality
        )
    # The same words and system prompt; only the speaker's style instructions differ.
    assert styled.metadata["prompt_tokens"] > unstyled.metadata["prompt_tokens"] + 5


async def test_enable_personality_learning_moves_the_traits(
    defaults: VoiceProcessor, base_config: VoiceConfig, tmp_path: Path
) -> None:
    off = VoicePersonalityConfig(enable_personality_learning=False)
    verbosity = {}
    async with processor(base_config, tmp_path, personality_config=off) as fixed:
        for name, voice in (("learning", defaults), ("fixed", fixed)):
            response = await voice.process_with_integrations(
                said("Forget my wifi password.", "ida"),
                include_tools=False,
                user_feedback={"too_long": True},
            )
            verbosity[name] = response.metadata["personality_traits"]["verbosity"]
    # Explicit feedback: 4 steps of adjustment_sensitivity (0.1) from 0.5.
    assert verbosity == {"learning": pytest.approx(0.1), "fixed": pytest.approx(0.5)}


async def test_enable_response_adaptation_keeps_the_reply_to_the_budget(
    defaults: VoiceProcessor, base_config: VoiceConfig, tmp_path: Path
) -> None:
    off = VoicePersonalityConfig(enable_response_adaptation=False)
    replies = []
    async with processor(base_config, tmp_path, personality_config=off) as unshaped:
        for voice in (defaults, unshaped):
            await teach(voice, "jo", "I like jazz.", "I like coffee.", "I like hiking.")
            # "Too long": verbosity 0.1, a budget of one sentence.
            replies.append(
                await voice.process_with_integrations(
                    said("What do I like?", "jo"), user_feedback={"too_long": True}
                )
            )
    shaped, as_is = replies
    assert len(sentences(shaped.text_content)) == 1 and "personality" in shaped.metadata
    assert len(sentences(as_is.text_content)) == 3 and "personality" not in as_is.metadata
    assert loudness(shaped)[1] < 0.6 * loudness(as_is)[1]  # the audio says only what is kept


async def test_voice_confidence_factor_sets_the_volume(
    defaults: VoiceProcessor, base_config: VoiceConfig, tmp_path: Path
) -> None:
    half = VoicePersonalityConfig(voice_confidence_factor=0.6)  # the default is 1.2
    async with processor(base_config, tmp_path, personality_config=half) as softer:
        replies = [
            await voice.process_with_integrations(said("Forget my wifi password.", "kai"))
            for voice in (defaults, softer)
        ]
    (loud, loud_seconds), (soft, soft_seconds) = (loudness(r) for r in replies)
    # Typed words are sure (confidence 1): the gain is the factor itself.
    assert soft / loud == pytest.approx(0.5, abs=0.05)
    assert soft_seconds == pytest.approx(loud_seconds, rel=0.01)


async def test_voice_engagement_factor_sets_the_pace(
    defaults: VoiceProcessor, base_config: VoiceConfig, tmp_path: Path
) -> None:
    brisk = VoicePersonalityConfig(voice_engagement_factor=2.0)  # the default is 1.1
    durations: dict[str, list[float]] = {"neutral": [], "faster": []}
    async with processor(base_config, tmp_path, personality_config=brisk) as quick:
        for voice in (defaults, quick):
            neutral = await voice.process_with_integrations(said("Forget my wifi password.", "lee"))
            faster = await voice.process_with_integrations(
                said("Forget my wifi password.", "max"), user_feedback={"pace": "faster"}
            )
            durations["neutral"].append(loudness(neutral)[1])
            durations["faster"].append(loudness(faster)[1])
    # At the neutral pace (0.5) the factor does nothing; at pace 0.9 the rate is
    # factor ** 0.8: 1.08 by default, 1.74 with 2.0.
    assert durations["neutral"][0] == pytest.approx(durations["neutral"][1], rel=0.01)
    assert durations["faster"][0] > 1.25 * durations["faster"][1]


async def test_personality_enhance_voice_context_follows_the_speakers_traits(
    tmp_path: Path,
) -> None:
    store = SQLiteTraitStore(tmp_path / "traits.sqlite3")
    personality = VoicePersonalityIntegration(store)
    blind = VoicePersonalityIntegration(
        store, VoicePersonalityConfig(enable_personality_injection=False)
    )
    try:
        before = await personality.enhance_voice_context(said("Hi.", "nia"))
        await personality.learn_from_voice_interaction(
            said("Hi.", "nia"), VoiceResponse("x", "Hello."), user_feedback={"too_long": True}
        )
        after = await personality.enhance_voice_context(said("Hi.", "nia"))
        other = await personality.enhance_voice_context(said("Hi.", "oto"))
        uninjected = await blind.enhance_voice_context(said("Hi.", "nia"))
    finally:
        await personality.close()
    assert before["personality"]["verbosity"] == 0.5 and after["personality"]["verbosity"] == 0.1
    assert "at most 3 short sentences" in before["system_context"]
    assert "one short sentence" in after["system_context"]
    assert after["max_tokens"] < before["max_tokens"] == other["max_tokens"]
    assert other["system_context"] == before["system_context"]  # another speaker: unchanged
    assert uninjected["system_context"] is None
    assert uninjected["personality"] == after["personality"]  # the traits are still told
