"""Hybrid and adaptive modes with two real responders: the embedded model and a
llama.cpp server, started for this module and stopped by a test to make it fail."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from coda.modes.adaptive import AdaptivePolicy, TurnFeatures
from coda.modes.clock import TurnClock
from coda.modes.hybrid import HybridResponder
from coda.modes.responder import Responder, TurnRequest
from coda.turn.events import TurnEvent
from coda.voice import (
    LLMConfig,
    VoiceConfig,
    VoiceManager,
    VoiceMessage,
    VoiceProcessingMode,
)
from tests.conftest import SEED, Speak, free_port, start_llama_server, stop

HYBRID = VoiceProcessingMode.HYBRID
CASCADE = VoiceProcessingMode.LLM_ENHANCED


@pytest.fixture(scope="module")
def second_server(
    qwen_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[bytes]]:
    """A second real OpenAI-compatible server, which a test kills."""
    port = free_port()
    log = tmp_path_factory.mktemp("second-llm") / "server.log"
    process = start_llama_server(qwen_path, port, log, threads=1)
    process.args = f"http://127.0.0.1:{port}/v1"  # type: ignore[misc]
    yield process
    stop(process)


@pytest.fixture(scope="module")
async def hybrid_manager(
    base_config: VoiceConfig, second_server: subprocess.Popen[bytes]
) -> AsyncIterator[VoiceManager]:
    second = LLMConfig(provider="openai", base_url=str(second_server.args), model=None, seed=SEED)
    manager = VoiceManager(replace(base_config, secondary_llm=second, max_latency_ms=8000.0))
    await manager.initialize()
    yield manager
    await manager.cleanup()


async def test_hybrid_races_two_responders_and_records_both(
    hybrid_manager: VoiceManager, speak: Speak
) -> None:
    response = await hybrid_manager.process_voice_message(
        VoiceMessage("hybrid", await speak("What is the capital of France?")), mode=HYBRID
    )
    assert response.processing_mode is HYBRID
    hybrid = response.metadata["hybrid"]
    assert len(hybrid["candidates"]) == 2
    assert {c["responder"] for c in hybrid["candidates"]} == {"cascade:llamacpp", "cascade:openai"}
    for candidate in hybrid["candidates"]:
        assert candidate["error"] is None and 0.0 <= candidate["score"] <= 1.0
        assert "paris" in candidate["reply"].lower()
    best = max(hybrid["candidates"], key=lambda c: c["score"])
    assert hybrid["chosen"] == best["responder"]
    assert response.text_content == best["reply"]
    assert "best score" in hybrid["reason"]


class SlowResponderFaultInjector:
    """Fault injection: delays a real responder's first event (no real peer slows on cue)."""

    def __init__(self, inner: Responder, delay_seconds: float) -> None:
        self.inner, self.delay = inner, delay_seconds
        self.name, self.mode = f"slow {inner.name}", inner.mode

    async def respond(self, request: TurnRequest, clock: TurnClock) -> AsyncIterator[TurnEvent]:
        await asyncio.sleep(self.delay)
        async for event in self.inner.respond(request, clock):
            yield event


async def test_hybrid_answers_with_the_responder_that_is_in_time(
    hybrid_manager: VoiceManager,
) -> None:
    engine = hybrid_manager.engine
    real = engine.responders[HYBRID]
    assert isinstance(real, HybridResponder)
    fast, slow = real.responders
    engine.responders[HYBRID] = HybridResponder([fast, SlowResponderFaultInjector(slow, 30)], 2500)
    try:
        started = time.perf_counter()
        response = await hybrid_manager.process_voice_message(
            VoiceMessage("hybrid-slow", b"", text_content="What is the capital of France?"),
            mode=HYBRID,
        )
        assert time.perf_counter() - started < 30  # it did not wait for the slow one
    finally:
        engine.responders[HYBRID] = real
    hybrid = response.metadata["hybrid"]
    assert hybrid["chosen"] == fast.name
    assert f"slow {slow.name} was too slow" in hybrid["reason"]
    assert "paris" in response.text_content.lower()


async def test_adaptive_picks_by_what_the_turn_needs(hybrid_manager: VoiceManager) -> None:
    greeting = await hybrid_manager.process_voice_message(
        VoiceMessage("adaptive", b"", text_content="Hello there!")
    )
    tool = await hybrid_manager.process_voice_message(
        VoiceMessage("adaptive", b"", text_content="What is 17 times 23?")
    )
    assert greeting.processing_mode is CASCADE
    assert tool.processing_mode is HYBRID
    explained = tool.metadata["mode_selection"]
    assert explained["requested"] == "adaptive"
    assert explained["adaptive"]["features"]["needs_tools"] is True
    assert explained["adaptive"]["wanted"] == "strongest"
    assert greeting.metadata["mode_selection"]["adaptive"]["features"]["kind"] == "greeting"
    assert "moshi_only" in explained["adaptive"]["excluded"]


async def test_hybrid_covers_a_responder_that_dies(
    hybrid_manager: VoiceManager, second_server: subprocess.Popen[bytes]
) -> None:
    second_server.kill()
    second_server.wait(timeout=10)
    response = await hybrid_manager.process_voice_message(
        VoiceMessage("hybrid-dead", b"", text_content="What is the capital of France?"),
        mode=HYBRID,
    )
    hybrid = response.metadata["hybrid"]
    failed = [c for c in hybrid["candidates"] if c["error"]]
    assert [c["responder"] for c in failed] == ["cascade:openai"]
    assert "LLMIntegrationError" in failed[0]["error"]
    assert "cascade:openai failed" in hybrid["reason"]
    assert hybrid["chosen"] == "cascade:llamacpp" and "paris" in response.text_content.lower()


async def test_adaptive_never_chooses_an_unavailable_mode(base_config: VoiceConfig) -> None:
    dead = LLMConfig(provider="openai", base_url=f"http://127.0.0.1:{free_port()}/v1")
    manager = VoiceManager(replace(base_config, secondary_llm=dead))
    await manager.initialize()  # a second opinion that is down does not stop Coda
    try:
        assert "hybrid" in manager.get_stats()["modes_unavailable"]
        response = await manager.process_voice_message(
            VoiceMessage("adaptive-down", b"", text_content="What is 17 times 23?")
        )
        assert response.processing_mode is CASCADE
        excluded = response.metadata["mode_selection"]["adaptive"]["excluded"]
        assert "secondary LLM unavailable" in excluded["hybrid"]
        from coda.voice import ConfigurationError

        with pytest.raises(ConfigurationError, match="secondary"):
            await manager.process_voice_message(
                VoiceMessage("adaptive-down", b"", text_content="Hi"), mode=HYBRID
            )
    finally:
        await manager.cleanup()


def test_adaptive_rests_a_failing_mode_then_tries_it_again() -> None:
    now = [0.0]
    policy = AdaptivePolicy(max_failures=2, retry_after_seconds=30.0, now=lambda: now[0])
    moshi = VoiceProcessingMode.MOSHI_ONLY
    available: dict[VoiceProcessingMode, str | None] = {moshi: None, CASCADE: None}
    small_talk = TurnFeatures.of("Hello there")
    assert policy.choose("c", small_talk, available)[0] is moshi  # the fastest, for small talk
    policy.record_failure("c", moshi)
    assert policy.choose("c", small_talk, available)[0] is moshi  # one failure is not down
    policy.record_failure("c", moshi)
    chosen, why = policy.choose("c", small_talk, available)
    assert chosen is CASCADE and "failed 2 times" in why["excluded"]["moshi_only"]
    now[0] = 29.0
    assert policy.choose("c", small_talk, available)[0] is CASCADE
    now[0] = 31.0  # rested long enough: one turn tries it again
    assert policy.choose("c", small_talk, available)[0] is moshi
    policy.record_success("c", moshi, latency_ms=200.0, quality=0.8)
    assert policy.stats[("c", moshi)].failures == 0
