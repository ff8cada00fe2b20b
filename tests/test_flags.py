"""Each engine-wide flag shown by its effect: the real engine run with the flag on and off.

``VoiceConfig`` (streaming, caching, optimization, log level), ``VoiceProcessingConfig``
(Moshi, external LLM, hybrid) and ``VoiceLLMManagerConfig`` (temperature, streaming
for voice). A test that changes a flag builds its own engine from the session's model
configs and shuts it down; the others share this module's engine, whose config no
test changes. ``engine`` and ``processor`` are shared with ``test_flags_*.py``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from coda.testing.moshi_peer import TinyMoshiServer
from coda.voice import (
    ConfigurationError,
    LLMConfig,
    MoshiConfig,
    VoiceConfig,
    VoiceLLMManagerConfig,
    VoiceLLMManagerIntegration,
    VoiceManager,
    VoiceMemoryConfig,
    VoiceMessage,
    VoiceProcessingConfig,
    VoiceProcessingMode,
    VoiceProcessor,
)
from tests.conftest import SEED, Speak

HANG_GUARD_SECONDS = 600.0
"""A turn's timeout here only guards against hangs: a loaded machine is slow, not broken."""


def own_config(base_config: VoiceConfig, folder: Path, **changes: Any) -> VoiceConfig:
    """The session's model configs with a store of its own and no warm-up (unless changed).

    Model-based fact reading is off: its background LLM work is not what these
    tests are about and would only slow the turns down.
    """
    settings: dict[str, Any] = {
        "store_path": str(folder / f"{uuid.uuid4().hex}.sqlite3"),
        "enable_optimization": False,
        "streaming": replace(base_config.streaming, turn_timeout_seconds=HANG_GUARD_SECONDS),
        "memory": VoiceMemoryConfig(model_extraction=False),
    }
    return replace(base_config, **(settings | changes))


@contextlib.asynccontextmanager
async def engine(
    base_config: VoiceConfig, folder: Path, **changes: Any
) -> AsyncIterator[VoiceManager]:
    """A ``VoiceManager`` of its own with ``changes``, shut down afterwards."""
    voice = VoiceManager(own_config(base_config, folder, **changes))
    try:
        await voice.initialize()
        yield voice
    finally:
        await voice.cleanup()


@contextlib.asynccontextmanager
async def processor(
    base_config: VoiceConfig,
    folder: Path,
    processing: VoiceProcessingConfig | None = None,
    changes: dict[str, Any] | None = None,
    **integration_configs: Any,
) -> AsyncIterator[VoiceProcessor]:
    """A ``VoiceProcessor`` of its own (``memory_config=`` etc. as keywords), stopped afterwards."""
    voice = VoiceProcessor(
        processing or VoiceProcessingConfig(),
        own_config(base_config, folder, **(changes or {})),
        **integration_configs,
    )
    try:
        await voice.start()
        yield voice
    finally:
        await voice.stop()


def said(text: str, speaker: str = "user") -> VoiceMessage:
    """A typed message in a conversation of its own."""
    return VoiceMessage(f"c-{uuid.uuid4().hex[:12]}", b"", text_content=text, speaker=speaker)


def decoded(data: bytes | None) -> tuple[np.ndarray, int]:
    """Mono float samples and rate of WAV bytes."""
    assert data, "no audio"
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return samples.mean(axis=1), rate


def is_speech(data: bytes | None, min_seconds: float = 0.3) -> bool:
    samples, rate = decoded(data)
    return len(samples) / rate >= min_seconds and float(np.sqrt(np.mean(samples**2))) > 0.005


SHORT = {"max_tokens": 16}


@pytest.fixture(scope="module")
async def voice(
    base_config: VoiceConfig, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[VoiceManager]:
    """This module's engine with the default flags (no test changes its config)."""
    async with engine(base_config, tmp_path_factory.mktemp("flags")) as manager:
        yield manager


# -- VoiceConfig ------------------------------------------------------------------------


async def test_enable_streaming_streams_pieces_or_sends_one_whole_reply(
    voice: VoiceManager, base_config: VoiceConfig, tmp_path: Path
) -> None:
    streamed = [c async for c in voice.process_streaming(said("Say hello."), context=SHORT)]
    kinds = [c.kind for c in streamed]
    assert kinds[0] == "transcript" and kinds[-1] == "final"
    assert "text" in kinds and "audio" in kinds
    assert all(is_speech(c.audio_data, 0.1) for c in streamed if c.kind == "audio")
    assert streamed[-1].audio_data is None  # already sent piece by piece

    async with engine(base_config, tmp_path, enable_streaming=False) as quiet:
        whole = [c async for c in quiet.process_streaming(said("Say hello."), context=SHORT)]
    assert [c.kind for c in whole] == ["final"] and whole[0].is_final
    assert whole[0].text_content and is_speech(whole[0].audio_data)


@pytest.mark.parametrize("caching", [True, False])
async def test_enable_caching_keeps_the_llm_prefix_and_repeated_audio(
    base_config: VoiceConfig, tmp_path: Path, caching: bool
) -> None:
    async with engine(base_config, tmp_path, enable_caching=caching) as voice:
        first = await voice.process_voice_message(said("Say hello."), context=SHORT)
        follow_up = VoiceMessage(first.conversation_id, b"", text_content="Say goodbye.")
        second = await voice.process_voice_message(follow_up, context=SHORT)
        # A reply from memory (no LLM), twice: the same sentence is spoken twice.
        for _ in range(2):
            again = await voice.process_voice_message(said("Forget my wifi password."))
            assert is_speech(again.audio_data)
        tts_cache = voice.get_stats()["tts_cache"]
    reused = second.metadata["llm_stats"]["kv_tokens_reused"]
    if caching:
        # The first turn's whole prompt (and reply) was already evaluated.
        assert reused >= first.metadata["prompt_tokens"] > 0
        assert tts_cache["hits"] >= 1
    else:
        assert reused == 0
        assert tts_cache is None  # nothing is kept: each sentence is synthesized again


@pytest.mark.parametrize("optimize", [True, False])
async def test_enable_optimization_warms_the_models_before_the_first_turn(
    base_config: VoiceConfig, tmp_path: Path, optimize: bool
) -> None:
    async with engine(base_config, tmp_path, enable_optimization=optimize) as voice:
        synthesized_at_start = voice.get_stats()["tts_cache"]["misses"]
        first = await voice.process_voice_message(said("Say hello."), context=SHORT)
    reused = first.metadata["llm_stats"]["kv_tokens_reused"]
    if optimize:
        # The warm-up spoke, and left the system prompt evaluated for the first turn.
        assert synthesized_at_start >= 1
        assert reused >= first.metadata["prompt_tokens"] // 2 > 0
    else:
        assert synthesized_at_start == 0 and reused == 0


async def test_log_level_sets_what_coda_logs(
    base_config: VoiceConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    coda_logger = logging.getLogger("coda")
    before = coda_logger.level
    caplog.set_level(logging.DEBUG)  # the capture takes everything; coda's level filters
    try:
        records = {}
        for level in ("WARNING", "INFO"):
            caplog.clear()
            async with engine(base_config, tmp_path, log_level=level):
                pass
            records[level] = [r for r in caplog.records if r.name.startswith("coda.")]
        assert all(r.levelno >= logging.WARNING for r in records["WARNING"])
        assert any("voice engine ready" in r.getMessage() for r in records["INFO"])
        with pytest.raises(ConfigurationError, match="log_level"):
            VoiceManager(own_config(base_config, tmp_path, log_level="LOUD"))
    finally:
        coda_logger.setLevel(before)


# -- VoiceProcessingConfig --------------------------------------------------------------


@pytest.mark.parametrize("enabled", [True, False])
async def test_enable_moshi_offers_or_withholds_moshi(
    base_config: VoiceConfig,
    moshi_server: TinyMoshiServer,
    speak: Speak,
    tmp_path: Path,
    enabled: bool,
) -> None:
    moshi = MoshiConfig(
        server_url=moshi_server.url,
        device="cpu",
        max_response_seconds=2.0,
        receive_timeout_seconds=HANG_GUARD_SECONDS,
    )
    settings = VoiceProcessingConfig(enable_moshi=enabled)
    async with processor(base_config, tmp_path, settings, {"moshi": moshi}) as voice:
        message = VoiceMessage(f"moshi-{enabled}", await speak("Hello there."))
        if enabled:
            response = await voice.process_voice_message(message, VoiceProcessingMode.MOSHI_ONLY)
            assert response.processing_mode is VoiceProcessingMode.MOSHI_ONLY
            assert response.metadata["llm"]["provider"] == "moshi"
            samples, rate = decoded(response.audio_data)
            assert 0 < len(samples) / rate <= 2.1  # Moshi spoke, within its reply cap
        else:
            with pytest.raises(ConfigurationError, match="Moshi is disabled"):
                await voice.process_voice_message(message, VoiceProcessingMode.MOSHI_ONLY)
            assert "moshi_only" in voice.get_stats()["modes_unavailable"]


@pytest.mark.parametrize("external", [True, False])
async def test_enable_external_llm_uses_the_server_or_the_embedded_model(
    base_config: VoiceConfig, llama_server: str, tmp_path: Path, external: bool
) -> None:
    remote = LLMConfig(provider="openai", base_url=llama_server, model="qwen-0.5b", seed=SEED)
    settings = VoiceProcessingConfig(enable_external_llm=external)
    async with processor(base_config, tmp_path, settings, {"llm": remote}) as voice:
        response = await voice.process_voice_message(
            said("Say hello."), context={**SHORT, "integrations": []}
        )
        stats = voice.get_stats()
    answered_by = "openai" if external else "llamacpp"
    assert response.metadata["llm"]["provider"] == stats["llm_provider"] == answered_by
    assert response.text_content.strip() and is_speech(response.audio_data)


@pytest.mark.parametrize("hybrid", [True, False])
async def test_enable_hybrid_processing_races_two_models_or_refuses(
    base_config: VoiceConfig, tmp_path: Path, hybrid: bool
) -> None:
    second = LLMConfig(provider="llamacpp", seed=SEED + 1)
    settings = VoiceProcessingConfig(
        enable_hybrid_processing=hybrid, max_latency_ms=HANG_GUARD_SECONDS * 1000
    )
    changes = {"secondary_llm": second}
    async with processor(base_config, tmp_path, settings, changes) as voice:
        message = said("Say hello.")
        context = {**SHORT, "integrations": []}
        if hybrid:
            response = await voice.process_voice_message(
                message, VoiceProcessingMode.HYBRID, context
            )
            assert response.processing_mode is VoiceProcessingMode.HYBRID
            candidates = response.metadata["hybrid"]["candidates"]
            assert len(candidates) == 2 and all(c["error"] is None for c in candidates)
            assert response.text_content in [c["reply"] for c in candidates]
        else:
            with pytest.raises(ConfigurationError, match="enable_hybrid_processing"):
                await voice.process_voice_message(message, VoiceProcessingMode.HYBRID, context)
            assert "hybrid" in voice.get_stats()["modes_unavailable"]


# -- VoiceLLMManagerConfig --------------------------------------------------------------


async def test_voice_temperature_sets_the_sampling(
    base_config: VoiceConfig, tmp_path: Path
) -> None:
    replies = []
    # Without caching every reply starts from the same model state, so the same words
    # and seed give the same reply: only the temperature can make them differ.
    async with engine(base_config, tmp_path, enable_caching=False) as voice:
        for temperature in (0.0, 0.0, 1.5):
            llm = VoiceLLMManagerIntegration(
                voice,
                VoiceLLMManagerConfig(
                    voice_temperature=temperature,
                    voice_response_max_tokens=12,
                    voice_timeout_seconds=HANG_GUARD_SECONDS,
                ),
            )
            message = said("Write one line of a poem about the sea.", speaker="poet")
            replies.append((await llm.generate_voice_response(message)).text_content)
    greedy, again, sampled = replies
    assert greedy == again  # reproducible: a difference below is the temperature's
    assert sampled and sampled != greedy, replies


@pytest.mark.parametrize("streaming", [True, False])
async def test_enable_streaming_for_voice_yields_pieces_or_the_whole_reply(
    voice: VoiceManager, streaming: bool
) -> None:
    llm = VoiceLLMManagerIntegration(
        voice,
        VoiceLLMManagerConfig(
            enable_streaming_for_voice=streaming,
            voice_response_max_tokens=32,
            voice_timeout_seconds=HANG_GUARD_SECONDS,
        ),
    )
    message = said("Tell me two facts about the moon.")
    pieces = [r async for r in llm.generate_streaming_voice_response(message)]
    final = pieces[-1]
    assert final.metadata["is_final"] and final.text_content.strip()
    partial = pieces[:-1]
    if streaming:
        assert partial and all(not p.metadata["is_final"] for p in partial)
        assert all(is_speech(p.audio_data, 0.1) for p in partial)
        spoken = " ".join(p.text_content for p in partial)
        assert spoken.split() == final.text_content.split()  # the pieces say the whole reply
    else:
        assert partial == [] and is_speech(final.audio_data)
