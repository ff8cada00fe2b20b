"""``VoiceToolsIntegration``: pick the tool a turn needs, call it, and say the answer.

Ranking: a tool whose keywords occur in the user's words scores 0.6 plus up to
0.4 for the meaning of its description (MiniLM cosine); without a keyword, the
meaning alone scores up to 0.8. Tools at or above ``tool_relevance_threshold``
are offered to the LLM, which must answer with JSON matching a schema that
allows only those tools and their parameters (grammar-constrained decoding on
llama.cpp, ``format`` on Ollama, ``json_schema`` on OpenAI-compatible servers),
or "none" — unless the best tool, named by a keyword, reads its arguments
straight from the words (its ``parse``), which skips the LLM round trip (about
1.5–2 s with the embedded model here). The arguments are validated against the
tool's schema and the tool runs with its timeout. Results, failures included, go
back to the LLM as context, so a failing tool yields a spoken apology, never a crash.

The switches (``VoiceToolsConfig``): without ``enable_function_calling`` no tool
is ever called; without ``enable_tool_injection`` no tool is described to the
LLM (neither to plan a call nor in ``enhance_voice_context``), so only requests
a tool's own parser reads are called; without ``auto_execute_tools`` a chosen
call is not run but reported (``tool_calls_proposed`` in the response metadata).
"""

from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np

from coda.core.config import LLMConfig
from coda.core.errors import LLMIntegrationError
from coda.core.integration_config import VoiceToolsConfig
from coda.core.models import (
    ConversationState,
    LLMMessage,
    ToolResult,
    VoiceMessage,
    VoiceResponse,
)
from coda.integrations.memory import user_words
from coda.memory.embedder import MiniLMEmbedder
from coda.providers.base import GenerationRequest, GenerationStats, LanguageModel
from coda.tools.builtin import default_registry
from coda.tools.registry import Tool, ToolRegistry

log = logging.getLogger(__name__)

KEYWORD_SCORE = 0.6
MEANING_WEIGHT_WITH_KEYWORD = 0.4
MEANING_WEIGHT_ALONE = 0.8
MAX_DESCRIPTIONS = 256
"""Tool descriptions whose embeddings are kept (the registry's and clients' tools)."""
# Measured on the embedded 0.5B model over 8 probes: asked to "choose", with
# "none" as the way out, it chose none whenever two tools were offered ("Set the
# thermostat to 21 degrees."); told to call the tool that does exactly what is
# asked, it called the right one in all 7 probes that name a tool's task (the
# eighth, a joke, got a calculator it is never offered: it ranks below the
# relevance threshold).
_PLANNER_PROMPT = (
    "You call tools for the user. When a tool below does exactly what the user asks, reply "
    'with its name and the arguments the user gave; otherwise reply {{"tool": "none"}}. '
    "Reply with JSON only.\nTools:\n{tools}"
)


Answer = Callable[[VoiceMessage, str, str], Awaitable[VoiceResponse]]
"""``(message, words, extra_context) -> VoiceResponse``."""


def _meaning(cosine: float) -> float:
    return min(1.0, max(0.0, (cosine - 0.1) / 0.5))


def required_only(parameters: dict[str, Any]) -> dict[str, Any]:
    """A tool's parameter schema without its optional properties.

    Small models fill optional arguments with guesses (a time zone nobody asked
    for); offering only what is required keeps them to what the user said.
    """
    required = parameters.get("required", [])
    properties = {k: v for k, v in parameters.get("properties", {}).items() if k in required}
    return {**parameters, "properties": properties, "additionalProperties": False}


def call_schema(tools: list[Tool]) -> dict[str, Any]:
    """JSON Schema of a reply that calls one of ``tools`` (or none)."""
    options: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {
                "tool": {"const": tool.name},
                "arguments": required_only(tool.parameters),
            },
            "required": ["tool", "arguments"],
        }
        for tool in tools
    ]
    options.append(
        {"type": "object", "properties": {"tool": {"const": "none"}}, "required": ["tool"]}
    )
    return {"anyOf": options}


def results_context(results: list[ToolResult]) -> str:
    """Tool results as context for the spoken answer."""
    lines = []
    for result in results:
        if result.success:
            said = result.result.get("text") if isinstance(result.result, dict) else None
            lines.append(
                f"Result of the {result.tool_name} tool: "
                + (said or json.dumps(result.result, default=str))
            )
        else:
            lines.append(
                f"The {result.tool_name} tool failed ({result.error}). Say briefly that you "
                "could not do it, and do not make up a result."
            )
    return "\n".join(lines) + "\nAnswer the user with these results, in plain words."


class VoiceToolsIntegration:
    """Integrates voice processing with the tools system.

    Args:
        tools_manager: The tool registry (default: the built-in tools).
        config: Ranking and execution settings.
        llm: The language model that chooses calls (required to call tools).
        embedder: Sentence embeddings for ranking (default: MiniLM).
        llm_config: Seed for the planner's call.
        answer: Speaks an answer to the user's words with extra context
            (``process_function_calls`` uses it to say a tool's result).
    """

    def __init__(
        self,
        tools_manager: ToolRegistry | None = None,
        config: VoiceToolsConfig | None = None,
        llm: LanguageModel | None = None,
        embedder: MiniLMEmbedder | None = None,
        llm_config: LLMConfig | None = None,
        answer: Answer | None = None,
    ) -> None:
        self.tools_manager = tools_manager or default_registry()
        self.config = config or VoiceToolsConfig()
        self.llm = llm
        self.embedder = embedder or MiniLMEmbedder()
        self.llm_config = llm_config or LLMConfig(provider="auto")
        self.answer = answer
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()  # description → embedding
        self.stats = {
            "suggested": 0,
            "parsed": 0,
            "planned": 0,
            "called": 0,
            "failed": 0,
            "invalid": 0,
        }

    def _tools(self, extra: Sequence[Tool] = ()) -> dict[str, Tool]:
        """The registry's tools and ``extra`` (a client's own), by name."""
        return {t.name: t for t in (*self.tools_manager.tools, *extra)}

    async def _description_vectors(self, tools: list[Tool]) -> np.ndarray:
        texts = [f"{t.name.replace('_', ' ')}: {t.description}" for t in tools]
        missing = [text for text in texts if text not in self._vectors]
        if missing:
            for text, vector in zip(missing, await self.embedder.embed(missing), strict=True):
                self._vectors[text] = vector
        vectors = np.stack([self._vectors[text] for text in texts])
        while len(self._vectors) > MAX_DESCRIPTIONS:  # clients' tools come and go
            self._vectors.popitem(last=False)
        return vectors

    async def rank(self, words: str, extra: Sequence[Tool] = ()) -> list[dict[str, Any]]:
        """Every tool (the registry's and ``extra``) with its relevance to ``words``, best first."""
        if not words.strip():
            return []
        tools = list(self._tools(extra).values())
        vectors = await self._description_vectors(tools)
        (query,) = await self.embedder.embed([words])
        lowered = words.lower()
        ranked: list[dict[str, Any]] = []
        for tool, cosine in zip(tools, vectors @ query, strict=True):
            name = tool.name
            hit = any(re.search(rf"\b{re.escape(k.lower())}\b", lowered) for k in tool.keywords)
            meaning = _meaning(float(cosine))
            score = (
                KEYWORD_SCORE + MEANING_WEIGHT_WITH_KEYWORD * meaning
                if hit
                else MEANING_WEIGHT_ALONE * meaning
            )
            ranked.append({"name": name, "relevance": round(score, 3), "keyword": hit})
        ranked.sort(key=lambda t: t["relevance"], reverse=True)
        return ranked

    async def get_tool_suggestions(
        self, voice_message: VoiceMessage, conversation_state: ConversationState | None = None
    ) -> list[dict[str, Any]]:
        """Tools relevant to the message (≥ threshold, at most ``max_tools_in_context``).

        Each suggestion has the tool's name, relevance, description and parameters.
        """
        return await self.suggest(user_words(voice_message))

    async def suggest(
        self, words: str, skip: frozenset[str] = frozenset(), extra: Sequence[Tool] = ()
    ) -> list[dict[str, Any]]:
        """``get_tool_suggestions`` for words already recognized, without the tools in ``skip``."""
        ranked = [t for t in await self.rank(words, extra) if t["name"] not in skip]
        kept = [t for t in ranked if t["relevance"] >= self.config.tool_relevance_threshold]
        kept = kept[: self.config.max_tools_in_context]
        self.stats["suggested"] += len(kept)
        tools = self._tools(extra)
        out = []
        for suggestion in kept:
            tool = tools[suggestion["name"]]
            out.append(
                {**suggestion, "description": tool.description, "parameters": tool.parameters}
            )
        return out

    async def enhance_voice_context(
        self, voice_message: VoiceMessage, conversation_state: ConversationState | None = None
    ) -> dict[str, Any]:
        """The relevant tools, described for the LLM.

        Returns:
            ``{"tools": [...], "system_context": str | None}``.
        """
        if not self.config.enable_tool_injection:
            return {"tools": [], "system_context": None}
        suggestions = await self.get_tool_suggestions(voice_message, conversation_state)
        context = (
            "Tools you can use: "
            + "; ".join(f"{s['name']} ({s['description']})" for s in suggestions)
            if suggestions
            else None
        )
        return {"tools": suggestions, "system_context": context}

    async def plan(
        self, words: str, suggestions: list[dict[str, Any]], extra: Sequence[Tool] = ()
    ) -> tuple[str, dict[str, Any]] | None:
        """Ask the LLM which suggested tool to call, and with what (None: no call).

        Only with ``enable_function_calling`` and ``enable_tool_injection`` (the
        suggested tools are described to the LLM).
        """
        if not suggestions or self.llm is None or not self.config.enable_function_calling:
            return None
        if not self.config.enable_tool_injection:  # the LLM is not told about any tool
            return None
        known = self._tools(extra)
        tools = [known[s["name"]] for s in suggestions if s["name"] in known]
        listing = "\n".join(
            f"- {t.name}: {t.description} Arguments: "
            + json.dumps(required_only(t.parameters)["properties"])
            for t in tools
        )
        request = GenerationRequest(
            [
                LLMMessage("system", _PLANNER_PROMPT.format(tools=listing)),
                LLMMessage("user", words),
            ],
            max_tokens=120,
            temperature=0.0,
            top_p=1.0,
            seed=self.llm_config.seed,
            json_schema=call_schema(tools),
        )
        text = "".join([delta async for delta in self.llm.stream(request, GenerationStats())])
        self.stats["planned"] += 1
        try:
            call = json.loads(text)
        except ValueError:
            log.warning("the planner did not return JSON: %r", text)
            self.stats["invalid"] += 1
            return None
        name = call.get("tool") if isinstance(call, dict) else None
        if not isinstance(name, str) or name == "none" or name not in known:
            return None
        arguments = call.get("arguments")
        return name, arguments if isinstance(arguments, dict) else {}

    def parse(
        self, words: str, suggestions: list[dict[str, Any]]
    ) -> tuple[str, dict[str, Any]] | None:
        """The call read straight from the words, without the LLM.

        Only for the best tool, named by a keyword, whose own parser understands
        the request.
        """
        if not suggestions or not suggestions[0]["keyword"]:
            return None
        tool = self.tools_manager.get(suggestions[0]["name"])
        arguments = tool.parse(words) if tool is not None and tool.parse else None
        return (tool.name, arguments) if tool is not None and arguments is not None else None

    async def choose(
        self, words: str, skip: frozenset[str] = frozenset(), extra: Sequence[Tool] = ()
    ) -> tuple[str, dict[str, Any]] | None:
        """The call a turn needs, among the registry's tools and ``extra`` (None: none).

        A request the best tool's parser understands is read directly; otherwise
        the LLM plans the call (with ``enable_tool_injection``). Tools in ``skip``
        are not considered; without ``enable_function_calling`` nothing is called.
        """
        planned, _ = await self.consider(words, skip, extra)
        return planned

    async def consider(
        self, words: str, skip: frozenset[str] = frozenset(), extra: Sequence[Tool] = ()
    ) -> tuple[tuple[str, dict[str, Any]] | None, list[dict[str, Any]]]:
        """``choose``, with the suggestions the call was chosen from."""
        if not self.config.enable_function_calling:
            return None, []
        suggestions = await self.suggest(words, skip, extra)
        planned = self.parse(words, suggestions)
        if planned is not None:
            self.stats["parsed"] += 1
            return planned, suggestions
        try:
            return await self.plan(words, suggestions, extra), suggestions
        except LLMIntegrationError as exc:
            log.warning("tool planning failed: %s", exc)
            return None, suggestions

    async def execute(self, name: str, arguments: dict[str, Any]) -> list[ToolResult]:
        """Run a chosen call of the registry's (with ``auto_execute_tools``; else nothing)."""
        if not self.config.auto_execute_tools:
            return []
        result = await self.tools_manager.call(name, arguments)
        self.stats["called"] += 1
        if not result.success:
            self.stats["failed"] += 1
        return [result]

    async def run_tools(self, words: str, skip: frozenset[str] = frozenset()) -> list[ToolResult]:
        """Choose and (with ``auto_execute_tools``) execute the call a turn needs."""
        planned = await self.choose(words, skip)
        return [] if planned is None else await self.execute(*planned)

    async def process_function_calls(
        self,
        voice_message: VoiceMessage,
        voice_response: VoiceResponse,
        conversation_state: ConversationState | None = None,
    ) -> tuple[VoiceResponse, list[ToolResult]]:
        """Run the call the user's request needs, then say the answer with its result.

        Without a call (or a responder to say the answer) the response is returned
        unchanged.
        """
        words = user_words(voice_message) or str(voice_response.metadata.get("transcript", ""))
        results = await self.run_tools(words)
        if not results or self.answer is None:
            return voice_response, results
        response = await self.answer(voice_message, words, results_context(results))
        response.metadata["tool_results"] = [r.__dict__ for r in results]
        return response, results
