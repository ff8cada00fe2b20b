"""Hybrid and adaptive modes with two real responders: the embedded model and a
llama.cpp server, started for this module and stopped by a test to make it fail."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
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
HANG_GUARD_SECONDS = 300.0


@dataclass
class SecondServer:
    """A second real OpenAI-compatible server on a fixed port, which a test kills."""

    model: Path
    port: int
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def restart(self) -> None:
        """Start it again on the same port, so later tests find it up whatever their order."""
        self.process = start_llama_server(self.model, self.port, self.log, threads=1)


@pytest.fixture(scope="module")
def second_server(
    qwen_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecondServer]:
    port = free_port()
    log = tmp_path_factory.mktemp("second-llm") / "server.log"
    server = SecondServer(qwen_path, port, log, start_llama_server(qwen_path, port, log, threads=1))
    yield server
    stop(server.process)


@pytest.fixture(scope="module")
async def hybrid_manager(
    base_config: VoiceConfig, second_server: SecondServer
) -> AsyncIterator[VoiceManager]:
    second = LLMConfig(provider="openai", base_url=second_server.url, model=None, seed=SEED)
    # A hybrid budget and a turn deadline no turn reaches, however loaded the machine:
    # both candidates always finish, so these tests are about choosing, not speed.
    config = replace(
        base_config,
        secondary_llm=second,
        max_latency_ms=HANG_GUARD_SECONDS * 1000,
        streaming=replace(base_config.streaming, turn_timeout_seconds=HANG_GUARD_SECONDS),
    )
    manager = VoiceManager(config)
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


class StalledResponderFaultInjector:
    """Fault injection: a real responder that stalls until released (no real peer stalls
    on cue). It records that it started and whether the race cancelled it."""

    def __init__(self, inner: Responder) -> None:
        self.inner = inner
        self.name, self.mode = f"stalled {inner.name}", inner.mode
        self.started, self.release, self.cancelled = asyncio.Event(), asyncio.Event(), False

    async def respond(self, request: TurnRequest, clock: TurnClock) -> AsyncIterator[TurnEvent]:
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        async for event in self.inner.respond(request, clock):
            yield event


async def test_hybrid_answers_with_the_responder_that_is_in_time(
    hybrid_manager: VoiceManager,
) -> None:
    engine = hybrid_manager.engine
    real = engine.responders[HYBRID]
    assert isinstance(real, HybridResponder)
    fast, slow = real.responders
    stalled = StalledResponderFaultInjector(slow)
    engine.responders[HYBRID] = HybridResponder([fast, stalled], 2500)
    try:
        # The stalled one is never released: an answer at all proves the race did not wait
        # for it. The timeout only guards against a hang.
        response = await asyncio.wait_for(
            hybrid_manager.process_voice_message(
                VoiceMessage("hybrid-slow", b"", text_content="What is the capital of France?"),
                mode=HYBRID,
            ),
            timeout=HANG_GUARD_SECONDS,
        )
    finally:
        engine.responders[HYBRID] = real
    assert stalled.started.is_set() and stalled.cancelled  # it raced, and was called off
    hybrid = response.metadata["hybrid"]
    assert hybrid["chosen"] == fast.name
    assert f"stalled {slow.name} was too slow" in hybrid["reason"]
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
    hybrid_manager: VoiceManager, second_server: SecondServer
) -> None:
    second_server.process.kill()
    second_server.process.wait(timeout=10)
    try:
        response = await hybrid_manager.process_voice_message(
            VoiceMessage("hybrid-dead", b"", text_content="What is the capital of France?"),
            mode=HYBRID,
        )
    finally:
        await asyncio.to_thread(second_server.restart)
    hybrid = response.metadata["hybrid"]
    failed = [c for c in hybrid["candidates"] if c["error"]]
    assert [c["responder"] for c in failed] == ["cascade:openai"]
    assert "LLMIntegrationError" in failed[0]["error"]
    assert "cascade:openai failed" in hybrid["reason"]
    assert hybrid["chosen"] == "cascade:llamacpp" and "paris" in response.text_content.lower()


async def test_adaptive_never_chooses_an_unavailable_mode(base_config: VoiceConfig) -> None:
    dead = LLMConfig(provider="openai", base_url=f"http://127.0.0.1:{free_port()}/v1")
    streaming = replace(base_config.streaming, turn_timeout_seconds=HANG_GUARD_SECONDS)
    manager = VoiceManager(replace(base_config, secondary_llm=dead, streaming=streaming))
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
