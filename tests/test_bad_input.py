"""Bad input gets the spec's typed error and leaves the conversation exactly as it was."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from coda.voice import (
    ConversationError,
    ValidationError,
    VoiceConfig,
    VoiceManager,
    VoiceMessage,
    VoiceProcessingError,
)
from tests.conftest import Speak

OwnManager = Callable[..., Awaitable[VoiceManager]]


def _wav(seconds: float, rate: int = 16000, amplitude: float = 0.3) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, amplitude * np.sin(2 * np.pi * 220 * t), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.fixture
async def own_manager(base_config: VoiceConfig, tmp_path: Path) -> AsyncIterator[OwnManager]:
    """Builds a manager of the test's own with the settings it tests, in a store of its own.

    The shared manager's config is never changed, so no test depends on another's
    settings or on which conversations earlier tests left in memory. The
    integrations and the warm-up are left out: these tests are about conversations.
    """
    made: list[VoiceManager] = []

    async def make(**settings: Any) -> VoiceManager:
        config = replace(
            base_config,
            store_path=str(tmp_path / f"own-{len(made)}.sqlite3"),
            enable_optimization=False,
            enable_memory_integration=False,
            enable_personality_integration=False,
            enable_tools_integration=False,
            enable_conversation_sync=False,
            # Only a guard against a hang, never a bound on this machine's speed.
            streaming=replace(base_config.streaming, turn_timeout_seconds=600.0),
            **settings,
        )
        voice = VoiceManager(config)
        made.append(voice)
        await voice.initialize()
        return voice

    yield make
    for voice in made:
        await voice.cleanup()


@pytest.fixture
async def conversation(manager: VoiceManager) -> str:
    """A conversation with one finished turn, to check that bad input leaves it intact."""
    conversation_id = f"intact-{os.urandom(4).hex()}"
    await manager.process_voice_message(
        VoiceMessage(conversation_id, b"", text_content="My name is Ada.")
    )
    return conversation_id


async def _snapshot(manager: VoiceManager, conversation_id: str) -> tuple[object, ...]:
    state = await manager.get_conversation_state(conversation_id)
    assert state is not None
    stored = await manager.engine.store.count_turns(conversation_id)
    return (state.is_active, [t.user_text for t in state.turns], stored)


BAD_AUDIO = {
    "empty bytes": (b"", "empty"),
    "random bytes": (os.urandom(4096), "could not be read"),
    "truncated WAV header": (_wav(1.0)[:30], "truncated"),
    "WAV header without samples": (_wav(1.0)[:44], "no samples"),
    "silence": (_wav(1.0, amplitude=0.0), "silent"),
    "too short": (_wav(0.02), "at least"),
    "too long": (_wav(31.0, rate=8000), "maximum"),
}


@pytest.mark.parametrize("case", list(BAD_AUDIO))
async def test_bad_audio_is_a_validation_error(
    manager: VoiceManager, conversation: str, case: str
) -> None:
    audio, words = BAD_AUDIO[case]
    before = await _snapshot(manager, conversation)
    errors_before = manager.get_stats()["errors"]
    with pytest.raises(ValidationError, match=words):
        await manager.process_voice_message(VoiceMessage(conversation, audio))
    assert await _snapshot(manager, conversation) == before
    assert manager.get_stats()["errors"] == errors_before + 1
    # The streaming path rejects it the same way, before yielding anything.
    with pytest.raises(ValidationError):
        async for _ in manager.process_streaming(VoiceMessage(conversation, audio)):
            pytest.fail("a chunk was produced for bad input")
    assert await _snapshot(manager, conversation) == before


async def test_conversation_still_works_after_bad_input(
    manager: VoiceManager, conversation: str, speak: Speak
) -> None:
    with pytest.raises(ValidationError):
        await manager.process_voice_message(VoiceMessage(conversation, os.urandom(1000)))
    reply = await manager.process_voice_message(
        VoiceMessage(conversation, await speak("What is my name?"))
    )
    assert "ada" in reply.text_content.lower()


async def test_duplicate_conversation_id(manager: VoiceManager, conversation: str) -> None:
    before = await _snapshot(manager, conversation)
    with pytest.raises(ConversationError, match="already exists"):
        await manager.start_conversation(conversation)
    assert await _snapshot(manager, conversation) == before


async def test_unknown_conversation_id(manager: VoiceManager) -> None:
    with pytest.raises(ConversationError, match="not found"):
        await manager.end_conversation("never-started")
    assert await manager.get_conversation_state("never-started") is None


async def test_unknown_conversation_is_refused_without_auto_start(
    own_manager: OwnManager,
) -> None:
    strict = await own_manager(auto_start_conversations=False)
    with pytest.raises(ConversationError, match="not found; call start_conversation first"):
        await strict.process_voice_message(VoiceMessage("never-started", _wav(1.0)))
    assert await strict.get_conversation_state("never-started") is None
    # Started explicitly, the same id takes turns.
    await strict.start_conversation("never-started")
    await strict.process_voice_message(VoiceMessage("never-started", b"", text_content="Hi."))
    state = await strict.get_conversation_state("never-started")
    assert state is not None and [t.user_text for t in state.turns] == ["Hi."]


@pytest.mark.parametrize("bad_id", ["", " ", "a" * 200, "../etc/passwd", "id with spaces", None])
async def test_invalid_conversation_id(manager: VoiceManager, bad_id: object) -> None:
    with pytest.raises(ValidationError, match="conversation_id"):
        await manager.start_conversation(bad_id)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="conversation_id"):
        await manager.process_voice_message(VoiceMessage(bad_id, _wav(1.0)))  # type: ignore[arg-type]


async def test_ended_conversation_refuses_turns(manager: VoiceManager, conversation: str) -> None:
    await manager.end_conversation(conversation)
    before = await _snapshot(manager, conversation)
    assert before[0] is False
    with pytest.raises(ConversationError, match="ended"):
        await manager.process_voice_message(VoiceMessage(conversation, b"", text_content="Hi"))
    with pytest.raises(ConversationError, match="already ended"):
        await manager.end_conversation(conversation)
    with pytest.raises(ConversationError, match="already exists"):
        await manager.start_conversation(conversation)
    assert await _snapshot(manager, conversation) == before


async def test_audio_that_is_not_bytes(manager: VoiceManager) -> None:
    with pytest.raises(ValidationError, match="bytes"):
        await manager.process_voice_message(VoiceMessage("typed", "not audio"))  # type: ignore[arg-type]


async def test_catching_the_base_class_gets_the_precise_error(manager: VoiceManager) -> None:
    # A caller may catch the spec's base class; what it catches is the precise kind.
    with pytest.raises(VoiceProcessingError) as caught:
        await manager.process_voice_message(VoiceMessage("any", b"RIFF"))
    assert type(caught.value) is ValidationError
    assert "WAV header is truncated: 4 bytes" in str(caught.value)


async def test_uninitialized_manager_says_so() -> None:
    from coda.voice import VoiceInitializationError

    idle = VoiceManager()
    with pytest.raises(VoiceInitializationError, match="initialize"):
        await idle.process_voice_message(VoiceMessage("c", b"", text_content="hi"))


async def test_idle_conversations_make_room_and_busy_ones_do_not(
    own_manager: OwnManager,
) -> None:
    voice = await own_manager(max_concurrent_conversations=2)
    held = voice.engine.conversations.active
    await voice.process_voice_message(VoiceMessage("room-a", b"", text_content="I am Ada."))
    await voice.start_conversation("room-b")
    assert list(held) == ["room-a", "room-b"]
    # At the limit: the least recently active idle conversation leaves memory, not the store.
    await voice.start_conversation("room-c")
    assert sorted(held) == ["room-b", "room-c"]
    reloaded = await voice.get_conversation_state("room-a")
    assert reloaded is not None and [t.user_text for t in reloaded.turns] == ["I am Ada."]
    # When every held conversation is mid-turn, a new one is refused.
    locks = [voice.engine.conversations.lock(cid) for cid in held]
    for lock in locks:
        await lock.acquire()
    try:
        with pytest.raises(ConversationError, match="2 conversations are mid-turn"):
            await voice.start_conversation("room-d")
        assert await voice.get_conversation_state("room-d") is None  # nothing half-made
    finally:
        for lock in locks:
            lock.release()
    await voice.start_conversation("room-d")
    assert len(held) == 2 and "room-d" in held
