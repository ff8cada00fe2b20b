"""Remote language models against real peers: llama.cpp's OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace

import pytest

from coda.core.models import LLMMessage
from coda.providers.base import GenerationRequest, GenerationStats
from coda.providers.llm.ollama import OllamaLLM
from coda.providers.llm.openai_compat import OpenAICompatLLM
from coda.voice import LLMConfig, LLMIntegrationError, VoiceConfig, VoiceManager, VoiceMessage
from tests.conftest import SEED, Speak, free_port

HANG_GUARD_SECONDS = 60.0
"""Only guards against a hang: no test waits for this, however loaded the machine."""
QUESTION = [
    LLMMessage("system", "Answer in one short sentence."),
    LLMMessage("user", "What is the capital of France?"),
]


async def test_openai_compatible_provider_streams(llama_server: str) -> None:
    llm = OpenAICompatLLM(LLMConfig(provider="openai", base_url=llama_server, model=None))
    await llm.load()
    try:
        assert llm.model == "qwen-0.5b"  # the first model the server lists
        stats = GenerationStats()
        deltas = [
            d async for d in llm.stream(GenerationRequest(QUESTION, 40, 0.0, 1.0, SEED), stats)
        ]
        assert len(deltas) > 1  # streamed, not one block
        assert "paris" in "".join(deltas).lower()
        assert stats.finish_reason == "stop"
    finally:
        await llm.close()


async def test_voice_manager_over_the_openai_server(
    llama_server: str, base_config: VoiceConfig, speak: Speak
) -> None:
    config = replace(
        base_config, llm=LLMConfig(provider="openai", base_url=llama_server, model=None, seed=SEED)
    )
    manager = VoiceManager(config)
    await manager.initialize()
    try:
        response = await manager.process_voice_message(
            VoiceMessage("remote", await speak("What is the capital of France?"))
        )
        assert "paris" in response.text_content.lower()
        assert response.metadata["llm"]["provider"] == "openai"
        assert response.metadata["llm"]["model"] == "qwen-0.5b"
        assert response.metadata["llm"]["reason"] == "configured provider 'openai'"
        assert response.metadata["timings_ms"]["llm_first_token"] > 0
        assert response.audio_data
    finally:
        await manager.cleanup()


@pytest.mark.parametrize("provider", ["openai", "ollama"])
async def test_explicit_unreachable_server_is_an_llm_error(
    provider: str, base_config: VoiceConfig
) -> None:
    url = f"http://127.0.0.1:{free_port()}" + ("/v1" if provider == "openai" else "")
    manager = VoiceManager(replace(base_config, llm=LLMConfig(provider=provider, base_url=url)))
    threads_before = set(threading.enumerate())
    with pytest.raises(LLMIntegrationError, match="127.0.0.1"):
        await manager.initialize()
    assert not manager.engine.initialized
    # The worker threads the failed start made are told to stop; each ends once idle.
    # Joining waits for exactly that, and the timeout only guards against a hang.
    started = [t for t in set(threading.enumerate()) - threads_before if t.name.startswith("coda-")]
    await asyncio.to_thread(_join_all, started, HANG_GUARD_SECONDS)
    assert not [t.name for t in started if t.is_alive()]


def _join_all(threads: list[threading.Thread], seconds: float) -> None:
    """Join ``threads`` within ``seconds`` in all."""
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


async def test_ollama_provider_against_a_server_that_is_not_ollama(llama_server: str) -> None:
    host = llama_server.removesuffix("/v1")
    llm = OllamaLLM(LLMConfig(provider="ollama", base_url=host, model="gemma3:1b"))
    try:
        ok, reason = await llm.available()
        assert not ok and host in reason
        with pytest.raises(LLMIntegrationError, match=host):
            await llm.load()
    finally:
        await llm.close()


async def test_auto_falls_back_to_the_embedded_model(manager: VoiceManager) -> None:
    stats = manager.get_stats()
    assert stats["llm_provider"] == "llamacpp"
    assert "no Ollama server answered" in stats["llm_reason"]
    assert "embedded" in stats["llm_reason"]
    assert stats["llm_model"].endswith(".gguf")
