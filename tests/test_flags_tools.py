"""Tools switches, each shown by its effect on real turns, and the tools integration's
spec methods (``get_tool_suggestions``, ``enhance_voice_context``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from coda.tools.registry import Tool
from coda.voice import (
    VoiceConfig,
    VoiceMemoryConfig,
    VoiceProcessor,
    VoiceResponse,
    VoiceToolsConfig,
    VoiceToolsIntegration,
)
from tests.test_flags import SHORT, processor, said

QUIET = VoiceMemoryConfig(model_extraction=False)
ARITHMETIC = "What is 17 times 23?"
"""The calculator's keyword ("times") and parser: 0.653 relevant, no LLM planning needed."""


@pytest.fixture(scope="module")
async def defaults(
    base_config: VoiceConfig, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[VoiceProcessor]:
    """This module's processor with the spec's default tools settings."""
    folder = tmp_path_factory.mktemp("tool-flags")
    async with processor(base_config, folder, memory_config=QUIET) as voice:
        yield voice


def tools_of(voice: VoiceProcessor) -> VoiceToolsIntegration:
    tools = voice.integrations.tools
    assert tools is not None
    return tools


def called(response: VoiceResponse) -> list[tuple[str, Any]]:
    return [(r["tool_name"], r["result"]) for r in response.metadata.get("tool_results", [])]


async def test_the_defaults_call_the_calculator(defaults: VoiceProcessor) -> None:
    """The reference the switches below are measured against."""
    response = await defaults.process_voice_message(said(ARITHMETIC), context=SHORT)
    assert response.metadata["tools_offered"] == ["calculator"]
    assert called(response) == [("calculator", {"expression": "17 * 23", "result": 391,
                                                "text": "17 * 23 = 391"})]  # fmt: skip
    assert "391" in response.text_content


async def test_enable_function_calling_off_calls_no_tool(
    base_config: VoiceConfig, tmp_path: Path
) -> None:
    off = VoiceToolsConfig(enable_function_calling=False)
    async with processor(base_config, tmp_path, memory_config=QUIET, tools_config=off) as voice:
        response = await voice.process_voice_message(said(ARITHMETIC), context=SHORT)
        unchanged, results = await tools_of(voice).process_function_calls(
            said(ARITHMETIC), VoiceResponse("x", "...")
        )
    assert response.metadata["tools_offered"] == [] and called(response) == []
    assert results == [] and unchanged.text_content == "..."


def thermostat(log: list[float]) -> Tool:
    """A tool without a parser of its own: only the LLM's planning can call it."""

    def set_thermostat(celsius: float) -> dict[str, str]:
        log.append(celsius)
        return {"text": f"The thermostat is set to {celsius:g} degrees."}

    return Tool(
        "set_thermostat",
        "Set the home heating thermostat to a target temperature in degrees Celsius.",
        {"type": "object", "properties": {"celsius": {"type": "number"}}, "required": ["celsius"]},
        set_thermostat,
        keywords=("thermostat", "heating"),
    )


@pytest.mark.parametrize("injection", [True, False])
async def test_enable_tool_injection_lets_the_llm_plan_a_call(
    base_config: VoiceConfig, tmp_path: Path, injection: bool
) -> None:
    settings = VoiceToolsConfig(enable_tool_injection=injection)
    set_to: list[float] = []
    async with processor(
        base_config, tmp_path, memory_config=QUIET, tools_config=settings
    ) as voice:
        tools_of(voice).tools_manager.register(thermostat(set_to))
        message = said("Set the thermostat to 21 degrees.")
        response = await voice.process_voice_message(message, context=SHORT)
        context = await tools_of(voice).enhance_voice_context(message)
    assert "set_thermostat" in response.metadata["tools_offered"]
    if injection:
        assert set_to == [21] and [name for name, _ in called(response)] == ["set_thermostat"]
        assert "set_thermostat" in (context["system_context"] or "")
    else:  # no parser reads it, and the LLM is told of no tool
        assert set_to == [] and called(response) == []
        assert context == {"tools": [], "system_context": None}


async def test_auto_execute_tools_off_proposes_the_call(
    base_config: VoiceConfig, tmp_path: Path
) -> None:
    off = VoiceToolsConfig(auto_execute_tools=False)
    async with processor(base_config, tmp_path, memory_config=QUIET, tools_config=off) as voice:
        response = await voice.process_voice_message(said(ARITHMETIC), context=SHORT)
    assert called(response) == []
    assert response.metadata["tool_calls_proposed"] == [
        {"name": "calculator", "arguments": {"expression": "17 * 23"}}
    ]


async def test_max_tools_in_context_bounds_the_tools_offered(
    defaults: VoiceProcessor, base_config: VoiceConfig, tmp_path: Path
) -> None:
    words = "What time is it plus 2 hours?"  # the clock and the calculator are both relevant
    one = VoiceToolsConfig(max_tools_in_context=1)
    async with processor(base_config, tmp_path, memory_config=QUIET, tools_config=one) as voice:
        bounded = await voice.process_voice_message(said(words), context=SHORT)
    every = await defaults.process_voice_message(said(words), context=SHORT)
    assert every.metadata["tools_offered"] == ["get_datetime", "calculator"]
    assert bounded.metadata["tools_offered"] == ["get_datetime"]


async def test_tool_relevance_threshold_decides_which_tools_are_offered(
    base_config: VoiceConfig, tmp_path: Path
) -> None:
    strict = VoiceToolsConfig(tool_relevance_threshold=0.7)  # the calculator scores 0.653 here
    async with processor(base_config, tmp_path, memory_config=QUIET, tools_config=strict) as voice:
        response = await voice.process_voice_message(said(ARITHMETIC), context=SHORT)
    assert response.metadata["tools_offered"] == [] and called(response) == []


# -- the spec methods -------------------------------------------------------------------


@pytest.fixture(scope="module")
async def ranking(defaults: VoiceProcessor) -> VoiceToolsIntegration:
    """The processor's tools integration (its registry and embedder) to rank with."""
    return tools_of(defaults)


def integration(like: VoiceToolsIntegration, **settings: Any) -> VoiceToolsIntegration:
    """A tools integration of its own settings over the same registry and embedder."""
    return VoiceToolsIntegration(
        like.tools_manager, VoiceToolsConfig(**settings), embedder=like.embedder
    )


async def test_get_tool_suggestions_ranks_the_relevant_tools(
    ranking: VoiceToolsIntegration,
) -> None:
    tools = integration(ranking)
    (calculator,) = await tools.get_tool_suggestions(said(ARITHMETIC))
    assert calculator["name"] == "calculator" and calculator["keyword"]
    assert 0.6 <= calculator["relevance"] <= 1.0
    registered = ranking.tools_manager.get("calculator")
    assert registered is not None
    assert calculator["description"] == registered.description
    assert calculator["parameters"] == registered.parameters
    assert await tools.get_tool_suggestions(said("Tell me a joke.")) == []

    both = await tools.get_tool_suggestions(said("What time is it plus 2 hours?"))
    assert [s["name"] for s in both] == ["get_datetime", "calculator"]
    assert both[0]["relevance"] >= both[1]["relevance"]  # best first
    capped = await integration(ranking, max_tools_in_context=1).get_tool_suggestions(
        said("What time is it plus 2 hours?")
    )
    assert [s["name"] for s in capped] == ["get_datetime"]
    strict = integration(ranking, tool_relevance_threshold=0.7)
    assert await strict.get_tool_suggestions(said(ARITHMETIC)) == []


async def test_tools_enhance_voice_context_describes_the_relevant_tools(
    ranking: VoiceToolsIntegration,
) -> None:
    context = await integration(ranking).enhance_voice_context(said(ARITHMETIC))
    assert [t["name"] for t in context["tools"]] == ["calculator"]
    assert context["system_context"].startswith("Tools you can use: calculator (Evaluate")
    nothing = await integration(ranking).enhance_voice_context(said("Tell me a joke."))
    assert nothing == {"tools": [], "system_context": None}
    withheld = integration(ranking, enable_tool_injection=False)
    assert await withheld.enhance_voice_context(said(ARITHMETIC)) == {
        "tools": [],
        "system_context": None,
    }
