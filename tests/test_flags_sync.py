"""The turn pipeline mirrors turns into the text store: ``VoiceProcessor`` → conversation
sync → text conversations, read back by an independent reader; and the sync switches
(``enable_conversation_sync``, ``sync_enabled``, ``real_time_sync``) seen end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coda.core.integration_config import VoiceConversationSyncConfig
from coda.core.models import VoiceMessage, VoiceResponse
from coda.store.postgres.text_conversations import PostgresTextConversationManager
from coda.sync.text_conversations import TextConversationManager
from coda.voice import VoiceConfig, VoiceProcessingConfig
from tests.test_flags import processor, said


@pytest.fixture(params=["sqlite", "postgresql"])
def store_path(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a processor keeps everything (conversations and the text store)."""
    if request.param == "sqlite":
        return str(tmp_path / "coda.sqlite3")
    return str(request.getfixturevalue("pg_url"))


def text_store(path: str) -> TextConversationManager | PostgresTextConversationManager:
    """An independent reader of the text conversations at ``path``."""
    if path.startswith("postgresql://"):
        return PostgresTextConversationManager(path)
    return TextConversationManager(path)


async def stored(path: str, conversation_id: str) -> list[tuple[str, str, str, str]]:
    async with text_store(path) as reader:
        messages = await reader.messages(conversation_id)
    return [(m.message_id, m.role, m.content, m.source) for m in messages]


FORGET = "Forget my wifi password."  # answered from memory: a whole turn without the LLM


def mirrored(message: VoiceMessage, response: VoiceResponse) -> list[tuple[str, str, str, str]]:
    """The two text messages a synced turn becomes."""
    return [
        (message.message_id, "user", message.text_content or "", "voice"),
        (f"{message.message_id}:reply", "assistant", response.text_content, "voice"),
    ]


async def test_process_with_integrations_mirrors_the_turn_into_the_text_store(
    base_config: VoiceConfig, store_path: str, tmp_path: Path
) -> None:
    async with processor(base_config, tmp_path, changes={"store_path": store_path}) as voice:
        message = said(FORGET)
        response = await voice.process_with_integrations(message)
        await voice.manager.wait_for_learning()
        assert response.text_content.strip()
        assert await stored(store_path, message.conversation_id) == mirrored(message, response)


async def test_without_real_time_sync_turns_are_written_when_the_conversation_ends(
    base_config: VoiceConfig, tmp_path: Path
) -> None:
    path = str(tmp_path / "coda.sqlite3")
    batched = VoiceConversationSyncConfig(real_time_sync=False)
    async with processor(
        base_config, tmp_path, changes={"store_path": path}, sync_config=batched
    ) as voice:
        ended, left_open = said(FORGET), said(FORGET)
        first = await voice.process_with_integrations(ended)
        second = await voice.process_with_integrations(left_open)
        await voice.manager.wait_for_learning()
        assert await stored(path, ended.conversation_id) == []  # queued, not yet written
        await voice.end_conversation(ended.conversation_id)
        assert await stored(path, ended.conversation_id) == mirrored(ended, first)
        assert await stored(path, left_open.conversation_id) == []
    # Stopping writes what is still queued.
    assert await stored(path, left_open.conversation_id) == mirrored(left_open, second)


@pytest.mark.parametrize("switch", ["enable_conversation_sync", "sync_enabled"])
async def test_sync_switched_off_writes_nothing(
    base_config: VoiceConfig, tmp_path: Path, switch: str
) -> None:
    path = str(tmp_path / "coda.sqlite3")
    settings: dict[str, Any]
    if switch == "enable_conversation_sync":
        settings = {"processing": VoiceProcessingConfig(enable_conversation_sync=False)}
    else:
        settings = {"sync_config": VoiceConversationSyncConfig(sync_enabled=False)}
    async with processor(base_config, tmp_path, changes={"store_path": path}, **settings) as voice:
        message = said(FORGET)
        response = await voice.process_with_integrations(message)
        await voice.manager.wait_for_learning()
        await voice.end_conversation(message.conversation_id)
        state = await voice.manager.get_conversation_state(message.conversation_id)
    assert response.text_content.strip() and state is not None and len(state.turns) == 1
    assert await stored(path, message.conversation_id) == []
